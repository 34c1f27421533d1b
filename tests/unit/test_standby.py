"""Which workers consume during a test: only those it asked for; only changes are sent. No services: the remote
control is a fake that records what the plugin sent and answers as a worker does."""

import types

import pytest

from pytest_celery_astra.workers.standby import consume_as_requested


class FakeControl:
    def __init__(self, sent, answering=True):
        self.sent, self.answering = sent, answering

    def _reply(self, action, queue, destination, **_):
        self.sent.append((action, destination[0], queue))
        return [{destination[0]: {"ok": queue}}] if self.answering else []

    def add_consumer(self, queue, destination, **kwargs):
        return self._reply("add", queue, destination, **kwargs)

    def cancel_consumer(self, queue, destination, **kwargs):
        return self._reply("cancel", queue, destination, **kwargs)


@pytest.fixture
def sent():
    return []


def worker(sent, fixturename, hostname, answering=True):
    app = types.SimpleNamespace(control=FakeControl(sent, answering))
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


def test_a_worker_that_does_not_confirm_is_said_and_tried_again_next_time(sent):
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
