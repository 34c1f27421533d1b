"""A 3-node Cassandra cluster next to a private container, in one bench run: time to the first passing test,
per-test time, and the schema changes (DDL statements and their seconds) each run sends.

    python bench/cluster.py [--runs 3] [--tests 20]     # or: scripts/bench cluster.py

Starts the local cluster itself (scripts/cassandra-cluster up; podman) unless CELERY_ASTRA_TEST_CLUSTER_HOSTS
names one, and removes it at the end. Each round runs, one after the other: the private container
(`pytest test_one.py`, then `pytest test_suite.py`), then the same two against the cluster (contact-points
mode, replication auto = 3), then against the cluster with kept keyspaces (keep_keyspaces, after one
warm-up run that makes the lease table and the keyspace; keyspace prefix bench_kept, dropped at the end).
Every figure is the median over the rounds.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import REPO, Workspace, median, per_test_figures, run_pytest  # noqa: E402

CLUSTER = REPO / "scripts" / "cassandra-cluster"
# Schema statements a -n 0 run may send: CREATE KEYSPACE, the owner and result tables, DROP KEYSPACE, plus
# one per app table. Before this target the run also sent Celery's own CREATE TABLE (refused as existing).
DDL_TARGET = 4
# With kept keyspaces, a repeat run sends none.
KEPT_DDL_TARGET = 0
KEPT_PREFIX = "bench_kept"

DDL_CONFTEST = '''

# bench/cluster.py: every schema change the plugin sends, with its seconds (one file per process).
import time as _time

from pytest_celery_astra.cassandra.database import TestDatabase as _TestDatabase

_ddl = []
_schema_change = _TestDatabase.schema_change


def _counted(self, statement):
    started = _time.monotonic()
    try:
        return _schema_change(self, statement)
    finally:
        _ddl.append([" ".join(statement.split()[:2]), _time.monotonic() - started])


_TestDatabase.schema_change = _counted


def pytest_unconfigure(config):
    if os.environ.get("BENCH_DDL"):
        with open(f"{os.environ['BENCH_DDL']}.{os.getpid()}", "w") as handle:
            json.dump(_ddl, handle)
'''


def ddl_of(prefix: Path) -> list:
    found = []
    for path in prefix.parent.glob(prefix.name + ".*"):
        found.extend(json.loads(path.read_text()))
    return found


def one_mode(ws: Workspace, label: str, env: dict) -> dict:
    figures: dict = {}
    for name, files in (("first", ["test_one.py"]), ("suite", ["test_suite.py"])):
        ddl = ws.new_file(f"ddl-{label}-{name}")
        result = run_pytest(ws, files, env_extra={**env, "BENCH_DDL": str(ddl)})
        if not result["ok"]:
            raise SystemExit(f"bench: the {label} run of {files[0]} failed")
        statements = ddl_of(ddl)
        if name == "first":
            figures["first_pass_s"] = result["first_pass_s"]
            figures["ddl_statements"] = len(statements)
            figures["ddl_s"] = sum(seconds for _, seconds in statements)
            figures["ddl_kinds"] = sorted({kind for kind, _ in statements})
        else:
            figures["per_test_ms"] = per_test_figures(result["reports"]).get("per_test_ms")
    return figures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tests", type=int, default=20)
    options = parser.parse_args()
    hosts = os.environ.get("CELERY_ASTRA_TEST_CLUSTER_HOSTS")
    started_cluster = hosts is None
    if started_cluster:
        line = subprocess.run([str(CLUSTER), "up"], check=True, capture_output=True, text=True).stdout
        hosts = line.strip().splitlines()[-1].split("=", 1)[1]
    ws = Workspace(tests=options.tests)
    with open(ws.path / "conftest.py", "a") as conftest:
        conftest.write(DDL_CONFTEST)
    rounds: dict = {"container": [], "cluster": [], "kept": []}
    kept_env = {"CELERY_ASTRA_CASSANDRA_HOSTS": hosts, "CELERY_ASTRA_KEEP_KEYSPACES": "true",
                "CELERY_ASTRA_KEYSPACE": KEPT_PREFIX}
    try:
        one_mode(ws, "kept-warm-up", kept_env)
        for _ in range(options.runs):
            rounds["container"].append(one_mode(ws, "container", {}))
            rounds["cluster"].append(one_mode(ws, "cluster", {"CELERY_ASTRA_CASSANDRA_HOSTS": hosts}))
            rounds["kept"].append(one_mode(ws, "kept", kept_env))
    finally:
        ws.remove()
        if started_cluster:
            subprocess.run([str(CLUSTER), "down"], check=False, capture_output=True)
        else:
            drop_kept_keyspaces(hosts)
    print(f"{'figure':44} {'container':>12} {'3-node cluster':>16} {'kept keyspaces':>16}   rounds (container | "
          f"cluster | kept)")
    status = 0
    for key, unit in (("first_pass_s", "s"), ("per_test_ms", "ms"), ("ddl_statements", ""), ("ddl_s", "s")):
        values = {mode: [r[key] for r in rounds[mode] if r.get(key) is not None] for mode in rounds}
        shown = {mode: median(values[mode]) if values[mode] else float("nan") for mode in rounds}
        every = " | ".join(", ".join(f"{v:.2f}" for v in values[mode]) for mode in rounds)
        print(f"{key + (' (' + unit + ')' if unit else ''):44} {shown['container']:>12.2f} "
              f"{shown['cluster']:>16.2f} {shown['kept']:>16.2f}   {every}")
    kinds = sorted({kind for mode in rounds for r in rounds[mode] for kind in r["ddl_kinds"]})
    print(f"schema statements seen: {', '.join(kinds)}")
    for mode in rounds:
        most = max(r["ddl_statements"] for r in rounds[mode])
        target = KEPT_DDL_TARGET if mode == "kept" else DDL_TARGET
        verdict = "PASS" if most <= target else "MISS"
        status |= verdict == "MISS"
        print(f"target: a one-test -n 0 run sends at most {target} schema statements ({mode}): {most} {verdict}")
    if rounds["cluster"]:
        slower = statistics.median(r["per_test_ms"] for r in rounds["cluster"]) - statistics.median(
            r["per_test_ms"] for r in rounds["container"])
        print(f"a test on the cluster costs {slower:+.1f} ms next to the private container")
    return status


def drop_kept_keyspaces(hosts: str) -> None:
    """The bench's kept keyspaces on a cluster it did not start (its own prefix only)."""
    from cassandra.cluster import Cluster

    cluster = Cluster(hosts.split(","))
    try:
        session = cluster.connect()
        for name in list(cluster.metadata.keyspaces):
            if name.startswith(KEPT_PREFIX + "_"):
                session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    sys.exit(main())
