"""Which workers consume during a test: only those it asked for; only changes are sent. No services: the remote
control is a fake that records what the plugin sent and answers as a worker does."""

import types

import pytest

from pytest_celery_astra.workers.standby import consume_as_requested


class FakeControl:
    """Answers as Celery does: add/cancel_consumer take effect only ``lag`` asks later (Consumer.call_soon),
    and ``active_queues`` lists what the worker consumes now."""

    def __init__(self, sent, hostname, answering=True, lag=0):
        self.sent, self.hostname, self.answering, self.lag = sent, hostname, answering, lag
        self.consumed, self.scheduled, self.asks = {"celery"}, [], 0

    def _schedule(self, action, queue, destination, **_):
        self.sent.append((action, destination[0], queue))
        self.scheduled.append((self.asks + self.lag, action, queue))

    def add_consumer(self, queue, destination, **kwargs):
        self._schedule("add", queue, destination, **kwargs)

    def cancel_consumer(self, queue, destination, **kwargs):
        self._schedule("cancel", queue, destination, **kwargs)

    def inspect(self, destination, timeout):
        return self

    def active_queues(self):
        self.asks += 1
        for due, action, queue in [entry for entry in self.scheduled if entry[0] < self.asks]:
            self.scheduled.remove((due, action, queue))
            (self.consumed.add if action == "add" else self.consumed.discard)(queue)
        if not self.answering:
            return None
        return {self.hostname: [{"name": queue} for queue in sorted(self.consumed)]}


@pytest.fixture
def sent():
    return []


def worker(sent, fixturename, hostname, answering=True, lag=0):
    app = types.SimpleNamespace(control=FakeControl(sent, hostname, answering, lag))
    return types.SimpleNamespace(app=app, fixturename=fixturename, hostname=hostname, consumed_queues=["celery"],
                                 standing_by=False)


def test_a_test_that_asks_for_one_worker_has_every_other_stand_by(sent):
    thread, process = worker(sent, "celery_astra_worker", "t@h"), worker(sent, "celery_astra_worker_process", "p@h")
    consume_as_requested({"celery_astra_worker_process", "celery_astra_app"}, [thread, process])
    assert sent == [("cancel", "t@h", "celery")]
    assert (thread.standing_by, process.standing_by) == (True, False)


def test_a_test_that_asks_for_no_worker_has_every_worker_stand_by(sent):
    thread, other = worker(sent, "celery_astra_worker", "t@h"), worker(sent, "billing_worker", "b@h")
    consume_as_requested({"celery_astra_app"}, [thread, other])
    assert sorted(sent) == [("cancel", "b@h", "celery"), ("cancel", "t@h", "celery")]


def test_only_changes_are_sent_and_a_requested_worker_resumes(sent):
    thread = worker(sent, "celery_astra_worker", "t@h")
    for _ in range(3):
        consume_as_requested({"celery_astra_worker"}, [thread])
    assert sent == []   # a suite whose tests all ask for the worker never switches
    consume_as_requested(set(), [thread])
    consume_as_requested(set(), [thread])
    consume_as_requested({"celery_astra_worker"}, [thread])
    assert sent == [("cancel", "t@h", "celery"), ("add", "t@h", "celery")]
    assert thread.standing_by is False


def test_a_switch_counts_only_once_the_worker_lists_its_queues_so(sent):
    # Celery replies to cancel_consumer before its consumer cancels: a task sent on that reply could still
    # reach the worker. The worker's own list of consumed queues is what confirms the switch.
    thread = worker(sent, "celery_astra_worker", "t@h", lag=3)
    consume_as_requested(set(), [thread])
    assert thread.app.control.consumed == set() and thread.app.control.asks == 4
    assert thread.standing_by is True


def test_a_worker_that_does_not_confirm_is_said_and_tried_again_next_time(sent, monkeypatch):
    monkeypatch.setattr("pytest_celery_astra.workers.standby.REPLY_TIMEOUT", 0.0)
    thread = worker(sent, "celery_astra_worker", "t@h", answering=False)
    with pytest.warns(pytest.PytestWarning, match="did not confirm that it stopped consuming queue 'celery'"):
        consume_as_requested(set(), [thread])
    assert thread.standing_by is False
    with pytest.warns(pytest.PytestWarning):
        consume_as_requested(set(), [thread])
    assert len(sent) == 2


def test_a_worker_without_a_fixture_is_left_alone(sent):
    consume_as_requested(set(), [worker(sent, None, "x@h")])
    assert sent == []
