"""The compatibility layer's per-test cost (`-p pytest_celery_astra.celery_contrib`): a test that asks for the
function-scoped `celery_app` (marker applied, its configuration and tasks restored after it) against one that
asks for `celery_session_app` (target: <= 10 ms more per test).

    python bench/celery_contrib.py [--runs 3] [--tests 100]     # or: scripts/bench celery_contrib.py

Each round is one pytest run of a generated file: --tests tests on each fixture, each changing a setting and
registering a task; the figure is pytest's own setup + call + teardown time per test, median over the tests.
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scenarios import Workspace, run_pytest  # noqa: E402

OVERHEAD_TARGET_MS = 10.0

TESTS = '''\
import pytest


@pytest.fixture(scope="session", autouse=True)
def warm(celery_session_app):
    return celery_session_app


@pytest.mark.parametrize("n", range({count}))
@pytest.mark.celery(task_default_rate_limit="10/s")
def test_function_app(celery_app, n):
    celery_app.conf.task_ignore_result = True

    @celery_app.task(name=f"bench.function.{{n}}")
    def task():
        return n


@pytest.mark.parametrize("n", range({count}))
def test_session_app(celery_session_app, n):
    celery_session_app.conf.task_ignore_result = True

    @celery_session_app.task(name=f"bench.session.{{n}}")
    def task():
        return n
'''


def per_test_ms(reports: list, name: str) -> float:
    totals: dict = {}
    for report in reports:
        if f"::{name}[" in report["nodeid"]:
            totals[report["nodeid"]] = totals.get(report["nodeid"], 0.0) + report["duration"]
    return 1000 * statistics.median(totals.values())


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tests", type=int, default=100)
    options = parser.parse_args()
    ws = Workspace(tests=1)
    (ws.path / "test_contrib_bench.py").write_text(TESTS.format(count=options.tests))
    rounds = []
    try:
        for _ in range(options.runs):
            result = run_pytest(ws, ["test_contrib_bench.py"], args=("-p", "pytest_celery_astra.celery_contrib"))
            if not result["ok"]:
                return 1
            function_ms = per_test_ms(result["reports"], "test_function_app")
            session_ms = per_test_ms(result["reports"], "test_session_app")
            rounds.append((function_ms, session_ms, function_ms - session_ms))
    finally:
        ws.remove()
    print(f"{'figure':52} {'median':>8}   rounds")
    for index, key in enumerate(("celery_app test (ms)", "celery_session_app test (ms)", "overhead (ms)")):
        values = [r[index] for r in rounds]
        print(f"{key:52} {statistics.median(values):>8.2f}   {', '.join(f'{v:.2f}' for v in values)}")
    overhead = statistics.median(r[2] for r in rounds)
    verdict = "PASS" if overhead <= OVERHEAD_TARGET_MS else "MISS"
    print(f"target: per-test overhead of the function-scoped app <= {OVERHEAD_TARGET_MS:g} ms: {overhead:.2f} ms {verdict}")
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
