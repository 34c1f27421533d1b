"""A pytest plugin (``-p tests.cluster.node_fault``) that stops one node of the test cluster at the set-up of
the Nth test this process runs and starts it again at the Mth: a node restarted mid-run, at the same point
of every run. Under xdist only worker gw0 does it (the node is shared). Settings from the environment:
CELERY_ASTRA_FAULT_NODE (node number), CELERY_ASTRA_FAULT_STOP_AT, CELERY_ASTRA_FAULT_START_AT (1-based);
each action is appended to the file CELERY_ASTRA_FAULT_LOG, so the caller knows the fault happened."""

import os
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "cassandra-cluster"
_seen = {"tests": 0, "stopped": False}


def _cluster(*args: str) -> None:
    subprocess.run([str(SCRIPT), *args], check=True, stdout=subprocess.DEVNULL, timeout=300)


def _log(line: str) -> None:
    with open(os.environ["CELERY_ASTRA_FAULT_LOG"], "a") as log:
        log.write(line + "\n")


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER", "gw0") != "gw0":
        return
    _seen["tests"] += 1
    node = os.environ["CELERY_ASTRA_FAULT_NODE"]
    if _seen["tests"] == int(os.environ["CELERY_ASTRA_FAULT_STOP_AT"]):
        _cluster("stop", node)
        _seen["stopped"] = True
        _log(f"stopped node {node} before test {_seen['tests']} {item.nodeid}")
    elif _seen["tests"] == int(os.environ["CELERY_ASTRA_FAULT_START_AT"]) and _seen["stopped"]:
        _cluster("start", node)
        _seen["stopped"] = False
        _log(f"started node {node} before test {_seen['tests']} {item.nodeid}")


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _seen["stopped"]:  # fewer tests than START_AT: the node must not stay down for the next run
        _cluster("start", os.environ["CELERY_ASTRA_FAULT_NODE"])
        _log("started node at the session's end")
