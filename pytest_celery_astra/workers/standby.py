"""Only the workers a test asked for consume — during the test and until the next test asks otherwise.

A running worker is a session fixture: whether one is alive when a test starts depends on which tests ran
before in that process (xdist's order). So that a test behaves the same either way, at each test's set-up,
before its fixtures run, every running worker it did not ask for stands by — it stops consuming its queues
(Celery's remote control ``cancel_consumer``) — and every one it asked for consumes again (``add_consumer``).
Celery answers those commands before its consumer acts on them (``Consumer.call_soon``), so the switch counts
as made once the worker's own list of the queues it consumes (``active_queues``) says so: a task sent right
after cannot reach a worker that has not stopped yet. A test that asks for no worker has its tasks wait in the
queue, and the queues are purged after it: nothing it sent runs, in it or after it. Only changes are sent: a
suite whose tests all ask for the same worker never switches. Workers are idle when a test starts (the
previous test's teardown settled them), so nothing is in flight while the switch is made.
"""

from __future__ import annotations

import time
import warnings

import pytest

# Seconds a worker has to confirm that it stopped or resumed consuming a queue; seconds one ask waits.
REPLY_TIMEOUT = 5.0
CONFIRM_POLL = 0.5
_CONSEQUENCE = {True: "this test's tasks wait for it; the next test that asks for it tries again",
                False: "it may run some of this test's tasks"}


def consume_as_requested(fixturenames: set[str], running: list) -> None:
    """Before a test's fixtures: the running workers in ``fixturenames`` consume, the others stand by."""
    for worker in running:
        name = worker.fixturename
        if name is None:
            continue
        wanted = name in fixturenames
        if wanted != worker.standing_by:
            continue  # already as wanted
        if _set_consuming(worker, wanted):
            worker.standing_by = not wanted


def _set_consuming(worker, on: bool) -> bool:
    control = worker.app.control
    action = control.add_consumer if on else control.cancel_consumer
    queues = list(worker.consumed_queues)
    pending, problem = queues, "no reply"
    deadline = time.monotonic() + REPLY_TIMEOUT
    try:
        for queue in queues:
            action(queue, destination=[worker.hostname], reply=False)
        inspect = control.inspect(destination=[worker.hostname], timeout=CONFIRM_POLL)
        while True:
            consumed = (inspect.active_queues() or {}).get(worker.hostname)
            if consumed is not None:
                names = {queue.get("name") for queue in consumed}
                pending = [queue for queue in queues if (queue in names) != on]
                if not pending:
                    return True
                problem = f"its queues still {'lack' if on else 'include'} it after {REPLY_TIMEOUT:g} s"
            if time.monotonic() > deadline:
                break
    except Exception as error:  # noqa: BLE001 - the broker is down (a fault test): said, not raised
        problem = str(error).splitlines()[0][:200]
    warnings.warn(pytest.PytestWarning(
        f"pytest-celery-astra: worker {worker.hostname} did not confirm that it "
        f"{'resumed' if on else 'stopped'} consuming queue {pending[0]!r} ({problem}); {_CONSEQUENCE[on]}."))
    return False
