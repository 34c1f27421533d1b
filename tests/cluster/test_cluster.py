"""The sortWords example suite on a shared 3-node Cassandra cluster (contact-points mode), as a team's CI
would run it: -n 0 and -n 2, two runs at once, a node stopped and started mid-run at replication 3 and at
replication 1, kept keyspaces. After each: no keyspace of the plugin's left, one schema version on every node.

The example's fault tests are left out here (``-k "not faults"``): their Cassandra faults skip on a cluster that
is not a container of the run, and their broker faults run on one node in every nox session; what is the
cluster's own (replication, schema agreement of three nodes, a node that leaves and comes back) is in the rest.

Run by scripts/test-cluster, which starts the cluster (scripts/cassandra-cluster) and sets
CELERY_ASTRA_TEST_CLUSTER_HOSTS; not collected otherwise (conftest.py)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sortwords"
CLUSTER = ROOT / "scripts" / "cassandra-cluster"
# Every test of the example but its fault suite: 11 pass, and the live-Astra one skips without --astra.
NOT_FAULTS = ("-k", "not faults")
EXPECTED = {"passed": 11, "skipped": 1}


def cluster(*args: str) -> str:
    return subprocess.run([str(CLUSTER), *args], check=True, capture_output=True, text=True, timeout=300).stdout


@pytest.fixture
def keyspace_prefix(request) -> str:
    """A keyspace prefix of this test's own, so that what it leaves behind is found by name."""
    return "clu_" + re.sub(r"[^a-z0-9]", "", request.node.name.lower())[:24]


@pytest.fixture(autouse=True)
def cluster_is_whole_after(keyspace_prefix):
    yield
    assert cluster("keyspaces", keyspace_prefix).split() == [], "the run left keyspaces in the cluster"
    assert cluster("schema-versions").strip() == "1"


def example(*args: str, keyspace: str, extra_env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "CELERY_ASTRA_CASSANDRA_HOSTS": os.environ["CELERY_ASTRA_TEST_CLUSTER_HOSTS"],
           "PYTHONPATH": str(ROOT), **(extra_env or {})}
    env.pop("PYTEST_XDIST_WORKER", None)
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", "--celery-astra-keyspace", keyspace,
         *NOT_FAULTS, *args],
        cwd=EXAMPLE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finished(process: subprocess.Popen, timeout: float = 600) -> tuple[int, str]:
    output, _ = process.communicate(timeout=timeout)
    return process.returncode, output


def counts(output: str) -> dict:
    """The counts of pytest's final summary line (a driver thread's traceback at exit may follow it)."""
    summaries = [line for line in output.splitlines() if re.match(r"^=+ .* in [\d.]+s.* =+$", line)]
    summary = summaries[-1] if summaries else ""
    return {word: int(number) for number, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", summary)}


def test_two_runs_at_once_are_isolated(keyspace_prefix):
    first = example("-n", "2", keyspace=keyspace_prefix)
    second = example("-n", "2", keyspace=keyspace_prefix)
    for process in (first, second):
        code, output = finished(process)
        assert code == 0, output
        assert counts(output) == EXPECTED, output


def node_down_run(tmp_path, keyspace: str, *args: str, stop_at: int, start_at: int):
    log = tmp_path / "fault.log"
    process = example("-p", "tests.cluster.node_fault", *args, keyspace=keyspace, extra_env={
        "CELERY_ASTRA_FAULT_NODE": "3", "CELERY_ASTRA_FAULT_STOP_AT": str(stop_at),
        "CELERY_ASTRA_FAULT_START_AT": str(start_at), "CELERY_ASTRA_FAULT_LOG": str(log)})
    code, output = finished(process)
    faults = log.read_text().splitlines() if log.exists() else []
    assert [line.split()[0] for line in faults] == ["stopped", "started"], (faults, output)
    return code, output


@pytest.mark.parametrize("xdist, stop_at, start_at", [([], 3, 10), (["-n", "2"], 2, 6)], ids=["n0", "n2"])
def test_a_node_restarted_mid_run_breaks_nothing_at_replication_3(tmp_path, keyspace_prefix, xdist, stop_at,
                                                                  start_at):
    """Also the plain contact-points runs at -n 0 and -n 2: every test passes, with the node down or not."""
    code, output = node_down_run(tmp_path, keyspace_prefix, *xdist, stop_at=stop_at, start_at=start_at)
    assert code == 0, output
    assert "replication min(3, nodes) in each data center" in output
    assert counts(output) == EXPECTED, output


def test_at_replication_1_a_node_down_is_one_sentence_naming_the_setting(tmp_path, keyspace_prefix):
    code, output = node_down_run(tmp_path, keyspace_prefix, "--celery-astra-replication", "1",
                                 stop_at=3, start_at=10)
    assert code == 1, output
    assert "replication SimpleStrategy" not in output  # the header shows the setting as given
    assert "replication 1 (option --celery-astra-replication)" in output
    sentences = [line for line in output.splitlines()
                 if "cannot survive a node down; set --celery-astra-replication to 3" in line]
    assert sentences, output
    assert all("replication factor 1" in line for line in sentences)
    # The plugin's cleanup says it in one sentence, without a traceback of its own code.
    assert "pytest_celery_astra/cassandra/janitor.py" not in output


def test_kept_keyspaces_make_a_repeat_run_send_no_schema_change(keyspace_prefix):
    """keep_keyspaces on the cluster: the example suite (-n 2) twice; the second run leases the keyspaces the
    first left, tables included, and changes no schema but the CREATE TABLE of a create_table() table new to
    its keyspace (under xdist a table is made by the processes whose tests ask for its fixture, so the slot a
    process leases may not have it yet; once made, it stays). Every node agrees on one schema version. The
    kept keyspaces are then dropped as the docs say, so the cluster is whole after."""
    from cassandra.cluster import Cluster

    hosts = os.environ["CELERY_ASTRA_TEST_CLUSTER_HOSTS"].split(",")
    node = Cluster(hosts)
    session = node.connect()

    def schema_versions() -> set:
        versions = {session.execute("SELECT schema_version FROM system.local").one()[0]}
        versions |= {row.schema_version for row in session.execute("SELECT schema_version FROM system.peers")}
        return versions

    def tables() -> dict:
        """Every table of the kept keyspaces and the lease registry, by its id (a new id: made again)."""
        return {(row.keyspace_name, row.table_name): row.id
                for row in session.execute("SELECT keyspace_name, table_name, id FROM system_schema.tables")
                if row.keyspace_name.startswith(keyspace_prefix)}

    try:
        for _run in ("first", "repeat"):
            before, tables_before = schema_versions(), tables()
            code, output = finished(example("-n", "2", "--celery-astra-keep-keyspaces", "true", keyspace=keyspace_prefix))
            assert code == 0, output
            assert counts(output) == EXPECTED, output
            assert "kept between runs, leased per process cluster-wide" in output, output
            assert len(schema_versions()) == 1
        after = tables()
        assert {key: after.get(key) for key in tables_before} == tables_before, output  # nothing dropped or remade
        new = set(after) - set(tables_before)
        assert {table for _, table in new} <= {"sorted_words"}, output
        assert len({keyspace for keyspace, _ in tables_before}) == 3, tables_before  # the registry + 2 slots
        if not new:
            assert schema_versions() == before, output
    finally:
        node.refresh_schema_metadata()
        for name in list(node.metadata.keyspaces):
            if name.startswith(keyspace_prefix):
                session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)
        node.shutdown()
