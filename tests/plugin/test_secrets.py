"""A distinctive secret in every secret setting never appears in any output or file, even with every
verbose flag pytest has, failing tests that receive the plugin's fixtures, -n 0 and -n 2.

Secrets come from the environment: a token typed on the command line is visible to `pytest --debug`
and to `ps` (README)."""

import pytest

from tests.plugin.test_reuse_leases import APP as ECHO_APP  # an app with one task, myapp.echo

pytestmark = pytest.mark.usefixtures("container_engine")

SECRET = "Xk7-distinctive-s3cret"
FAILING = '''
import logging

def test_fails_with_the_fixtures(celery_astra_broker_url, celery_astra_app, celery_astra_database,
                                 celery_astra_settings, celery_astra_worker, celery_astra_cassandra):
    logging.getLogger("user").debug("app conf: %r", dict(celery_astra_app.conf))
    settings, url, conf = celery_astra_settings, celery_astra_broker_url, celery_astra_app.conf
    print("url:", repr(url), "settings:", settings, "auth:", conf.cassandra_auth_kwargs)
    assert url == "something else"

def test_fails_after_a_round_trip(celery_astra_worker, celery_astra_app):
    @celery_astra_app.task(name="t.echo")
    def echo(x):
        return x
    assert celery_astra_app.conf.broker_url == "memory://nobody@elsewhere/"
'''


@pytest.fixture(scope="module")
def cassandra_with_secret_role():
    from tests.astra_standin import cassandra_container, connect_superuser

    with cassandra_container() as node:
        cluster, session = connect_superuser(node.host, node.port)
        try:
            session.execute(f"CREATE ROLE tester WITH PASSWORD = '{SECRET}' AND LOGIN = true AND SUPERUSER = true")
            yield node
        finally:
            cluster.shutdown()


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_secret_never_printed_or_written(pytester, monkeypatch, cassandra_with_secret_role, xdist):
    node = cassandra_with_secret_role
    pytester.makepyfile(myapp="from celery import Celery\napp = Celery('myapp')\n", test_secret=FAILING)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = myapp:app\npythonpath = .\n")
    for name, value in {
        "CELERY_ASTRA_BROKER_URL": f"memory://user:{SECRET}@localhost/",
        "CELERY_ASTRA_CASSANDRA_HOSTS": node.host,
        "CELERY_ASTRA_CASSANDRA_PORT": str(node.port),
        "CELERY_ASTRA_CASSANDRA_USERNAME": "tester",
        "CELERY_ASTRA_CASSANDRA_PASSWORD": SECRET,
        "ASTRA_DB_APPLICATION_TOKEN": f"AstraCS:{SECRET}:abc",
        "ASTRA_DB_CLIENT_SECRET": SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--showlocals", "--tb=long", "-vv", "-rA", "--junitxml=report.xml",
        "--log-file=run.log", "--log-level=DEBUG", "--log-file-level=DEBUG", "--debug=debug.log", *xdist,
        timeout=300)
    result.assert_outcomes(failed=2)
    assert SECRET not in result.stdout.str() + result.stderr.str()
    files = [path for path in pytester.path.rglob("*") if path.is_file()]
    assert {"report.xml", "run.log", "debug.log"} <= {path.name for path in files}
    leaking = [path.name for path in files if SECRET in path.read_text(errors="replace")]
    assert leaking == []


PROCESS_TEST = '''
import pathlib

from myapp import echo


def test_the_worker_process_works_and_its_files_hold_no_secret(celery_astra_worker_process):
    assert echo.delay(7).get(timeout=60) == 7       # it logged in to Cassandra with the password
    files = [path for path in pathlib.Path(celery_astra_worker_process.directory).rglob("*") if path.is_file()]
    assert "config.json" in {path.name for path in files}
    assert [path.name for path in files if SECRET in path.read_text(errors="replace")] == []
'''


def test_a_worker_process_gets_the_password_without_a_file_holding_it(pytester, monkeypatch,
                                                                      cassandra_with_secret_role):
    """The wiring a `celery worker` process reads is a file in the run's directory: the password travels in
    the child's environment instead (workers/wiring.py)."""
    node = cassandra_with_secret_role
    pytester.makepyfile(myapp=ECHO_APP, test_process_secret=PROCESS_TEST.replace("SECRET", repr(SECRET)))
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = myapp:app\npythonpath = .\n")
    for name, value in {
        "CELERY_ASTRA_CASSANDRA_HOSTS": node.host,
        "CELERY_ASTRA_CASSANDRA_PORT": str(node.port),
        "CELERY_ASTRA_CASSANDRA_USERNAME": "tester",
        "CELERY_ASTRA_CASSANDRA_PASSWORD": SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-vv", "-rA", timeout=300)
    result.assert_outcomes(passed=1)
    assert SECRET not in result.stdout.str() + result.stderr.str()
