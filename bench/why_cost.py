"""What the journal behind "every failure explains itself" costs a passing test.

    python bench/why_cost.py                 # 41 pairs of rounds of 500 tests
    python bench/why_cost.py --tests 2000 --rounds 15

A passing test pays for the run's journal (workers/journal.py): its begin at set-up, one append per publish and
per signal of a worker thread; nothing is read unless a test fails. Each simulated test here is what a passing
test that sends one task does, through Celery's own code: the journal begins, the task is published (a real
``apply_async`` to the in-memory broker: Celery's ``before_task_publish``), then Celery's ``task_received``,
``task_prerun`` and ``task_postrun`` signals are sent as a worker thread sends them. The same tests run with the
journal connected and disconnected, interleaved round by round; the cost is the difference of the medians.
No services. Target: at most 0.1 ms per passing test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from celery import Celery, signals

from pytest_celery_astra.workers.journal import TaskJournal

TARGET_MS = 0.1


class _Consumer:
    hostname = "celery_astra_worker@bench"


class _Request:
    def __init__(self, task_id: str):
        self.id, self.hostname = task_id, _Consumer.hostname


def one_round(app: Celery, journal: TaskJournal, tests: int) -> float:
    """Seconds for ``tests`` simulated passing tests."""
    task = app.tasks["bench.add"]
    consumer = _Consumer()
    started = time.perf_counter()
    for n in range(tests):
        journal.begin()
        result = task.apply_async((n, n))
        signals.task_received.send(sender=consumer, request=_Request(result.id))
        signals.task_prerun.send(sender=task, task_id=result.id, task=task, args=(n, n), kwargs={})
        signals.task_postrun.send(sender=task, task_id=result.id, task=task, args=(n, n), kwargs={}, retval=2 * n,
                                  state="SUCCESS")
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=41)
    options = parser.parse_args()
    app = Celery("bench", broker="memory://", set_as_current=False)

    @app.task(name="bench.add", shared=False)
    def add(x, y):
        return x + y

    app.finalize()
    journal = TaskJournal()
    one_round(app, journal, 200)  # warm: connections, the router, caches
    with_journal, without, differences = [], [], []
    for _ in range(options.rounds):  # interleaved in pairs: both halves of a pair see the same machine load
        journal.connect()
        on = one_round(app, journal, options.tests)
        journal.disconnect()
        off = one_round(app, journal, options.tests)
        with_journal.append(on)
        without.append(off)
        differences.append(on - off)
    on, off = statistics.median(with_journal), statistics.median(without)
    per_test_ms = statistics.median(differences) / options.tests * 1000
    journal.connect()
    journal.begin()
    one_round(app, journal, 1)
    read_started = time.perf_counter()
    journal.records()  # what a failing test pays to read its one task back
    read_ms = (time.perf_counter() - read_started) * 1000
    journal.disconnect()
    verdict = "PASS" if per_test_ms <= TARGET_MS else "MISS"
    print(f"a passing test that sends one task (publish + 3 worker signals), median of {options.rounds} rounds of "
          f"{options.tests}: {on / options.tests * 1000:.3f} ms with the journal, {off / options.tests * 1000:.3f} ms "
          f"without")
    print(f"journal cost per passing test (median of the pairs' differences): {per_test_ms * 1000:+.1f} us "
          f"(target <= {TARGET_MS * 1000:.0f} us): {verdict}")
    print(f"(info) reading one task back when a test fails: {read_ms * 1000:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
