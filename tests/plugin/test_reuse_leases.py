"""Keyspace leases on kept containers (leases.py), against a real kept Cassandra and RabbitMQ.

A run that ends normally leaves its leased keyspace clean (only the owner table and an empty result table)
and the next run uses it without any DDL; a run that holds a slot keeps it from a concurrent run (which
leases another); a SIGKILLed run leaves its slot dirty, and the next run recreates it: none of the killed
run's rows or tables are seen."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

# serial: compares every container of the plugin (or every kept one) before and after.
pytestmark = [pytest.mark.usefixtures("container_engine"), pytest.mark.serial]

APP = '''
from celery import Celery

app = Celery("myapp")


@app.task(name="myapp.echo")
def echo(value):
    return value
'''
TESTS = '''
import os
import time

from myapp import echo


def test_store_a_row_and_make_a_table(celery_astra_worker, celery_astra_database):
    db = celery_astra_database
    comment = db.session.execute(
        "SELECT comment FROM system_schema.tables WHERE keyspace_name = %s AND table_name = 'celery_astra_owner'",
        (db.keyspace,)).one()[0]
    tables = sorted(row[0] for row in db.session.execute(
        "SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s", (db.keyspace,)))
    rows = db.session.execute(f"SELECT COUNT(*) FROM {db.result_table}").one()[0]
    if "extra" in tables:
        rows += db.session.execute("SELECT COUNT(*) FROM extra").one()[0]
    owner_run = re.search(r"run=(\\w+)", comment).group(1)
    print(f"\\nLEASE keyspace={db.keyspace} table={db.result_table} run={db.run_id} owner_run={owner_run} adopted={db.adopted} "
          f"tables={','.join(tables)} rows={rows} sdk={'docker' in sys.modules}")
    assert echo.delay(os.environ["RUN_TAG"]).get(timeout=30) == os.environ["RUN_TAG"]
    db.create_table("extra", cql="CREATE TABLE extra (id int PRIMARY KEY)")
    db.session.execute("INSERT INTO extra (id) VALUES (1)")
    if os.environ.get("HOLD_FILE"):
        # A row that the run's janitor never gets to delete, then wait to be killed.
        echo.delay("left by a killed run").get(timeout=30)
        open(os.environ["HOLD_FILE"], "w").close()
        time.sleep(300)
'''.replace("import os\nimport time", "import os\nimport re\nimport sys\nimport time", 1)


@pytest.fixture
def project(pytester):
    pytester.makepyfile(myapp=APP, test_lease=TESTS)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = myapp:app\npythonpath = .\n")
    return pytester.path


@pytest.fixture
def kept_containers():
    """Removes the kept containers this test started (and only those)."""
    import docker

    client = docker.from_env()
    label = "io.github.pytest-celery-astra.reuse=1"
    before = {c.id for c in client.containers.list(all=True, sparse=True, filters={"label": label})}
    yield
    for container in client.containers.list(all=True, filters={"label": label}):
        if container.id not in before:
            container.remove(force=True, v=True)
    client.close()


def assert_plain_list_matches_the_sdk():
    """engine.list_containers (one GET, no SDK) sees the kept containers as the docker SDK does."""
    from pytest_celery_astra.containers.engine import ListedContainer, docker_client, list_containers

    labels = ["io.github.pytest-celery-astra.reuse=1"]
    client = docker_client()
    try:
        by_sdk = {c.id: ListedContainer.from_sdk(c) for c in client.containers.list(all=True, filters={"label": labels})}
    finally:
        client.close()
    plain = {c.id: c for c in list_containers(labels)}
    assert plain.keys() == by_sdk.keys() and len(plain) >= 2
    for container_id, expected in by_sdk.items():
        listed = plain[container_id]
        assert (listed.labels, listed.running) == (expected.labels, expected.running)
        assert expected.ports and all(listed.published(port) == expected.published(port) for port in expected.ports)


def run(project, tag, **env):
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", "--celery-astra-reuse-containers",
         "true"], cwd=project, env={**os.environ, "RUN_TAG": tag, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def lease_line(process, timeout=300):
    output, _ = process.communicate(timeout=timeout)
    assert process.returncode == 0, output
    match = re.search(r"LEASE (.*)", output)
    assert match, output
    return dict(part.split("=", 1) for part in match.group(1).split()), output


def test_a_kept_keyspace_is_handed_on_clean_held_alone_and_reset_after_a_kill(project, kept_containers, tmp_path):
    first, output = lease_line(run(project, "first"))
    assert "(a kept one, leased per process)" in output
    second, _ = lease_line(run(project, "second"))
    # The first run started the containers (through testcontainers); the second found them with one plain
    # request to the engine and never imported the docker SDK.
    assert first["sdk"] == "True" and second["sdk"] == "False"
    assert_plain_list_matches_the_sdk()
    # The first run left the keyspace clean: the second took it as it was (no DDL: the owner table is the
    # first run's), with the first run's create_table() table (the same statement) and the result table, empty.
    assert second["keyspace"] == first["keyspace"]
    assert second["adopted"] == "True" and second["owner_run"] == first["owner_run"]
    assert second["tables"] == f"celery_astra_owner,{first['table']},extra" and second["rows"] == "0"

    hold = tmp_path / "holding"
    killed = run(project, "killed", HOLD_FILE=str(hold))
    try:
        deadline = time.monotonic() + 120
        while not hold.exists():
            assert killed.poll() is None and time.monotonic() < deadline, killed.communicate()[0]
            time.sleep(0.1)
        # The slot is held: a concurrent run leases another keyspace.
        beside, _ = lease_line(run(project, "beside"))
        assert beside["keyspace"] != first["keyspace"] and beside["adopted"] == "False"
    finally:
        killed.send_signal(signal.SIGKILL)
        killed.communicate(timeout=60)

    after, output = lease_line(run(project, "after"))
    # The killed run left its slot "busy": the next holder recreated the keyspace (its own owner table),
    # and none of the killed run's rows or tables are there.
    assert after["keyspace"] == first["keyspace"], output
    assert after["adopted"] == "False" and after["owner_run"] == after["run"]
    assert after["tables"] == f"celery_astra_owner,{first['table']}" and after["rows"] == "0"
