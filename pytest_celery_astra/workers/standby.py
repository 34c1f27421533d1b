"""Only the workers a test asked for consume — during the test and until the next test asks otherwise.

A running worker is a session fixture: whether one is alive when a test starts depends on which tests ran
before in that process (xdist's order). So that a test behaves the same either way, at each test's set-up,
before its fixtures run, every running worker it did not ask for stands by — it stops consuming its queues
(Celery's remote control ``cancel_consumer``, which the worker answers once done) — and every one it asked
for consumes again (``add_consumer``). A test that asks for no worker has its tasks wait in the queue, and
the queues are purged after it: nothing it sent runs, in it or after it. Only changes are sent: a suite whose
tests all ask for the same worker never switches. Workers are idle when a test starts (the previous test's
teardown settled them), so nothing is in flight while the switch is made.
"""

from __future__ import annotations

import warnings

import pytest

# Seconds a worker has to confirm that it stopped or resumed consuming a queue.
REPLY_TIMEOUT = 5.0
_CONSEQUENCE = {True: "this test's tasks wait for it; the next test that asks for it tries again",
                False: "it may run some of this test's tasks"}


def consume_as_requested(fixturenames: set[str], running: list) -> None:
    """Before a test's fixtures: the running workers in ``fixturenames`` consume, the others stand by."""
    for worker in running:
        name = getattr(worker, "fixturename", None)
        if name is None:
            continue
        wanted = name in fixturenames
        if wanted != getattr(worker, "standing_by", False):
            continue  # already as wanted
        if _set_consuming(worker, wanted):
            worker.standing_by = not wanted


def _set_consuming(worker, on: bool) -> bool:
    control = worker.app.control
    action = control.add_consumer if on else control.cancel_consumer
    for queue in worker.consumed_queues:
        try:
            replies = action(queue, destination=[worker.hostname], reply=True, timeout=REPLY_TIMEOUT)
        except Exception as error:  # noqa: BLE001 - the broker is down (a fault test): said, not raised
            replies, problem = [], str(error).splitlines()[0][:200]
        else:
            problem = "no reply"
        if not any(worker.hostname in reply for reply in replies or ()):
            warnings.warn(pytest.PytestWarning(
                f"pytest-celery-astra: worker {worker.hostname} did not confirm that it "
                f"{'resumed' if on else 'stopped'} consuming queue {queue!r} ({problem}); "
                f"{_CONSEQUENCE[on]}."))
            return False
    return True
