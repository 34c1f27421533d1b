"""--astra end to end through the driver's real cloud path, against the local Astra stand-in.

The sortWords example suite runs unchanged with --astra; foreign tables in the
shared keyspace survive; bad bundles, tokens and keyspaces fail with one sentence
each; the token never appears in any output.
"""

import datetime
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.astra_standin import AstraStandIn, cassandra_container, connect_superuser, write_corrupt_zip

pytestmark = pytest.mark.usefixtures("container_engine")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sortwords"
KEYSPACE = "astra_ks"


@pytest.fixture(scope="module")
def astra(tmp_path_factory):
    with cassandra_container() as node:
        with AstraStandIn(node.host, node.port, keyspace=KEYSPACE, workdir=tmp_path_factory.mktemp("astra")) as standin:
            cluster, session = connect_superuser(node.host, node.port)
            standin.superuser_session = session
            try:
                yield standin
            finally:
                cluster.shutdown()


def run_example(astra, *args, bundle=None, token=None, keyspace=KEYSPACE, timeout=300):
    """The example suite with --astra in a subprocess, as a user's CI would run it."""
    env = {**os.environ,
           "ASTRA_DB_SECURE_BUNDLE_PATH": bundle or astra.bundle_path,
           "ASTRA_DB_APPLICATION_TOKEN": token or astra.token,
           "ASTRA_DB_KEYSPACE": keyspace}
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
    completed, output = run_example(astra, "-n", "2")
    assert completed.returncode == 0, output
    assert " 12 passed" in output, output  # the live-only test runs too
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
