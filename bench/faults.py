"""How long each fault of `celery_astra_services` takes, and the restoration after the test: a
generated test does each action 5 times on the run's own containers (RabbitMQ, Redis, Cassandra), reading
the handles' `.seconds`; the restoration is the teardown of a test that left both services down.

    python bench/faults.py             # or: scripts/bench faults.py

Prints the median and every value, in seconds. No targets: these are the containers' own start times.
"""

import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import Workspace, run_pytest  # noqa: E402 - after the path set-up above

FAULTS_TEST = '''\
import json, os

import pytest

ROUNDS = 5


@pytest.fixture(scope="module")
def record():
    seconds = {}
    yield seconds
    with open(os.environ["BENCH_FAULTS"], "w") as handle:
        json.dump(seconds, handle)


@pytest.mark.parametrize("kind", ["broker", "cassandra"])
def test_faults(kind, record, celery_astra_worker, celery_astra_services, celery_astra_broker_kind):
    handle = getattr(celery_astra_services, kind)
    name = celery_astra_broker_kind if kind == "broker" else kind
    for _ in range(ROUNDS):
        for action in ("stop", "start", "pause", "unpause", "restart"):
            if action != "start" or handle.status != "running":
                getattr(handle, action)()
            record.setdefault(f"{name} {action}", []).append(handle.seconds[action])


def test_zz_left_down(celery_astra_worker, celery_astra_services):
    celery_astra_services.broker.stop()
    celery_astra_services.cassandra.pause()   # the teardown restores both and checks the worker
'''


def main() -> int:
    ws = Workspace(tests=1)
    try:
        (ws.path / "test_faults_bench.py").write_text(FAULTS_TEST)
        out = ws.new_file("faults")
        import os

        os.environ["BENCH_FAULTS"] = str(out)
        # Both brokers: each test runs once with RabbitMQ, once with Redis (Cassandra is measured twice).
        result = run_pytest(ws, ["test_faults_bench.py"], args=("--celery-astra-broker-kind", "rabbitmq,redis"))
        if not result["ok"]:
            return 1
        seconds = json.loads(out.read_text())
        for broker in ("rabbitmq", "redis"):
            seconds[f"restore {broker} + cassandra after the test"] = [
                r["duration"] for r in result["reports"]
                if r["when"] == "teardown" and r["nodeid"].endswith(f"test_zz_left_down[{broker}]")]
        for name, values in seconds.items():
            print(f"{name:<42} {statistics.median(values):6.2f} s   ({', '.join(f'{v:.2f}' for v in values)})")
    finally:
        ws.remove()
    return 0


if __name__ == "__main__":
    sys.exit(main())
