"""Why a task's result did not come back: one or two plain sentences from what the plugin observed.

The app fixture sets ``AppState.explain_timeout`` to an :class:`Explainer`; the result backend calls it when a
``.get()`` times out and adds its sentence to Celery's ``TimeoutError``; a failing test's report section
(``run/timeline.py``) asks it, without the broker calls, for each task of the test that has no result.

The facts: the run's journal of the test's tasks (``workers/journal.py``: name, queue, ETA, and what a worker
thread of this process did), the running workers (their queues, whether they stand by), a worker process's
log (``workers/process_log.py``) and, when asked to probe, its remote control (``query_task``, ``scheduled``,
each bounded by :data:`INSPECT_TIMEOUT`) and the queue's depth on the broker. Nothing is guessed: a case the
facts do not show gets no sentence, and Celery's bare message stays.

Not here, because Celery already raises them from the row the worker stores: an unregistered task
(``NotRegistered``), a revoked one (``TaskRevokedError``), a lost prefork child (``WorkerLostError``), a failure.
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Any, Callable

import pytest

from pytest_celery_astra.run import registry
from pytest_celery_astra.run.context import RUN_CONTEXT_KEY
from pytest_celery_astra.workers.journal import TaskRecord, describe_exception
from pytest_celery_astra.workers.process_log import ProcessLog, read_log

# Seconds one remote-control question to a worker process may take (a worker answers in milliseconds).
INSPECT_TIMEOUT = 0.5
# Seconds to connect to the broker to read a queue's depth.
DEPTH_TIMEOUT = 1.0
# What can happen to a task on a worker after it was received, in the journal's words.
_OUTCOMES = ("started", "succeeded", "failed", "retry", "revoked", "unknown", "rejected")
FORK_FIX = ('connect the result backend again in each child with a worker_process_init handler '
            '(docs/process-worker.md, "A crashed child hangs the next task")')


@dataclasses.dataclass
class Facts:
    """What the plugin observed about one task whose result did not come back."""

    task_id: str
    record: TaskRecord | None  # from the run's journal: None when not sent during this test in this process
    last: dict | None  # the result row read last (None: not read)
    app: Any
    workers: list  # the running workers of this app (thread or process)
    started: float  # the test's start, time.time()
    keyspace: str | None  # where the plugin's backend reads results
    table: str | None
    probe: bool = True  # ask the broker and the workers' remote control (else: what is known here only)
    now: float = dataclasses.field(default_factory=time.time)
    depth: Callable[[Any, str], int | None] | None = None  # the queue's depth (celery_app.queue_depth)
    others: list[TaskRecord] = dataclasses.field(default_factory=list)  # the test's other tasks (the journal's)
    _logs: dict = dataclasses.field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.record.sent.name if self.record is not None else "?"

    @property
    def task(self) -> str:
        """How the task is named in a sentence: ``name[id]``."""
        return f"{self.name}[{self.task_id}]" if self.record is not None else f"task {self.task_id}"

    @property
    def queue(self) -> str | None:
        return self.record.sent.queue if self.record is not None else None

    def offset(self, at: float) -> str:
        """``+123 ms`` from the test's start."""
        return f"+{(at - self.started) * 1000:.0f} ms"

    def log(self, worker) -> ProcessLog:
        """What ``worker``'s log (a worker process's) says about this task and its children; read once."""
        key = id(worker)
        if key not in self._logs:
            path = worker.log_path
            try:
                text = path.read_text(errors="replace") if path is not None and path.exists() else ""
            except OSError:
                text = ""
            self._logs[key] = read_log(text, worker.hostname, {self.task_id})
        return self._logs[key]


def explain(facts: Facts) -> str | None:
    """The first case the facts show, in one or two sentences; None when they show none."""
    for case in (_elsewhere, _ignored, _retried, _no_worker, _no_consumer, _on_a_worker, _waiting):
        why = case(facts)
        if why:
            return why
    return None


class Explainer:
    """``AppState.explain_timeout`` for one app of the run: ``explainer(task_id, last_row)``."""

    def __init__(self, config: pytest.Config, app: Any):
        self.config = config
        self.app = app

    def __call__(self, task_id: str, last: dict | None) -> str | None:
        return explain(gather(self.config, self.app, task_id, last, probe=True))


def gather(config: pytest.Config, app: Any, task_id: str, last: dict | None, probe: bool,
           record: TaskRecord | None = None) -> Facts:
    """The facts about ``task_id`` of ``app`` in this run (the journal's record unless given)."""
    from pytest_celery_astra.celery_app import queue_depth

    context = config.stash[RUN_CONTEXT_KEY]
    wiring = _state(app).wiring
    records = context.journal.records()
    if record is None:
        record = next((known for known in records if known.id == task_id), None)
    return Facts(
        task_id=task_id, record=record, last=last, others=[known for known in records if known.id != task_id],
        app=app, workers=[worker for worker in config.stash.get(registry.RUNNING_WORKERS_KEY, [])
                          if worker.app is app],
        started=context.journal.started, keyspace=getattr(wiring, "keyspace", None),
        table=getattr(wiring, "table", None), probe=probe,
        depth=lambda app_, queue: queue_depth(app_, queue, DEPTH_TIMEOUT))


def _state(app: Any):
    from pytest_celery_astra.cassandra.app_state import state_of

    return state_of(app)


# The cases, in the order explain() tries them.

def _elsewhere(facts: Facts) -> str | None:
    """The result is stored where this .get() does not read: the task's own backend, or the app's changed."""
    if facts.table is None:
        return None
    task = facts.app.tasks.get(facts.name) if facts.record is not None else None
    try:
        app_backend = facts.app.backend
        task_backend = task.backend if task is not None else app_backend
    except Exception:  # noqa: BLE001 - a backend that cannot even be made: said as such
        return (f"the app's result backend cannot be made any more (app.conf.result_backend is "
                f"{_masked(facts.app.conf.result_backend)!r}), so no worker stores {facts.task} in "
                f"{facts.keyspace}.{facts.table}, where this .get() reads.")
    if task_backend is not app_backend and not _reads_here(task_backend, facts):
        return (f"task {facts.name} stores its results with a backend of its own ({_describe(task_backend)}), "
                f"not in {facts.keyspace}.{facts.table}, where this .get() reads: wait with "
                f"{facts.name.rsplit('.', 1)[-1]}.AsyncResult(id), or drop the task's backend option.")
    if not _reads_here(app_backend, facts):
        return (f"the app's result backend was changed after the plugin wired it (now {_describe(app_backend)}), "
                f"so its worker stores {facts.task} there, not in {facts.keyspace}.{facts.table}, where this "
                f".get() reads; change the app's result settings before the plugin's fixtures, not in a test.")
    return None


def _reads_here(backend: Any, facts: Facts) -> bool:
    from pytest_celery_astra.cassandra.backend import TestCassandraBackend

    return (isinstance(backend, TestCassandraBackend)
            and (getattr(backend, "keyspace", None), getattr(backend, "table", None)) == (facts.keyspace, facts.table))


def _describe(backend: Any) -> str:
    table = (f" table {backend.keyspace}.{backend.table}"
             if getattr(backend, "keyspace", None) and getattr(backend, "table", None) else "")
    url = getattr(backend, "url", None)
    return f"{type(backend).__name__}{table}" + (f" at {_masked(url)}" if url and not table else "")


def _masked(text: Any) -> str:
    from pytest_celery_astra.masking import mask_url

    return mask_url(str(text))


def _ignored(facts: Facts) -> str | None:
    task = facts.app.tasks.get(facts.name) if facts.record is not None else None
    if task is None or not getattr(task, "ignore_result", False):
        return None
    return (f"task {facts.name} has ignore_result=True: no worker stores its result, so .get() cannot return; "
            f"wait for what the task does instead, or drop ignore_result.")


def _retried(facts: Facts) -> str | None:
    if not facts.last or facts.last.get("status") != "RETRY":
        return None
    retries, held = _retries(facts)
    count = f" {retries} time{'s' if retries != 1 else ''}" if retries else ""
    return (f"{facts.task} was retried{count} and has no result yet: its result row says RETRY "
            f"({describe_exception(facts.last.get('result'))}){held}.")


def _retries(facts: Facts) -> tuple[int, str]:
    """How often the task was retried (as seen here or in a worker process's log), and where its next attempt is."""
    record = facts.record
    retries = record.retries if record is not None else 0
    for worker in _process_workers(facts):
        retries = max(retries, sum(1 for event in facts.log(worker).events.get(facts.task_id, ())
                                   if event.what == "retry"))
        held = _held_by_process(facts, worker)
        if held is not None:
            return retries, f"; its next attempt is held by worker {worker.hostname} until {held}"
    if record is not None and len(record.sends) > 1:
        eta = record.sends[-1].eta
        if eta is not None:
            return retries, f"; its next attempt is due at {_clock(eta)} ({_from_now(eta, facts)})"
    return retries, ""


def _no_worker(facts: Facts) -> str | None:
    queue = f"queue {facts.queue!r}" if facts.queue else "its queue"
    if not facts.workers:
        return (f"no worker runs for this app, so nothing consumes {queue}{_depth(facts)}; ask for "
                f"celery_astra_worker (a worker thread) or celery_astra_worker_process (a `celery worker` "
                f"process) in this test.")
    if any(not worker.standing_by for worker in facts.workers):
        return None
    names = " and ".join(f"{worker.fixturename} ({worker.hostname})" for worker in facts.workers)
    fixtures = " or ".join(dict.fromkeys(str(worker.fixturename) for worker in facts.workers))
    return (f"this test asked for no worker: {names} {'stands' if len(facts.workers) == 1 else 'stand'} by "
            f"(only the workers a test asks for consume), so nothing consumes {queue}{_depth(facts)}; ask for "
            f"{fixtures} in this test.")


def _no_consumer(facts: Facts) -> str | None:
    queue = facts.queue
    consuming = _consuming(facts)
    if queue is None or not consuming or any(queue in worker.consumed_queues for worker in consuming):
        return None
    workers = "; ".join(f"{worker.fixturename} ({worker.hostname}) consumes "
                        f"{', '.join(repr(q) for q in worker.consumed_queues)}" for worker in consuming)
    return (f"{facts.task} went to queue {queue!r}, which no running worker consumes ({workers}){_depth(facts)}. "
            f"Route the task to a queue a worker consumes (task_routes, or queue= when sending it), or have a "
            f"worker consume {queue!r}: celery_astra_queues = {queue} in the ini file, --celery-astra-queues "
            f"{queue}, or factories.worker(queues=({queue!r},)).")


def _on_a_worker(facts: Facts) -> str | None:
    """A worker has the task: running, held for an ETA, waiting for a free child, or lost to a fork."""
    for worker in _consuming(facts):
        if not worker.in_this_process:
            why = _on_a_process(facts, worker)
        else:
            why = _on_a_thread(facts, worker)
        if why:
            return why
    return None


def _on_a_thread(facts: Facts, worker) -> str | None:
    record = facts.record
    if record is None:
        return None
    received = record.last("received")
    if received is None or received.worker not in (None, worker.hostname):
        return None
    last = record.last(*_OUTCOMES)
    if last is not None and last.what == "started":
        thread = f", in thread {last.detail}" if last.detail else ""
        return (f"{facts.task} is still running on {worker.fixturename} ({worker.hostname}, a worker thread of "
                f"this process{thread}), started {facts.now - last.at:.1f} s ago: raise .get()'s timeout or "
                f"make the task faster.")
    if last is None or last.at < received.at:
        eta = record.sends[-1].eta if record.sends else None
        if eta is not None and eta.timestamp() > facts.now:
            return (f"{facts.task} is held by {worker.fixturename} ({worker.hostname}) until its ETA, "
                    f"{_clock(eta)} ({_from_now(eta, facts)}): .get() cannot return before then.")
        busy = [other for other in facts.others if _running(other)]
        if busy:
            other = busy[0]
            return (f"{facts.task} was received by {worker.fixturename} ({worker.hostname}) at "
                    f"{facts.offset(received.at)} and waits: the worker is busy running {other.sent.name}"
                    f"[{other.id}], started {facts.now - _started(other):.1f} s ago.")
    if last is not None and last.what == "succeeded":
        return (f"{facts.task} succeeded on {worker.fixturename} ({worker.hostname}) at {facts.offset(last.at)}, "
                f"but its result is not in {facts.keyspace}.{facts.table}, where this .get() reads.")
    return None


def _running(record: TaskRecord) -> bool:
    """Started by a worker thread of this process and not finished."""
    last = record.last(*_OUTCOMES)
    return last is not None and last.what == "started"


def _started(record: TaskRecord) -> float:
    started = record.last("started")
    return started.at if started is not None else record.published


def _on_a_process(facts: Facts, worker) -> str | None:
    log = facts.log(worker)
    events = log.events.get(facts.task_id, [])
    received = next((event for event in reversed(events) if event.what == "received"), None)
    finished = next((event for event in reversed(events) if event.what != "received"), None)
    running = _query_task(facts, worker) if facts.probe else None
    if received is not None and (finished is None or finished.at < received.at):
        exits = [child for child in log.exits if child.at <= received.at]
        if exits:
            child = exits[-1]
            still = (f" (it is still active in child pid {running[1]}, {running[2]:.1f} s after it started)"
                     if running is not None and running[0] == "active" else "")
            return (f"worker process {worker.hostname} lost a prefork child ({child.child}, pid {child.pid}, "
                    f"{child.status}) at {facts.offset(child.at)}, and {facts.task}, received after it at "
                    f"{facts.offset(received.at)}, has stored no result{still}: after a lost child, the replacement "
                    f"child inherits the Cassandra connection the worker's main process opened to store the lost "
                    f"task's failure, and a driver connection does not survive a fork. Fix: {FORK_FIX}.")
    if running is not None:
        state, pid, seconds = running
        if state == "active":
            return (f"{facts.task} is still running on worker process {worker.hostname} (child pid {pid}), "
                    f"started {seconds:.1f} s ago: raise .get()'s timeout or make the task faster.")
        if state == "reserved":
            return (f"{facts.task} was received by worker process {worker.hostname} and waits for a free child: "
                    f"all {worker.concurrency} are busy.")
    eta = _held_by_process(facts, worker) if facts.probe else None
    if eta is not None:
        return (f"{facts.task} is held by worker process {worker.hostname} until its ETA, {eta}: .get() cannot "
                f"return before then.")
    return None


def _query_task(facts: Facts, worker) -> tuple[str, Any, float] | None:
    """("active" | "reserved" | ..., child pid, seconds since it started) from the worker's remote control."""
    try:
        inspect = worker.app.control.inspect(destination=[worker.hostname], timeout=INSPECT_TIMEOUT)
        replies = inspect.query_task(facts.task_id) or {}
    except Exception:  # noqa: BLE001 - no answer is no fact
        return None
    found = (replies.get(worker.hostname) or {}).get(facts.task_id)
    if not found:
        return None
    state, info = found[0], found[1] or {}
    started = info.get("time_start")
    return state, info.get("worker_pid"), (facts.now - started) if started else 0.0


def _held_by_process(facts: Facts, worker) -> str | None:
    """The ETA a worker process holds the task for (its remote control's ``scheduled``), as a sentence part."""
    if not facts.probe:
        return None
    try:
        inspect = worker.app.control.inspect(destination=[worker.hostname], timeout=INSPECT_TIMEOUT)
        scheduled = (inspect.scheduled() or {}).get(worker.hostname) or []
    except Exception:  # noqa: BLE001 - no answer is no fact
        return None
    for entry in scheduled:
        if (entry.get("request") or {}).get("id") == facts.task_id and entry.get("eta"):
            try:
                eta = datetime.datetime.fromisoformat(str(entry["eta"]))
            except ValueError:
                return str(entry["eta"])
            if eta.tzinfo is None:
                eta = eta.astimezone()
            return f"{_clock(eta)} ({_from_now(eta, facts)})"
    return None


def _waiting(facts: Facts) -> str | None:
    """The task reached no worker that consumes its queue: say what waits there and who consumes it."""
    consuming = _consuming(facts)
    queue = facts.queue
    if queue is None or not consuming:
        return None
    depth = facts.depth(facts.app, queue) if facts.probe and facts.depth is not None else None
    if not depth:
        return None
    consumers = [f"{worker.fixturename} ({worker.hostname})" for worker in consuming if queue in worker.consumed_queues]
    if not consumers:
        return None
    return (f"no worker has received {facts.task} yet: {_messages(depth)} in queue {queue!r}, which "
            f"{' and '.join(consumers)} {'consumes' if len(consumers) == 1 else 'consume'}.")


def _consuming(facts: Facts) -> list:
    return [worker for worker in facts.workers if not worker.standing_by]


def _process_workers(facts: Facts) -> list:
    return [worker for worker in facts.workers if not worker.in_this_process]


def _depth(facts: Facts) -> str:
    """``; 3 messages wait there`` when the broker says so (probing only)."""
    if not facts.probe or facts.queue is None or facts.depth is None:
        return ""
    depth = facts.depth(facts.app, facts.queue)
    return f"; {_messages(depth)} there" if depth else ""


def _messages(count: int) -> str:
    """``1 message waits`` / ``3 messages wait``."""
    return f"{count} message waits" if count == 1 else f"{count} messages wait"


def _clock(eta: datetime.datetime) -> str:
    return eta.astimezone().strftime("%H:%M:%S")


def _from_now(eta: datetime.datetime, facts: Facts) -> str:
    seconds = eta.timestamp() - facts.now
    return f"in {seconds:.1f} s" if seconds >= 0 else f"{-seconds:.1f} s ago"
