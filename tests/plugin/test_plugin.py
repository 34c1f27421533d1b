"""The plugin as users run it: pytest in a subprocess, real broker and real Cassandra containers.

Each test writes a small project with pytester and runs it with runpytest_subprocess,
so options, ini, entry point, xdist and teardown are exercised exactly as in a user's CI.
"""

import os
import re
import signal
import subprocess
import sys
import time

import docker  # at import, before pytester snapshots sys.modules (see test_bad_input)
import pytest

pytestmark = pytest.mark.usefixtures("container_engine")

USER_APP = '''
import os

from celery import Celery

app = Celery("myapp")
app.conf.update(task_default_priority=3, result_extended=True, my_own_setting="kept")
app.conf.task_routes = {"myapp.routed": {"queue": "named_queue"}}


@app.task(name="myapp.add")
def add(a, b):
    return a + b


@app.task(name="myapp.total")
def total(numbers):
    return sum(numbers)


@app.task(name="myapp.where")
def where():
    # The embedded worker runs in the test process: this names the xdist worker that ran the task.
    return os.environ.get("PYTEST_XDIST_WORKER", "master")


@app.task(name="myapp.routed")
def routed():
    return os.environ.get("PYTEST_XDIST_WORKER", "master")
'''

REPORT_THREADS = '''
import threading

def pytest_unconfigure(config):
    # cassandra-driver's process-wide I/O loop thread lives until exit by design; its name depends on
    # the reactor ("event_loop", or "asyncore_cassandra_driver_event_loop" before Python 3.12).
    names = sorted(t.name for t in threading.enumerate()
                   if t is not threading.main_thread() and not t.name.endswith("event_loop"))
    print("THREADS-AT-END:", names)
'''


def run_id_of(result) -> str:
    match = re.search(r"run id (\w+)", result.stdout.str())
    assert match, result.stdout.str()
    return match.group(1)


def containers_of_run(run_id: str, engine: "str | None" = None) -> list:
    """The containers labelled with ``run_id``; ``engine`` is a DOCKER_HOST to ask instead of the environment's."""
    client = docker.DockerClient(base_url=engine) if engine else docker.from_env()
    try:
        return client.containers.list(all=True, sparse=True, filters={"label": f"io.github.pytest-celery-astra.run-id={run_id}"})
    finally:
        client.close()


@pytest.fixture
def project(pytester):
    pytester.makepyfile(myapp=USER_APP)
    pytester.makeconftest(REPORT_THREADS)
    pytester.makeini("[pytest]\ncelery_astra_app = myapp:app\npythonpath = .\n")
    return pytester


@pytest.mark.parametrize("broker_args", [
    ["--celery-astra-broker-kind", "rabbitmq"],
    ["--celery-astra-broker-kind", "redis"],
    ["--celery-astra-broker", "memory"],
], ids=["rabbitmq", "redis", "memory"])
def test_user_app_round_trip_cleanup_and_teardown(project, broker_args):
    project.makepyfile(test_user='''
        import pytest
        from myapp import add

        def test_round_trip_and_row(celery_astra_app, celery_astra_worker, celery_astra_cassandra):
            assert add.delay(2, 3).get(timeout=30) == 5
            table = celery_astra_app.conf.cassandra_table
            assert [r.status for r in celery_astra_cassandra.execute(f"SELECT status FROM {table}")] == ["SUCCESS"]
            assert celery_astra_app.conf.my_own_setting == "kept"
            assert celery_astra_app.conf.task_default_priority == 3

        def test_table_was_emptied(celery_astra_app, celery_astra_cassandra):
            table = celery_astra_app.conf.cassandra_table
            assert celery_astra_cassandra.execute(f"SELECT * FROM {table}").one() is None

        def test_registered_table_is_cleaned_and_foreign_refused(celery_astra_cassandra, celery_astra_cleanup):
            from pytest_celery_astra import TableNotOwnedError
            celery_astra_cassandra.execute("CREATE TABLE IF NOT EXISTS notes (id int PRIMARY KEY)")
            celery_astra_cassandra.execute("INSERT INTO notes (id) VALUES (1)")
            celery_astra_cleanup.register("notes")
            with pytest.raises(TableNotOwnedError, match="system.local"):
                celery_astra_cleanup.register("system.local")

        def test_registered_table_was_emptied(celery_astra_cassandra):
            assert celery_astra_cassandra.execute("SELECT * FROM notes").one() is None

        def test_group_and_chord(celery_astra_worker):
            from celery import chord, group
            from myapp import total
            assert group(add.s(i, i) for i in range(10))().get(timeout=30) == [2 * i for i in range(10)]
            assert chord(add.s(i, i) for i in range(5))(total.s()).get(timeout=30) == 20
    ''')
    result = project.runpytest_subprocess("-p", "no:randomly", *broker_args, timeout=300)
    result.assert_outcomes(passed=5)
    mode = "memory" if "memory" in broker_args else f"container {broker_args[-1]}"
    result.stdout.fnmatch_lines([
        f"celery-astra broker: {mode}*",
        "celery-astra cassandra: container*keyspace celery_astra_master*",
        "celery-astra worker: pool solo (default), concurrency 1 (default), *app myapp:app (ini celery_astra_app)*",
    ])
    # Nothing left behind: no worker or driver thread, no container.
    threads = re.search(r"THREADS-AT-END: (.*)", result.stdout.str()).group(1)
    assert threads == "[]"
    assert containers_of_run(run_id_of(result)) == []


def test_xdist_workers_share_containers_but_not_queues_or_keyspaces(project):
    project.makepyfile(test_isolation='''
        import os
        import docker
        import pytest
        from myapp import routed, where

        @pytest.mark.parametrize("n", range(8))
        def test_task_runs_on_own_worker(n, celery_astra_app, celery_astra_worker, celery_astra_cassandra):
            me = os.environ["PYTEST_XDIST_WORKER"]
            assert celery_astra_cassandra.keyspace == f"celery_astra_{me}"
            for _ in range(5):
                assert where.delay().get(timeout=30) == me
                assert routed.delay().get(timeout=30) == me

        def test_one_broker_and_one_cassandra_for_the_run(celery_astra_worker):
            client = docker.from_env()
            run_containers = [c for c in client.containers.list()
                              if c.labels.get("io.github.pytest-celery-astra.run-id") == os.environ["RUN_ID_PROBE"]]
            assert sorted(c.labels["io.github.pytest-celery-astra.service"] for c in run_containers) == \\
                ["cassandra", "rabbitmq"]

        def test_every_workers_vhost_was_made_when_rabbitmq_started(request, celery_astra_app):
            # One rabbitmqctl for both workers, by the one that started RabbitMQ (broker.with_worker_vhosts).
            from pytest_celery_astra.run.context import RUN_CONTEXT_KEY
            service = request.config.stash[RUN_CONTEXT_KEY].services["rabbitmq"]
            assert tuple(service.vhosts) == ("celery_astra_gw0", "celery_astra_gw1")
            me = os.environ["PYTEST_XDIST_WORKER"]
            assert celery_astra_app.conf.broker_url.unmasked().endswith(f"/celery_astra_{me}")
    ''')
    project.makeconftest(REPORT_THREADS + '''
import os, pytest

@pytest.fixture(autouse=True)
def _expose_run_id(request):
    from pytest_celery_astra.run.context import RUN_CONTEXT_KEY
    os.environ["RUN_ID_PROBE"] = request.config.stash[RUN_CONTEXT_KEY].run_id
''')
    result = project.runpytest_subprocess("-n", "2", "--celery-astra-queues", "named_queue", timeout=300)
    result.assert_outcomes(passed=10)
    assert containers_of_run(run_id_of(result)) == []


def test_a_database_only_session_does_not_wait_for_the_broker_and_leaves_nothing(project):
    """The database fixture waits for Cassandra alone; the broker boots on in the background. Here
    the "RabbitMQ" is a Redis image, which never answers AMQP: the database-only test still passes,
    and at the end the start nobody waited for gives up and its container is removed with the rest."""
    from tests.conftest import image

    project.makepyfile(test_db='''
        def test_keyspace(celery_astra_database):
            assert celery_astra_database.session.execute("SELECT now() FROM system.local").one()
    ''')
    started = time.monotonic()
    # A start waited for would take the whole startup timeout (300 s); under a loaded CI the run itself takes ~15-45 s.
    result = project.runpytest_subprocess(f"--celery-astra-rabbitmq-image={image('redis')}",
                                          "--celery-astra-startup-timeout", "300", timeout=400)
    result.assert_outcomes(passed=1)
    assert time.monotonic() - started < 150  # not the 300 s startup timeout of the broker that never answers
    assert containers_of_run(run_id_of(result)) == []
    assert "pytest-celery-astra:" not in result.stdout.str() + result.stderr.str()  # no cleanup problem


def test_start_failure_attaches_container_log_and_removes_it(project, request):
    from tests.conftest import image

    project.makepyfile(test_fail='''
        def test_needs_cassandra(celery_astra_cassandra):
            pass
    ''')
    # A Redis image posing as Cassandra never answers CQL: the wait times out.
    result = project.runpytest_subprocess(
        "--celery-astra-broker", "memory", "--celery-astra-startup-timeout", "4",
        f"--celery-astra-cassandra-image={image('redis')}", timeout=120)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "*cassandra at *did not answer within 4 s*raise --celery-astra-startup-timeout*",
        "*last 40 lines of the cassandra container's log*",
    ])
    assert "Traceback" not in result.stdout.str()
    assert containers_of_run(run_id_of(result)) == []


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
def test_dead_worker_fails_the_waiting_test_with_its_cause(project):
    project.makepyfile(stopper='''
        from celery.worker import state
        from myapp import app

        @app.task(name="myapp.kill_worker")
        def kill_worker():
            state.should_stop = 1
    ''')
    project.makepyfile(test_dead='''
        import stopper
        from myapp import add

        def test_worker_dies(celery_astra_worker):
            stopper.kill_worker.delay().get(timeout=30)
            celery_astra_worker.thread.join(10)  # the worker's loop sees the flag and exits
            assert not celery_astra_worker.thread.is_alive()
            add.delay(1, 1).get(timeout=60)
    ''')
    started = time.monotonic()
    result = project.runpytest_subprocess("--celery-astra-broker", "memory", timeout=180)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*EmbeddedWorkerError: pytest-celery-astra: the embedded worker died*"])
    assert time.monotonic() - started < 60, "the test waited for its timeout instead of failing at once"


def test_no_container_engine_is_one_clear_sentence(project):
    project.makepyfile(test_x='''
        def test_needs_cassandra(celery_astra_cassandra):
            pass
    ''')
    env_host = os.environ.get("DOCKER_HOST")
    os.environ["DOCKER_HOST"] = "unix:///nonexistent/docker.sock"
    try:
        result = project.runpytest_subprocess(timeout=60)
    finally:
        os.environ["DOCKER_HOST"] = env_host or ""
        if env_host is None:
            del os.environ["DOCKER_HOST"]
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([
        "celery-astra broker: memory*auto: no container engine answers*",
        "*no container engine answers at unix:///nonexistent/docker.sock*set DOCKER_HOST, "
        "or set --celery-astra-cassandra-hosts*",
    ])


def test_bad_setting_is_a_usage_error(project):
    result = project.runpytest_inprocess("--celery-astra-worker-pool", "prefork")  # refused at configure
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*option --celery-astra-worker-pool 'prefork' is not valid for worker_pool*"])


def test_missing_app_module_is_a_usage_error(project):
    result = project.runpytest_inprocess("--celery-astra-app", "nosuchmodule:app")  # refused at configure
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*module 'nosuchmodule' of --celery-astra-app*cannot be found*"])


def test_ctrl_c_removes_the_containers(project):
    project.makepyfile(test_slow='''
        import time

        def test_waits(celery_astra_worker):
            print("READY-FOR-CTRL-C", flush=True)
            time.sleep(120)
    ''')
    process = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-s", "-p", "no:cacheprovider"], cwd=project.path,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = []
    for line in process.stdout:
        output.append(line)
        if "READY-FOR-CTRL-C" in line:
            break
    process.send_signal(signal.SIGINT)
    try:
        rest, _ = process.communicate(timeout=90)  # the plugin's cleanup watchdog acts after 45 s
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)  # pytest's faulthandler prints every thread's stack
        rest, _ = process.communicate(timeout=30)
        pytest.fail("pytest did not exit within 90 s of Ctrl-C:\n" + "".join(output) + rest)
    text = "".join(output) + rest
    # The docs promise an exit within seconds: a cleanup the 45 s watchdog had to end is a failure, with its stacks.
    assert "has taken over 45 s; every thread's stack follows" not in text, text
    assert "KeyboardInterrupt" in text
    run_id = re.search(r"run id (\w+)", text).group(1)
    assert containers_of_run(run_id) == []


def test_existing_cluster_with_login_keyspace_created_then_dropped(project):
    """Contact-points mode: no Cassandra container; the run's keyspace (with its run id: the cluster may be
    shared) is created, then dropped at the end; other keyspaces are never touched."""
    from tests.astra_standin import cassandra_container, connect_superuser

    project.makepyfile(test_hosts='''
        import re
        from myapp import add

        def test_round_trip(celery_astra_worker, celery_astra_cassandra):
            assert re.fullmatch(r"celery_astra_[0-9a-f]{10}_master", celery_astra_cassandra.keyspace)
            assert add.delay(20, 22).get(timeout=30) == 42
    ''')
    with cassandra_container() as node:  # PasswordAuthenticator, superuser cassandra/cassandra
        cluster, session = connect_superuser(node.host, node.port)
        try:
            session.execute("CREATE KEYSPACE foreign_ks WITH replication = "
                            "{'class': 'SimpleStrategy', 'replication_factor': 1}")
            os.environ["CELERY_ASTRA_CASSANDRA_PASSWORD"] = "cassandra"
            try:
                result = project.runpytest_subprocess(
                    "--celery-astra-broker", "memory", f"--celery-astra-cassandra-hosts={node.host}",
                    f"--celery-astra-cassandra-port={node.port}", "--celery-astra-cassandra-username=cassandra",
                    "--showlocals", timeout=180)
            finally:
                del os.environ["CELERY_ASTRA_CASSANDRA_PASSWORD"]
            keyspaces = {row.keyspace_name for row in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")}
        finally:
            cluster.shutdown()
    result.assert_outcomes(passed=1)
    run_id = run_id_of(result)
    result.stdout.fnmatch_lines([
        f"celery-astra cassandra: hosts {node.host} (option*) port {node.port}, keyspace celery_astra_{run_id}_master*"])
    assert not [name for name in keyspaces if name.startswith("celery_astra")]   # dropped at the end of the run
    assert "foreign_ks" in keyspaces                                               # never touched
    assert containers_of_run(run_id) == []


def test_unreachable_broker_url_is_one_sentence_in_seconds_with_the_password_masked(project):
    project.makepyfile(test_wt='''
        def test_needs_worker(celery_astra_worker):
            pass

        def test_not_run(celery_astra_worker):
            pass
    ''')
    started = time.monotonic()
    result = project.runpytest_subprocess(
        "--celery-astra-broker", "url", "--celery-astra-broker-url", "amqp://guest:s3cr3t-pw@127.0.0.1:1//",
        "--celery-astra-worker-timeout", "20", timeout=180)
    result.assert_outcomes(errors=1)
    assert time.monotonic() - started < 20  # refused at once, before any container starts
    result.stdout.fnmatch_lines([
        "celery-astra broker: url amqp://guest:***@127.0.0.1:1//*",
        "*the broker at amqp://guest:***@127.0.0.1:1// could not be reached (ConnectionRefusedError*); "
        "fix --celery-astra-broker-url*",
        "THREADS-AT-END: []",  # refused before Cassandra was ever connected
    ])
    assert "s3cr3t-pw" not in result.stdout.str() + result.stderr.str()
    assert containers_of_run(run_id_of(result)) == []


def test_services_asked_for_only_by_getfixturevalue_under_xdist_skip_with_the_reason(project):
    """Under xdist an xdist worker has containers of its own only if a collected test names celery_astra_services:
    asked for at run time instead, a fault would reach the other workers' tests, so it is refused. No test here
    starts a service: it is refused before."""
    project.makepyfile(test_late='''
        def test_asks_late(request):
            request.getfixturevalue("celery_astra_services")

        def test_beside():
            pass
    ''')
    result = project.runpytest_subprocess("-n", "2", "-rs", timeout=120)
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["*celery_astra_services under xdist needs its test to name it (an argument or "
                                 "usefixtures)*"])
