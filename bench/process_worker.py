"""The real worker process (`celery_astra_worker_process`): its start and stop, a round trip through it, and
the teardown after tests that left tasks queued or held for a countdown (target: p95 <= 1 s).

    python bench/process_worker.py [--runs 3] [--tests 20]     # or: scripts/bench process_worker.py

Each round is one pytest run of a generated file: a round-trip test, then --tests tests that each send 10
tasks without waiting, half of them with a 30 s countdown (held in the worker's schedule), then one more
round trip. Teardown times are pytest's own (the `teardown` phase of each test), so start-up is excluded.
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import Workspace, run_pytest  # noqa: E402

TEARDOWN_P95_TARGET_S = 1.0

TESTS = '''\
import json, os, statistics, time

import pytest
from tasks import sortWords


@pytest.fixture(scope="module")
def record(celery_astra_worker_process):
    figures = {{}}
    yield figures
    with open(os.environ["BENCH_PROCESS"], "w") as handle:
        json.dump({{**figures, "start_s": celery_astra_worker_process.seconds_to_start}}, handle)


def test_0_round_trip(record, celery_astra_worker_process):
    sortWords.delay("warm up", False).get(timeout=30)
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        assert sortWords.delay("b a", False).get(timeout=30) == "a b"
        samples.append(time.perf_counter() - started)
    record["round_trip_ms"] = 1000 * statistics.median(samples)


@pytest.mark.parametrize("n", range({count}))
def test_leaves_tasks_behind(celery_astra_worker_process, n):
    for i in range(5):
        sortWords.delay(f"queued {{i}}", False)
        sortWords.apply_async((f"held {{i}}", False), countdown=30)


def test_z_after(celery_astra_worker_process):
    assert sortWords.delay("d c", False).get(timeout=30) == "c d"
'''


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tests", type=int, default=20)
    options = parser.parse_args()
    ws = Workspace(tests=1)
    (ws.path / "test_process_bench.py").write_text(TESTS.format(count=options.tests))
    rounds = []
    try:
        for _ in range(options.runs):
            out = ws.new_file("process")
            result = run_pytest(ws, ["test_process_bench.py"], env_extra={"BENCH_PROCESS": str(out)})
            if not result["ok"]:
                return 1
            figures = json.loads(out.read_text())
            teardowns = sorted(r["duration"] for r in result["reports"]
                               if r["when"] == "teardown" and "test_leaves_tasks_behind" in r["nodeid"])
            last = [r for r in result["reports"] if r["when"] == "teardown" and "test_z_after" in r["nodeid"]]
            figures["teardown_p95_s"] = teardowns[max(0, int(round(0.95 * len(teardowns))) - 1)]
            figures["teardown_median_s"] = statistics.median(teardowns)
            figures["stop_s"] = last[0]["duration"] if last else None  # the last teardown stops the worker
            rounds.append(figures)
    finally:
        ws.remove()
    print(f"{'figure':52} {'median':>8}   rounds")
    for key in ("start_s", "round_trip_ms", "teardown_median_s", "teardown_p95_s", "stop_s"):
        values = [r[key] for r in rounds if r.get(key) is not None]
        print(f"{key:52} {statistics.median(values):>8.3f}   {', '.join(f'{v:.3f}' for v in values)}")
    p95 = statistics.median(r["teardown_p95_s"] for r in rounds)
    verdict = "PASS" if p95 <= TEARDOWN_P95_TARGET_S else "MISS"
    print(f"target: teardown p95 after tests that left tasks queued or held <= {TEARDOWN_P95_TARGET_S} s: "
          f"{p95:.3f} s {verdict}")
    print("(stop_s is the last test's teardown: the worker's warm shutdown, then the run's session teardown)")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
