"""The embedded worker's bookkeeping (workers/thread.py) with fakes: tasks in flight as Celery's signals
report them, held (ETA) tasks dropped from the worker's timer and acknowledged, the thread pool's threads
seeing the worker's app, and the loop's stop and poke."""

from __future__ import annotations

import threading
import time

import pytest
from celery import Celery
from celery.exceptions import WorkerTerminate
from celery.result import allow_join_result

from pytest_celery_astra.workers import thread
from pytest_celery_astra.workers.in_flight import InFlight


@pytest.fixture
def in_flight():
    tracked = InFlight()
    yield tracked
    tracked.disconnect()


def test_a_published_task_is_in_flight_until_a_worker_finishes_it(in_flight):
    assert in_flight.empty()
    in_flight._published(headers={"id": "a"})
    in_flight._published(body={"id": "b"})          # task protocol 1 carries the id in its body
    assert not in_flight.empty()
    in_flight._finished(task_id="a")
    in_flight._finished(request=type("Request", (), {"id": "b"})())
    assert in_flight.empty()


def test_a_retry_publishes_the_same_id_again_before_its_first_run_ends(in_flight):
    in_flight._published(headers={"id": "retried"})
    in_flight._published(headers={"id": "retried"})  # the retry, sent from inside the first run
    in_flight.finished("retried")                     # the first run ends
    assert not in_flight.empty()
    in_flight.finished("retried")
    assert in_flight.empty()
    in_flight.finished("retried")                     # a late signal for an id no longer counted: harmless
    assert in_flight.empty()


def test_the_signals_are_connected_once_and_disconnected_at_the_end(in_flight):
    from celery import signals

    before = len(signals.before_task_publish.receivers), len(signals.task_postrun.receivers)
    in_flight.connect()
    in_flight.connect()
    assert (len(signals.before_task_publish.receivers), len(signals.task_postrun.receivers)) == (
        before[0] + 1, before[1] + 1)
    in_flight.disconnect()
    in_flight.disconnect()
    assert (len(signals.before_task_publish.receivers), len(signals.task_postrun.receivers)) == before


def test_a_run_records_only_while_connected():
    from celery import signals

    tracked = InFlight()
    tracked.connect()
    signals.before_task_publish.send(sender="t", headers={"id": "seen"}, body=None)
    tracked.disconnect()
    signals.before_task_publish.send(sender="t", headers={"id": "after"}, body=None)
    assert set(tracked.ids) == {"seen"}


class FakeEntry:
    def __init__(self, fun, request, canceled=False):
        self.fun, self.args, self.canceled = fun, (request,), canceled

    def cancel(self):
        self.canceled = True


class FakeRequest:
    def __init__(self, task_id):
        self.id = task_id
        self.acknowledged = False

    def acknowledge(self):
        self.acknowledged = True


class FakeConsumer:
    """What _drop_held_tasks uses of Celery's Consumer: the timer's queue, the ETA handlers, prefetch."""

    def __init__(self):
        from celery.worker.consumer import Consumer

        self.apply_eta_task = Consumer.apply_eta_task.__get__(self)
        self._limit_post_eta = Consumer._limit_post_eta.__get__(self)
        self.decremented = 0
        self.qos = type("QoS", (), {"decrement_eventually": lambda qos: self._decrement()})()
        self.timer = type("Timer", (), {"queue": []})()

    def _decrement(self):
        self.decremented += 1


def test_held_tasks_are_cancelled_acknowledged_and_no_longer_in_flight():
    tracked = InFlight()
    consumer = FakeConsumer()
    eta, limited, other, done = FakeRequest("eta"), FakeRequest("limited"), FakeRequest("other"), FakeRequest("done")
    for request in (eta, limited, other, done):
        tracked._published(headers={"id": request.id})
    entries = [FakeEntry(consumer.apply_eta_task, eta), FakeEntry(consumer._limit_post_eta, limited),
               FakeEntry(lambda request: None, other), FakeEntry(consumer.apply_eta_task, done, canceled=True)]
    consumer.timer.queue = [(0, 0, entry) for entry in entries]
    thread._drop_held_tasks(consumer, tracked)
    assert [entry.canceled for entry in entries] == [True, True, False, True]
    assert (eta.acknowledged, limited.acknowledged, other.acknowledged, done.acknowledged) == (True, True, False, False)
    assert consumer.decremented == 2
    assert set(tracked.ids) == {"other", "done"}   # the two dropped ones will never run


def test_a_worker_process_drops_the_same_and_replies_with_their_ids():
    """workers/process_app.py's remote-control command runs drop_held_tasks in the worker's consumer; its reply
    (the ids) is what ProcessWorker.settle waits for before the tables are emptied."""
    from pytest_celery_astra.workers.held import drop_held_tasks

    consumer = FakeConsumer()
    eta, other = FakeRequest("eta"), FakeRequest("other")
    entries = [FakeEntry(consumer.apply_eta_task, eta), FakeEntry(lambda request: None, other)]
    consumer.timer.queue = [(0, 0, entry) for entry in entries]
    assert drop_held_tasks(consumer) == ["eta"]
    assert drop_held_tasks(consumer) == []   # cancelled entries stay in the timer until their time: not twice


def test_no_consumer_or_timer_yet_is_nothing_to_drop():
    thread._drop_held_tasks(None, InFlight())
    consumer = FakeConsumer()
    consumer.timer = None
    thread._drop_held_tasks(consumer, InFlight())


def test_the_thread_pool_runs_tasks_with_the_workers_app_and_node_name():
    app = Celery("pool-app", set_as_current=False)
    task_hostname = thread._TaskHostname()
    pool_class = thread._pool_class("threads", app, "node@here", task_hostname)
    assert thread._pool_class("solo", app, "node@here", task_hostname) == "solo"
    pool = pool_class(limit=1)
    seen = []

    def look():
        from celery import current_app

        task = type("Task", (), {"request": type("Request", (), {"hostname": "machine"})()})()
        task_hostname(task=task)
        seen.append((current_app._get_current_object() is app, task.request.hostname))

    pool.executor.submit(look).result(10)
    pool.executor.shutdown()
    assert seen == [(True, "node@here")]


def test_the_task_sees_the_workers_node_name():
    task = type("Task", (), {"request": type("Request", (), {"hostname": "machine"})()})()
    done = threading.Event()
    task_hostname, another_workers = thread._TaskHostname(), thread._TaskHostname()

    def in_worker_thread():
        thread._in_worker_thread(Celery("node-app", set_as_current=False), "worker@node", task_hostname)
        another_workers(task=task)                   # not that worker's thread: nothing set
        task_hostname(task=task)
        done.set()

    runner = threading.Thread(target=in_worker_thread)
    runner.start()
    runner.join(10)
    assert done.is_set() and task.request.hostname == "worker@node"
    other = type("Task", (), {"request": type("Request", (), {"hostname": "machine"})()})()
    task_hostname(task=other)                        # a thread that is no worker's: unchanged
    assert other.request.hostname == "machine"


def test_the_loop_stops_on_its_own_event_and_a_poke_wakes_it():
    """On a real kombu Hub (the consumer's event loop), registered as a worker registers it: with the wake timer
    at 60 s only a poke from another thread can turn the loop, and a poke after a stop request ends it."""
    from kombu.asynchronous import Hub

    app = Celery("loop-app", broker="memory://", set_as_current=False)
    controller = thread._ThreadWorkController(app, hostname="loop@here", pool="solo", concurrency=1,
                                              loglevel="WARNING", logfile=None, ready_callback=None,
                                              wake_interval=60.0)
    hub = Hub()
    controller.register_with_event_loop(hub)
    ended: list[BaseException] = []

    def loop():
        turns = hub.create_loop()
        try:
            while True:
                next(turns)
        except BaseException as error:  # WorkerTerminate from wake(), raised in the loop's thread
            ended.append(error)

    runner = threading.Thread(target=loop, daemon=True)
    try:
        runner.start()
        for expected in (1, 2):                        # each poke: one turn, well before the 60 s timer
            controller.poke()
            deadline = time.monotonic() + 10
            while controller.ticks < expected:
                assert time.monotonic() < deadline, f"poke {expected} never turned the loop"
                time.sleep(0.001)
        assert controller.ticks == 2
        controller.stop_requested.set()
        controller.poke()
        runner.join(10)
        assert not runner.is_alive(), "a poke after the stop request did not end the loop"
        assert len(ended) == 1 and isinstance(ended[0], WorkerTerminate)
    finally:
        hub.close()
        controller.close_poke_pipe()
        controller.close_poke_pipe()                  # twice is harmless
        controller.poke()                             # closed: ignored


def test_a_worker_connects_its_node_name_receiver_while_it_runs_only():
    """Started on the memory broker: its task sees the node name; after stop no receiver of it is left
    on Celery's process-wide task_prerun signal."""
    from celery import signals

    app = Celery("prerun-app", broker="memory://", backend="cache+memory://", set_as_current=False)

    @app.task(name="prerun.node", bind=True)
    def node(self):
        return self.request.hostname

    receivers_before = len(signals.task_prerun.receivers)
    worker = thread.EmbeddedWorker(app, hostname="prerun@node", make_default=False, start_timeout=20,
                                   stop_timeout=20, wake_interval=0.02)
    worker.start()
    try:
        assert worker.controller is not None and worker.controller.wake_interval == 0.02
        assert worker.task_hostname.connected
        assert len(signals.task_prerun.receivers) == receivers_before + 1
        with allow_join_result():
            assert node.delay().get(timeout=20) == "prerun@node"
    finally:
        worker.stop()
        worker.in_flight.disconnect()
    assert not worker.task_hostname.connected
    assert len(signals.task_prerun.receivers) == receivers_before
    uids = [key[0] for key, _ in signals.task_prerun.receivers]
    assert worker.task_hostname.dispatch_uid not in uids
    app.close()


class _PurgingWorker:
    """settle() purges the given counts in turn (the broker still had messages), then nothing."""

    def __init__(self, purges):
        self.purges = list(purges)
        self.purged = 0
        self.settles = 0

    def settle(self, timeout):
        self.settles += 1
        self.purged = self.purges.pop(0) if self.purges else 0
        return True


def test_settle_all_passes_again_while_a_pass_still_purges_messages():
    from pytest_celery_astra.workers.in_flight import InFlight
    from pytest_celery_astra.workers.thread import settle_all

    in_flight = InFlight()
    in_flight.ids["left-behind"] = 1
    first, second = _PurgingWorker([5, 1]), _PurgingWorker([0])
    assert settle_all([first, second], 1.0, in_flight) == []
    # Pass 1 purged 5, pass 2 purged the 1 that reached the broker after the first purge, pass 3 found nothing.
    assert (first.settles, second.settles) == (3, 3)
    assert in_flight.empty()


def test_settle_all_makes_one_pass_when_nothing_was_waiting_in_the_broker():
    from pytest_celery_astra.workers.in_flight import InFlight
    from pytest_celery_astra.workers.thread import settle_all

    in_flight = InFlight()
    in_flight.ids["running"] = 1
    worker = _PurgingWorker([0])
    assert settle_all([worker], 1.0, in_flight) == []
    assert worker.settles == 1
