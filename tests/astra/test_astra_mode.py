"""--astra end to end through the driver's real cloud path, against the local Astra stand-in.

The sortWords example suite runs unchanged with --astra; foreign tables in the
shared keyspace survive; bad bundles, tokens and keyspaces fail with one sentence
each; the token never appears in any output.
"""

import datetime
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.astra_standin import (
    AstraStandIn,
    astra_guardrails,
    cassandra_container,
    connect_superuser,
    write_corrupt_zip,
)

pytestmark = pytest.mark.usefixtures("container_engine")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sortwords"
KEYSPACE = "astra_ks"
# The stand-in enforces Astra's table limit as Cassandra's guardrail. Astra Serverless allows 50; this
# module's node allows 16, so that filling it up takes seconds (the rule is the same).
TABLE_LIMIT = 16


@pytest.fixture(scope="module")
def astra(tmp_path_factory):
    with cassandra_container(extra_yaml=astra_guardrails(TABLE_LIMIT)) as node:
        with AstraStandIn(node.host, node.port, keyspace=KEYSPACE, workdir=tmp_path_factory.mktemp("astra")) as standin:
            cluster, session = connect_superuser(node.host, node.port)
            standin.superuser_session = session
            try:
                yield standin
            finally:
                cluster.shutdown()


def run_example(astra, *args, bundle=None, token=None, keyspace=KEYSPACE, timeout=300, client=None):
    """The example suite with --astra in a subprocess, as a user's CI would run it; ``client`` is a
    (client id, client secret) pair to log in with instead of the token."""
    credentials = ({"ASTRA_DB_CLIENT_ID": client[0], "ASTRA_DB_CLIENT_SECRET": client[1]} if client
                   else {"ASTRA_DB_APPLICATION_TOKEN": token or astra.token})
    env = {key: value for key, value in os.environ.items() if not key.startswith("ASTRA_DB_")}
    env.update({"ASTRA_DB_SECURE_BUNDLE_PATH": bundle or astra.bundle_path, "ASTRA_DB_KEYSPACE": keyspace,
                **credentials})
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--astra", "-rA", *args],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=timeout)
    return completed, completed.stdout + completed.stderr


def bundle_with_closed_metadata_port(bundle_path, dest) -> str:
    """A copy of the bundle whose config.json names a port where nothing listens."""
    import json
    import socket
    import zipfile

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    with zipfile.ZipFile(bundle_path) as source, zipfile.ZipFile(dest, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "config.json":
                config = json.loads(data)
                config["port"] = closed_port
                data = json.dumps(config).encode()
            target.writestr(info, data)
    return str(dest)


def tables(astra) -> set:
    rows = astra.superuser_session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (KEYSPACE,))
    return {row.table_name for row in rows}


@pytest.fixture
def foreign_tables(astra):
    """Tables the plugin did not create, holding data, in the shared keyspace."""
    session = astra.superuser_session
    session.execute(f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.celery_tasks (task_id text PRIMARY KEY, status text)")
    session.execute(f"INSERT INTO {KEYSPACE}.celery_tasks (task_id, status) VALUES ('prod-1', 'SUCCESS')")
    session.execute(f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.orders (id int PRIMARY KEY) "
                    f"WITH comment = 'pytest-celery-astra is mentioned but this is no mark'")
    session.execute(f"INSERT INTO {KEYSPACE}.orders (id) VALUES (7)")
    yield
    assert session.execute(f"SELECT status FROM {KEYSPACE}.celery_tasks WHERE task_id = 'prod-1'").one().status \
        == "SUCCESS"
    assert session.execute(f"SELECT id FROM {KEYSPACE}.orders").one().id == 7


def test_example_suite_passes_with_astra_under_xdist(astra, foreign_tables):
    before = tables(astra)
    # One broker for the run (xdist_faults = skip): its fault tests skip, as they would on Astra's Cassandra side.
    completed, output = run_example(astra, "-n", "2", "--celery-astra-xdist-faults", "skip")
    assert completed.returncode == 0, output
    # The live-only test runs too; the two own-table tests skip (sorted_words is one table for both workers).
    assert " 10 passed, 8 skipped" in output, output
    assert "on Astra DB sorted_words is shared by the xdist workers" in output, output
    assert "celery-astra cassandra: Astra DB bundle" in output
    assert astra.token not in output
    # The run's result tables (one per worker) were dropped; nothing else was touched.
    assert tables(astra) == before


def test_live_only_test_is_skipped_without_astra(astra):
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "-k", "live", "--celery-astra-broker",
         "memory"], cwd=EXAMPLE, capture_output=True, text=True, timeout=300)
    assert "SKIPPED [1]" in completed.stdout and "needs a live Astra DB: run with --astra" in completed.stdout


def test_drop_stale_drops_only_marked_tables_of_old_runs(astra, foreign_tables):
    old = (datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(hours=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    recent = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    session = astra.superuser_session
    session.execute(f"CREATE TABLE {KEYSPACE}.crashed_run (k int PRIMARY KEY) "
                    f"WITH comment = 'pytest-celery-astra run=deadbeef worker=gw0 created={old}'")
    session.execute(f"CREATE TABLE {KEYSPACE}.running_run (k int PRIMARY KEY) "
                    f"WITH comment = 'pytest-celery-astra run=cafe worker=gw0 created={recent}'")
    try:
        completed, output = run_example(astra, "--astra-drop-stale", "--celery-astra-broker", "memory", "-k",
                                        "documented")
        assert completed.returncode == 0, output
        remaining = tables(astra)
        assert "crashed_run" not in remaining      # marked, another run, hours old
        assert "running_run" in remaining          # marked but recent: maybe a concurrent run
        assert {"celery_tasks", "orders"} <= remaining
    finally:
        session.execute(f"DROP TABLE IF EXISTS {KEYSPACE}.running_run")


@pytest.mark.parametrize("case, needle", [
    ("missing bundle", "does not exist; fix --astra-bundle (ASTRA_DB_SECURE_BUNDLE_PATH)"),
    ("corrupt zip", "is not a zip file"),
    ("wrong token", "Astra DB refused the login; check --astra-token (ASTRA_DB_APPLICATION_TOKEN)"),
    ("missing keyspace", "keyspace 'no_such_ks' does not exist in this Astra DB database"),
    ("foreign client certificate", "metadata service did not accept the secure connect bundle (TLS handshake:"),
    ("unreachable metadata service", "metadata service named in the secure connect bundle could not be reached"),
])
def test_bad_input_is_one_clear_sentence_and_the_token_stays_secret(astra, tmp_path, case, needle):
    bundle, token, keyspace = astra.bundle_path, astra.token, KEYSPACE
    if case == "missing bundle":
        bundle = str(tmp_path / "nope.zip")
    elif case == "corrupt zip":
        bundle = write_corrupt_zip(tmp_path / "corrupt.zip")
    elif case == "wrong token":
        token = "AstraCS:wrongwrongwrong:0123456789abcdef"
    elif case == "missing keyspace":
        keyspace = "no_such_ks"
    elif case == "unreachable metadata service":
        bundle = bundle_with_closed_metadata_port(astra.bundle_path, tmp_path / "unreachable.zip")
    else:
        bundle = astra.make_bundle_with_foreign_client_cert(tmp_path / "foreign.zip")
    completed, output = run_example(astra, "--showlocals", "-x", "--celery-astra-broker", "memory",
                                    bundle=bundle, token=token, keyspace=keyspace)
    assert completed.returncode != 0
    assert needle in output, output
    assert token not in output and astra.token not in output
    assert "Traceback" not in output


BUNDLE_PROJECT_TEST = '''
import os
import stat
from pathlib import Path

from tasks import sortWords


def test_after_changing_directory(celery_astra_app, celery_astra_worker, tmp_path, monkeypatch):
    used = Path(celery_astra_app.conf.cassandra_secure_bundle_path)
    assert used.is_absolute() and used.name == "secure-connect-bundle.zip"
    assert "secrets" not in str(used)                              # a private copy, not the mount
    assert stat.S_IMODE(used.parent.stat().st_mode) == 0o700
    Path(os.environ["USED_BUNDLE_NOTE"]).write_text(str(used))
    monkeypatch.chdir(tmp_path)                                    # Celery opens the bundle lazily
    assert sortWords.delay("b a", False).get(timeout=60) == "a b"
'''


def test_relative_bundle_in_a_read_only_directory_and_a_test_that_changes_directory(astra, tmp_path):
    """The plugin and Celery use one private absolute copy of the bundle, removed at the end: the
    driver unzips next to the bundle (a read-only secrets mount fails), and a relative path breaks
    once a test changes directory."""
    import shutil

    secrets = tmp_path / "secrets"
    secrets.mkdir()
    shutil.copy(astra.bundle_path, secrets / "bundle.zip")
    secrets.chmod(0o555)
    project = tmp_path / "project"
    project.mkdir()
    for name in ("tasks.py", "celeryconfig.py", "pytest.ini"):
        shutil.copy(EXAMPLE / name, project / name)
    (project / "test_bundle.py").write_text(BUNDLE_PROJECT_TEST)
    note = tmp_path / "used-bundle.txt"
    env = {**os.environ, "ASTRA_DB_SECURE_BUNDLE_PATH": "../secrets/bundle.zip",
           "ASTRA_DB_APPLICATION_TOKEN": astra.token, "ASTRA_DB_KEYSPACE": KEYSPACE, "USED_BUNDLE_NOTE": str(note)}
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--astra", "--celery-astra-broker", "memory",
             "test_bundle.py"], cwd=project, env=env, capture_output=True, text=True, timeout=300)
        output = completed.stdout + completed.stderr
        assert completed.returncode == 0, output
        assert "1 passed" in output
        assert sorted(p.name for p in secrets.iterdir()) == ["bundle.zip"]
        assert not Path(note.read_text()).parent.exists()          # the copy (it holds the key) is gone
    finally:
        secrets.chmod(0o755)


def test_the_stand_in_refuses_what_astra_refuses(astra, foreign_tables):
    """Astra's write-consistency rule is enforced server side for the token's role, as on Astra."""
    from cassandra import ConsistencyLevel, InvalidRequest
    from cassandra.query import SimpleStatement

    cluster = astra.new_cluster()
    try:
        session = cluster.connect()
        for level in (ConsistencyLevel.ONE, ConsistencyLevel.ANY, ConsistencyLevel.LOCAL_ONE):
            statement = SimpleStatement(f"INSERT INTO {KEYSPACE}.orders (id) VALUES (8)", consistency_level=level)
            with pytest.raises(InvalidRequest, match="(?i)guardrail"):
                session.execute(statement)
        session.execute(SimpleStatement(f"DELETE FROM {KEYSPACE}.orders WHERE id = 8",
                                        consistency_level=ConsistencyLevel.LOCAL_QUORUM))
    finally:
        cluster.shutdown()


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_table_budget_is_checked_before_any_test(astra, foreign_tables, xdist):
    before = tables(astra)
    limit = len(before) + (1 if xdist else 0)      # one table short of what the run needs
    completed, output = run_example(astra, "--celery-astra-broker", "memory", "--astra-table-limit", str(limit),
                                    *xdist)
    assert completed.returncode != 0
    needed = 2 if xdist else 1
    assert f"this run needs {needed} more (one per xdist worker), over the limit of {limit} tables" in output, output
    assert "Traceback" not in output and astra.token not in output
    assert tables(astra) == before                 # refused before creating anything


def test_the_databases_own_table_limit_is_one_sentence(astra, foreign_tables):
    """With the plugin's check set high, the server's limit itself is reached: one sentence, nothing left."""
    session = astra.superuser_session
    before = tables(astra)
    session.execute("CREATE KEYSPACE IF NOT EXISTS filler WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    try:
        for n in range(TABLE_LIMIT - len(before)):   # the database is then full
            session.execute(f"CREATE TABLE IF NOT EXISTS filler.t{n} (k int PRIMARY KEY)", timeout=60)
        completed, output = run_example(astra, "--celery-astra-broker", "memory", "--astra-table-limit", "1000")
        assert completed.returncode != 0
        assert "the database refused table" in output and "it is at its limit of tables" in output, output
        assert "Traceback" not in output
        assert tables(astra) == before
    finally:
        session.execute("DROP KEYSPACE IF EXISTS filler", timeout=120)


def test_client_id_and_secret_log_in_and_the_secret_stays_secret(astra):
    client_id, secret = astra.add_client("all")
    completed, output = run_example(astra, "--celery-astra-broker", "memory", "-k", "documented", client=(client_id, secret))
    assert completed.returncode == 0, output
    assert secret not in output


def test_a_read_write_role_without_create_is_one_sentence(astra):
    client_id, secret = astra.add_client("read-write")
    completed, output = run_example(astra, "--celery-astra-broker", "memory", client=(client_id, secret))
    assert completed.returncode != 0
    assert "the Astra client id's role may not create table" in output, output
    assert "a read/write role cannot" in output
    assert "Traceback" not in output and secret not in output


def test_a_hibernated_database_is_one_sentence(astra):
    with astra.hibernated():
        completed, output = run_example(astra, "--celery-astra-broker", "memory")
    assert completed.returncode != 0
    assert "metadata service answered HTTP 503, as it does for a hibernated" in output, output
    assert "Traceback" not in output and astra.token not in output


DATABASE_ID = "3f1c2b7e-9a4d-4c2e-8f0a-5b6d7e8f9a01"


def run_with_download(astra, api, *args, region="eu-west1", token=None, devops_url=None, trust=True):
    """The example suite with --astra given a database id instead of a bundle: the bundle comes from the
    DevOps API stand-in ``api``, trusted through SSL_CERT_FILE as a system CA would be."""
    env = {key: value for key, value in os.environ.items() if not key.startswith(("ASTRA_DB_", "SSL_CERT"))}
    env.update({"ASTRA_DB_ID": DATABASE_ID, "ASTRA_DB_APPLICATION_TOKEN": token or astra.token,
                "ASTRA_DB_KEYSPACE": KEYSPACE, "CELERY_ASTRA_DEVOPS_URL": devops_url or api.url})
    if region:
        env["ASTRA_DB_REGION"] = region
    if trust:
        env["SSL_CERT_FILE"] = api.ca_file
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--astra", "-rA", "--showlocals", *args],
        cwd=EXAMPLE, env=env, capture_output=True, text=True, timeout=300)
    return completed, completed.stdout + completed.stderr


@pytest.fixture
def devops_api(astra):
    from tests.astra_standin.devops_api import DevOpsApi

    with DevOpsApi(astra.bundle_path, astra.token, DATABASE_ID, regions=("us-east1", "eu-west1")) as api:
        yield api


def bundle_directories() -> set:
    import tempfile

    return set(Path(tempfile.gettempdir()).glob("pytest-celery-astra-bundle-*"))


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_bundle_is_downloaded_with_the_database_id_and_the_token(astra, devops_api, foreign_tables, xdist):
    before = bundle_directories()
    completed, output = run_with_download(astra, devops_api, *xdist, "--celery-astra-broker", "memory")
    assert completed.returncode == 0, output
    assert "passed" in output and "failed" not in output
    assert f"Astra DB bundle downloaded for database {DATABASE_ID} (env ASTRA_DB_ID), region eu-west1" in output
    # The region asked for, once per pytest process; the link itself is used without the token.
    processes = 2 if xdist else 1
    assert devops_api.requests.count(f"POST /v2/databases/{DATABASE_ID}/secureBundleURL?all=true") == processes
    assert devops_api.requests.count("GET /bundles/eu-west1/secure-connect.zip") == processes
    assert astra.token not in output and devops_api.signature not in output
    assert bundle_directories() == before  # every process removed its download


@pytest.mark.parametrize("case, needle", [
    ("token refused", "the Astra DevOps API refused the token (HTTP 401) when asked for the bundle of database"),
    ("unknown region", "has no region 'mars-north1' (it has: eu-west1, us-east1); fix --astra-db-region"),
    ("parked database", "cannot give a bundle for database 3f1c2b7e-9a4d-4c2e-8f0a-5b6d7e8f9a01 in its current "
                        "state (HTTP 409"),
    ("unreachable", "the Astra DevOps API could not be reached to download the bundle ("),
    ("untrusted certificate", "to download the bundle (TLS: unable to get local issuer certificate); trust its "
                              "certificate authority (SSL_CERT_FILE"),
    ("not a UUID", "is not valid for astra_db_id: expected the database id shown in the Astra console"),
])
def test_bundle_download_failures_are_one_sentence_and_secrets_stay_secret(astra, devops_api, case, needle):
    from tests.astra_standin import generate_astra_token

    kwargs = {}
    if case == "token refused":
        kwargs["token"] = generate_astra_token()
    elif case == "unknown region":
        kwargs["region"] = "mars-north1"
    elif case == "parked database":
        devops_api.status = 409
    elif case == "unreachable":
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            kwargs["devops_url"] = f"https://127.0.0.1:{probe.getsockname()[1]}"
    elif case == "untrusted certificate":
        kwargs["trust"] = False
    started = time.monotonic()
    if case == "not a UUID":
        completed, output = run_with_download(astra, devops_api, "--astra-db-id", "my-database",
                                              "--celery-astra-broker", "memory")
    else:
        completed, output = run_with_download(astra, devops_api, "--celery-astra-broker", "memory", "-x", **kwargs)
    assert completed.returncode != 0
    assert needle in output, output
    assert time.monotonic() - started < 30
    assert output.count(needle) <= 2  # the error once, as the fixture's error and in pytest's summary line
    assert "Traceback" not in output
    secrets_ = [astra.token, devops_api.signature] + ([kwargs["token"]] if "token" in kwargs else [])
    assert not any(secret in output for secret in secrets_)
