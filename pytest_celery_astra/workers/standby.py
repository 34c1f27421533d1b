"""One worker per queue, on purpose: during a test, only the workers it asked for consume their app's queues.

The thread worker (``celery_astra_worker``) and the worker process (``celery_astra_worker_process``) of one
app are session fixtures on the same queues. Once both have started, a test that asks for one of them
would otherwise have its tasks shared by both. For the call of such a test, every other running worker of
the same app stands by: it stops consuming those queues (Celery's remote control ``cancel_consumer``, which
the worker answers once done) and consumes them again after the test (``add_consumer``). A test that asks
for both, or for neither, leaves every worker consuming. Workers are idle when a test starts (the previous
test's teardown settled them), so nothing is in flight while the switch is made.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from typing import Iterator

import pytest

# Seconds a worker has to confirm that it stopped or resumed consuming a queue.
REPLY_TIMEOUT = 5.0
_CONSEQUENCE = {True: "later tests that use it will wait for their tasks",
                False: "it may run some of this test's tasks"}


def standing_by(requested: set[str], running: list) -> list:
    """The running workers that must not consume during a test that asked for the fixtures ``requested``:
    those of an app for which the test asked for another worker, and not for them."""
    asked = [worker for worker in running if getattr(worker, "fixturename", None) in requested]
    asked_apps = {id(worker.app) for worker in asked}
    return [worker for worker in running
            if worker not in asked and id(worker.app) in asked_apps and getattr(worker, "fixturename", None)]


@contextmanager
def only_requested_workers_consume(item: pytest.Item, running: list) -> Iterator[None]:
    """For the call of ``item``: the workers it did not ask for, beside one of the same app it did, stand by."""
    idle = standing_by(set(getattr(item, "fixturenames", ())), running)
    paused = [worker for worker in idle if _set_consuming(worker, False)]
    try:
        yield
    finally:
        for worker in paused:
            _set_consuming(worker, True)


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
