"""Why a task's result did not come back (run/why.py), what each task of a failing test did (run/timeline.py),
and the facts both stand on: the run's journal (workers/journal.py, fed here by Celery's own signals and a publish
to the in-memory broker) and a worker process's log (workers/process_log.py, Celery's and billiard's lines). No
services: workers and their remote control are fakes that answer as Celery's do."""

from __future__ import annotations

import datetime
import re
import time
import types
from pathlib import Path

import pytest
from celery import Celery, signals
from celery.exceptions import Retry

from pytest_celery_astra.cassandra.app_state import AppState, attach
from pytest_celery_astra.celery_app import BACKEND_PATH
from pytest_celery_astra.run import timeline, why
from pytest_celery_astra.workers.journal import TaskJournal, describe_exception
from pytest_celery_astra.workers.process_log import read_log

HOST = "celery_astra_worker@master-run1"
PROCESS_HOST = "celery_astra_worker_process@master-run1"


@pytest.fixture
def app():
    app = Celery("shop", set_as_current=False)
    app.conf.update(broker_url="memory://", result_backend=BACKEND_PATH, cassandra_servers=["127.0.0.1"],
                    cassandra_keyspace="ks", cassandra_table="results", task_routes={"shop.restock": {"queue": "restock"}})

    @app.task(name="shop.price", shared=False)
    def price(quantity, unit):
        return quantity * unit

    @app.task(name="shop.restock", shared=False)
    def restock(item):
        return item

    @app.task(name="shop.forget", ignore_result=True, shared=False)
    def forget():
        return None

    app.finalize()
    attach(app, AppState(wiring=types.SimpleNamespace(keyspace="ks", table="results", secrets=lambda: [])))
    yield app
    app.close()


@pytest.fixture
def journal():
    journal = TaskJournal()
    journal.connect()
    yield journal
    journal.disconnect()


def publish(app, name, **options):
    """A real publish to the in-memory broker: Celery's before_task_publish reaches the journal."""
    return app.tasks[name].apply_async(**options)


class Consumer:
    """What Celery sends worker signals from (hashable, with a node name)."""

    def __init__(self, hostname):
        self.hostname = hostname


def received(task_id, hostname=HOST):
    signals.task_received.send(sender=Consumer(hostname),
                               request=types.SimpleNamespace(id=task_id, hostname=hostname))


def started(app, task_id, name="shop.price"):
    signals.task_prerun.send(sender=app.tasks[name], task_id=task_id, task=app.tasks[name], args=(), kwargs={})


def thread_worker(app, queues=("celery",), standing_by=False, fixturename="celery_astra_worker", hostname=HOST):
    return types.SimpleNamespace(app=app, hostname=hostname, fixturename=fixturename, consumed_queues=list(queues),
                                 standing_by=standing_by, in_this_process=True, log_path=None)


class FakeInspect:
    """A worker process's remote control: ``query_task`` and ``scheduled`` as Celery answers them."""

    def __init__(self, hostname, tasks=None, scheduled=None, registered=None):
        self.hostname, self.tasks, self._scheduled, self._registered = hostname, tasks or {}, scheduled or [], registered
        self.asked = []

    def inspect(self, destination, timeout):
        assert destination == [self.hostname] and timeout <= 1.0   # bounded: a worker answers in milliseconds
        return self

    def query_task(self, *ids):
        self.asked.append("query_task")
        return {self.hostname: {task_id: self.tasks[task_id] for task_id in ids if task_id in self.tasks}}

    def scheduled(self):
        self.asked.append("scheduled")
        return {self.hostname: self._scheduled}

    def registered(self):
        return {self.hostname: self._registered or []}


def process_worker(tmp_path: Path, log: str = "", control: FakeInspect | None = None, queues=("celery",),
                   standing_by=False):
    path = tmp_path / "worker.log"
    path.write_text(log)
    control = control or FakeInspect(PROCESS_HOST)
    return types.SimpleNamespace(app=types.SimpleNamespace(control=control), hostname=PROCESS_HOST,
                                 fixturename="celery_astra_worker_process", consumed_queues=list(queues),
                                 standing_by=standing_by, log_path=path, concurrency=1, in_this_process=False)


def facts(app, journal, task_id, workers, last=None, probe=True, depth=None):
    records = journal.records()
    return why.Facts(task_id=task_id, record=next((r for r in records if r.id == task_id), None), last=last, app=app,
                     workers=workers, started=journal.started, keyspace="ks", table="results", probe=probe,
                     depth=(lambda app_, queue: depth), others=[r for r in records if r.id != task_id])


def log_line(at: float, process: str, message: str) -> str:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at)) + f",{int(at * 1000) % 1000:03d}"
    return f"[{stamp}: INFO/{process}] {message}"


# The journal

def test_the_journal_keeps_the_tests_tasks_with_what_a_worker_thread_did(app, journal):
    result = publish(app, "shop.price", args=(2, 3))
    received(result.id)
    started(app, result.id)
    signals.task_postrun.send(sender=app.tasks["shop.price"], task_id=result.id, task=app.tasks["shop.price"],
                              args=(), kwargs={}, retval=6, state="SUCCESS")
    [record] = journal.records()
    assert (record.sent.name, record.sent.queue, record.worker) == ("shop.price", "celery", HOST)
    assert [event.what for event in record.events] == ["published", "received", "started", "succeeded"]
    assert all(event.at >= journal.started for event in record.events)


def test_a_test_begins_with_an_empty_journal(app, journal):
    publish(app, "shop.price", args=(1, 1))
    journal.begin()
    assert journal.records() == []


def test_a_retry_on_a_worker_thread_is_counted_and_published_again(app, journal):
    result = publish(app, "shop.price", args=(1, 1))
    received(result.id)
    started(app, result.id)
    signals.task_retry.send(sender=app.tasks["shop.price"], request=types.SimpleNamespace(id=result.id),
                            reason=Retry(exc=ValueError("flaky"), when=60), einfo=None)
    publish(app, "shop.price", args=(1, 1), task_id=result.id, countdown=60)   # what Task.retry sends
    [record] = journal.records()
    assert record.retries == 1 and len(record.sends) == 2 and record.sends[-1].countdown > 59
    assert "ValueError('flaky')" in record.last("retry").detail


def test_an_exception_is_described_in_one_line():
    assert describe_exception(ZeroDivisionError("division by zero")) == "ZeroDivisionError('division by zero')"
    assert describe_exception(Retry(exc=ValueError("x"), when=5)) == "Retry in 5s: ValueError('x')"
    assert describe_exception(ValueError("a\nb")) == "ValueError('a\\nb')"


# A worker process's log

def test_a_worker_process_log_gives_each_tasks_events_and_the_children_that_exited():
    now = time.time()
    text = "\n".join([
        log_line(now, "MainProcess", "Task shop.crash[c1] received"),
        log_line(now + 0.1, "MainProcess", "Process 'ForkPoolWorker-1' pid:4242 exited with 'exitcode 13'"),
        "Traceback (most recent call last):",
        log_line(now + 0.2, "MainProcess", "Task shop.price[p1] received"),
        log_line(now + 0.3, "ForkPoolWorker-2", "Task shop.boom[b1] raised unexpected: ZeroDivisionError('x')"),
        log_line(now + 0.4, "ForkPoolWorker-2", "Task shop.flaky[f1] retry: Retry in 60s: ValueError('flaky')"),
        log_line(now + 0.5, "ForkPoolWorker-2", "Task shop.ok[o1] succeeded in 0.0012s: 12"),
        log_line(now + 0.6, "MainProcess", "Received unregistered task of type 'shop.ghost'."),
    ])
    log = read_log(text, PROCESS_HOST)
    assert [(child.child, child.pid, child.status) for child in log.exits] == [("ForkPoolWorker-1", 4242, "exitcode 13")]
    assert abs(log.exits[0].at - (now + 0.1)) < 0.002
    assert [event.what for event in log.events["p1"]] == ["received"]
    assert log.events["b1"][0].what == "failed" and "ZeroDivisionError('x')" in log.events["b1"][0].detail
    assert log.events["f1"][0].what == "retry" and "Retry in 60s" in log.events["f1"][0].detail
    assert log.events["o1"][0].what == "succeeded" and "0.0012s" in log.events["o1"][0].detail
    assert [name for _, name in log.unregistered] == ["shop.ghost"]
    assert set(read_log(text, PROCESS_HOST, {"p1"}).events) == {"p1"}


# Why a .get() timed out

def test_no_worker_running_names_both_worker_fixtures(app, journal):
    result = publish(app, "shop.price", args=(1, 1))
    sentence = why.explain(facts(app, journal, result.id, [], depth=1))
    assert sentence.startswith("no worker runs for this app, so nothing consumes queue 'celery'; 1 message waits there")
    assert "celery_astra_worker (a worker thread) or celery_astra_worker_process" in sentence


def test_workers_standing_by_say_the_test_asked_for_none(app, journal, tmp_path):
    result = publish(app, "shop.price", args=(1, 1))
    workers = [thread_worker(app, standing_by=True), process_worker(tmp_path, standing_by=True)]
    sentence = why.explain(facts(app, journal, result.id, workers, depth=2))
    assert sentence.startswith(f"this test asked for no worker: celery_astra_worker ({HOST}) and "
                               f"celery_astra_worker_process ({PROCESS_HOST}) stand by")
    assert "2 messages wait there; ask for celery_astra_worker or celery_astra_worker_process in this test" in sentence


def test_a_queue_no_worker_consumes_is_named_with_the_two_fixes(app, journal):
    result = publish(app, "shop.restock", args=("apples",))
    sentence = why.explain(facts(app, journal, result.id, [thread_worker(app), thread_worker(
        app, standing_by=True, fixturename="billing_worker", hostname="billing@h")], depth=3))
    assert sentence == (
        f"shop.restock[{result.id}] went to queue 'restock', which no running worker consumes (celery_astra_worker "
        f"({HOST}) consumes 'celery'); 3 messages wait there. Route the task to a queue a worker consumes "
        f"(task_routes, or queue= when sending it), or have a worker consume 'restock': celery_astra_queues = restock "
        f"in the ini file, --celery-astra-queues restock, or factories.worker(queues=('restock',)).")


def test_a_task_still_running_on_the_worker_thread_says_since_when(app, journal):
    result = publish(app, "shop.price", args=(1, 1))
    received(result.id)
    started(app, result.id)
    sentence = why.explain(facts(app, journal, result.id, [thread_worker(app)]))
    assert sentence.startswith(f"shop.price[{result.id}] is still running on celery_astra_worker ({HOST}, a worker "
                               f"thread of this process, in thread MainThread), started 0.")


def test_a_task_held_for_its_eta_on_the_worker_thread(app, journal):
    result = publish(app, "shop.price", args=(1, 1), countdown=60)
    received(result.id)
    sentence = why.explain(facts(app, journal, result.id, [thread_worker(app)]))
    assert sentence.startswith(f"shop.price[{result.id}] is held by celery_astra_worker ({HOST}) until its ETA, ")
    assert re.search(r"\(in (59\.\d|60\.0) s\): \.get\(\) cannot return before then\.$", sentence)


def test_a_received_task_behind_a_busy_worker_thread_names_what_runs(app, journal):
    busy = publish(app, "shop.price", args=(1, 1))
    received(busy.id)
    started(app, busy.id)
    waiting = publish(app, "shop.price", args=(2, 2))
    received(waiting.id)
    sentence = why.explain(facts(app, journal, waiting.id, [thread_worker(app)]))
    assert f"the worker is busy running shop.price[{busy.id}], started" in sentence


def test_a_retried_task_says_its_count_exception_and_next_eta(app, journal):
    result = publish(app, "shop.price", args=(1, 1))
    received(result.id)
    signals.task_retry.send(sender=None, request=types.SimpleNamespace(id=result.id),
                            reason=Retry(exc=ValueError("flaky"), when=60), einfo=None)
    publish(app, "shop.price", args=(1, 1), task_id=result.id, countdown=60)
    last = {"status": "RETRY", "result": ValueError("flaky")}
    sentence = why.explain(facts(app, journal, result.id, [thread_worker(app)], last=last))
    assert sentence.startswith(f"shop.price[{result.id}] was retried 1 time and has no result yet: its result row "
                               f"says RETRY (ValueError('flaky')); its next attempt is due at ")
    assert re.search(r"\(in (59\.\d|60\.0) s\)\.$", sentence)


def test_a_task_still_running_in_a_worker_process_child(app, journal, tmp_path):
    result = publish(app, "shop.price", args=(1, 1))
    control = FakeInspect(PROCESS_HOST, tasks={result.id: ["active", {"worker_pid": 4321,
                                                                    "time_start": time.time() - 2.5}]})
    sentence = why.explain(facts(app, journal, result.id, [process_worker(tmp_path, control=control)]))
    assert sentence.startswith(f"shop.price[{result.id}] is still running on worker process {PROCESS_HOST} "
                               f"(child pid 4321), started 2.")


def test_a_task_a_worker_process_holds_for_its_eta(app, journal, tmp_path):
    result = publish(app, "shop.price", args=(1, 1), countdown=60)
    eta = (datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=60)).isoformat()
    control = FakeInspect(PROCESS_HOST, scheduled=[{"eta": eta, "request": {"id": result.id}}])
    sentence = why.explain(facts(app, journal, result.id, [process_worker(tmp_path, control=control)]))
    assert sentence.startswith(f"shop.price[{result.id}] is held by worker process {PROCESS_HOST} until its ETA, ")
    assert control.asked == ["query_task", "scheduled"]


def test_a_task_received_after_a_prefork_child_died_names_the_fork_fix(app, journal, tmp_path):
    result = publish(app, "shop.price", args=(2, 2))
    now = time.time()
    log = "\n".join([log_line(now, "MainProcess", "Process 'ForkPoolWorker-1' pid:4242 exited with 'exitcode 13'"),
                     log_line(now + 0.01, "MainProcess", f"Task shop.price[{result.id}] received")])
    control = FakeInspect(PROCESS_HOST, tasks={result.id: ["active", {"worker_pid": 4343, "time_start": now}]})
    sentence = why.explain(facts(app, journal, result.id, [process_worker(tmp_path, log, control)]))
    assert sentence.startswith(f"worker process {PROCESS_HOST} lost a prefork child (ForkPoolWorker-1, pid 4242, "
                               f"exitcode 13) at +")
    assert f"and shop.price[{result.id}], received after it at +" in sentence
    assert "has stored no result (it is still active in child pid 4343" in sentence
    assert sentence.endswith(f"Fix: {why.FORK_FIX}.")


def test_a_task_that_finished_after_a_child_died_is_not_blamed_on_the_fork(app, journal, tmp_path):
    result = publish(app, "shop.price", args=(2, 2))
    now = time.time()
    log = "\n".join([log_line(now, "MainProcess", "Process 'ForkPoolWorker-1' pid:4242 exited with 'exitcode 13'"),
                     log_line(now + 0.01, "MainProcess", f"Task shop.price[{result.id}] received"),
                     log_line(now + 0.02, "ForkPoolWorker-2", f"Task shop.price[{result.id}] succeeded in 0.01s: 4")])
    assert why.explain(facts(app, journal, result.id, [process_worker(tmp_path, log)])) is None


def test_a_task_with_a_backend_of_its_own_stores_elsewhere(app, journal):
    from celery.backends.cache import CacheBackend

    app.tasks["shop.price"].backend = CacheBackend(app=app, backend="memory://")
    try:
        result = publish(app, "shop.price", args=(1, 1))
        sentence = why.explain(facts(app, journal, result.id, [thread_worker(app)]))
    finally:
        app.tasks["shop.price"].backend = None
    assert sentence.startswith("task shop.price stores its results with a backend of its own (CacheBackend")
    assert "not in ks.results, where this .get() reads: wait with price.AsyncResult(id)" in sentence


def test_an_app_whose_table_changed_stores_elsewhere(app, journal):
    result = publish(app, "shop.price", args=(1, 1))
    app.conf.cassandra_table = "audit"
    app._backend_cache = None   # as a user's reset would: the next use builds the new backend
    app._local = types.SimpleNamespace()
    sentence = why.explain(facts(app, journal, result.id, [thread_worker(app)]))
    assert sentence.startswith("the app's result backend was changed after the plugin wired it (now "
                               "TestCassandraBackend table ks.audit)")


def test_a_task_that_ignores_its_result_can_never_be_waited_for(app, journal):
    result = publish(app, "shop.forget")
    sentence = why.explain(facts(app, journal, result.id, [thread_worker(app)]))
    assert sentence.startswith("task shop.forget has ignore_result=True: no worker stores its result")


def test_a_task_that_waits_in_a_consumed_queue_says_how_many_wait(app, journal):
    result = publish(app, "shop.price", args=(1, 1))
    sentence = why.explain(facts(app, journal, result.id, [thread_worker(app)], depth=4))
    assert sentence == (f"no worker has received shop.price[{result.id}] yet: 4 messages wait in queue 'celery', "
                        f"which celery_astra_worker ({HOST}) consumes.")


def test_nothing_observed_gives_no_sentence(app, journal):
    result = publish(app, "shop.price", args=(1, 1))
    assert why.explain(facts(app, journal, result.id, [thread_worker(app)], depth=0)) is None
    assert why.explain(facts(app, journal, "unknown-id", [thread_worker(app)], depth=None)) is None


def test_without_probing_neither_the_broker_nor_a_worker_is_asked(app, journal, tmp_path):
    result = publish(app, "shop.price", args=(1, 1))
    control = FakeInspect(PROCESS_HOST)
    asked = []
    observed = facts(app, journal, result.id, [process_worker(tmp_path, control=control)], probe=False)
    observed.depth = lambda app_, queue: asked.append(queue)
    why.explain(observed)
    assert control.asked == [] and asked == []


# The backend's timeout carries the sentence; an explainer that fails leaves Celery's message

def test_the_timeout_message_carries_the_sentence_and_survives_a_failing_explainer():
    from pytest_celery_astra.cassandra.backend import _timed_out

    seen = []
    assert _timed_out(lambda task_id, last: seen.append((task_id, last)) or "no worker runs", "t1", {"status": "PENDING"}) \
        == "The operation timed out. (pytest-celery-astra: no worker runs)"
    assert seen == [("t1", {"status": "PENDING"})]

    def broken(task_id, last):
        raise RuntimeError("bug")

    assert _timed_out(broken, "t1", None) == "The operation timed out."
    assert _timed_out(lambda task_id, last: None, "t1", None) == "The operation timed out."
    assert _timed_out(None, "t1", None) == "The operation timed out."


# A failing test's report section

def test_the_section_lists_each_task_with_its_transitions_and_masks_secrets(app, journal):
    ok = publish(app, "shop.price", args=(2, 3))
    received(ok.id)
    started(app, ok.id)
    signals.task_postrun.send(sender=None, task_id=ok.id, state="SUCCESS")
    boom = publish(app, "shop.price", args=(0, 0))
    received(boom.id)
    started(app, boom.id)
    signals.task_failure.send(sender=None, task_id=boom.id,
                              exception=RuntimeError("cannot reach amqp://guest:s3cret@broker//"))
    lines = [line for record in journal.records() for line in timeline.describe(record, journal.started)]
    assert lines[0] == f"shop.price[{ok.id}] queue 'celery', taken by {HOST}"
    assert [line.split(" ms  ", 1)[1] for line in lines[1:5]] == [
        "published to queue 'celery'", f"received by {HOST}", "started (thread MainThread)", "succeeded"]
    assert lines[-1].endswith("failed: RuntimeError('cannot reach amqp://guest:s3cret@broker//')")
    from pytest_celery_astra.masking import mask_text

    assert "s3cret" not in mask_text("\n".join(lines), [])


def test_the_section_says_why_a_task_has_no_result(app, journal):
    publish(app, "shop.restock", args=("pears",))
    [record] = journal.records()
    lines = timeline.describe(record, journal.started, "it went nowhere")
    assert lines[-1] == "  no result: it went nowhere"


def test_an_unknown_task_says_what_the_worker_knows(app, journal):
    result = app.send_task("shop.ghost")
    signals.task_unknown.send(sender=Consumer(HOST), name="shop.ghost", id=result.id,
                              message=None, exc=None)
    [record] = journal.records()
    timeline._merge(record, {}, [thread_worker(app)])
    text = timeline._event_text(record.events[-1])
    assert text.startswith(f"not registered on {HOST}: it has ")   # (and the shared tasks of other tests' apps)
    assert "shop.forget, shop.price, shop.restock" in text and "shop.ghost" not in text
