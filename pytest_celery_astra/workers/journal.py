"""What the tasks of the current test did, as far as this process sees: :class:`TaskJournal`.

One per run (``RunContext.journal``), connected to Celery's process-wide signals once an app fixture wired
an app, disconnected at the run's end, begun afresh at each test's set-up. It records every publish in this
process (``before_task_publish``: the test's own tasks and, on a thread worker, their retries) and what a
worker thread of this process did with them (``task_received``, ``task_prerun``, ``task_postrun``,
``task_retry``, ``task_failure``, ``task_revoked``, ``task_unknown``, ``task_rejected``). A worker process's
side is in its log (``workers/process_log.py``), read only when a test failed.

A passing test pays for an append per signal (the arguments kept as they came); everything is read — the
publishes parsed with ``sent_tasks.sent_task`` — only when a test failed or a ``.get()`` timed out
(``bench/why_cost.py`` measures it).
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
import time
from typing import Any

from pytest_celery_astra.workers.sent_tasks import SentTask, sent_task

# Celery's signals the journal listens to, by the name of the handler method.
_WORKER_SIGNALS = ("task_received", "task_prerun", "task_postrun", "task_retry", "task_failure", "task_revoked",
                   "task_unknown", "task_rejected")


@dataclasses.dataclass(frozen=True)
class TaskEvent:
    """One thing that happened to a task: ``what`` ("published", "received", "started", "succeeded",
    "failed", "retry", "revoked", "unknown", "rejected"), when (``time.time()``), on which worker (node
    name, when known) and a detail (the exception, the ETA, the thread or child)."""

    at: float
    what: str
    worker: str | None = None
    detail: str = ""


@dataclasses.dataclass
class TaskRecord:
    """A task published during the test: what was sent (``sent``, the first publish) and what happened to it."""

    sent: SentTask
    published: float
    events: list[TaskEvent]
    # Every publish under its id, in order: the first, then a thread worker's retries (each with its ETA).
    sends: list[SentTask] = dataclasses.field(default_factory=list)

    @property
    def id(self) -> str:
        return self.sent.id

    @property
    def retries(self) -> int:
        """Attempts retried, as far as this process saw them (a thread worker's retries republish here)."""
        return sum(1 for event in self.events if event.what == "retry")

    @property
    def worker(self) -> str | None:
        """The node name of the worker that received it (the last one, after a retry)."""
        workers = [event.worker for event in self.events if event.what == "received" and event.worker]
        return workers[-1] if workers else None

    def last(self, *what: str) -> TaskEvent | None:
        """The last event of one of the kinds ``what``."""
        for event in reversed(self.events):
            if event.what in what:
                return event
        return None


class TaskJournal:
    """The tasks published in this process since the current test began, and what this process's worker
    threads did with them."""

    def __init__(self):
        self.started = time.time()  # the current test's set-up began (time.time())
        # Appends only (atomic), from any thread; begin() puts fresh lists in place.
        self._publishes: list[tuple] = []
        self._events: list[tuple] = []
        self.connected = False
        self._lock = threading.Lock()

    def begin(self) -> None:
        """At a test's set-up: forget the previous test's tasks."""
        self.started = time.time()
        if self._publishes or self._events:
            self._publishes, self._events = [], []

    def connect(self) -> None:
        """Listen to Celery's signals (once; Celery's signals are process-wide)."""
        from celery import signals

        with self._lock:
            if self.connected:
                return
            signals.before_task_publish.connect(self._published, weak=False)
            for name in _WORKER_SIGNALS:
                getattr(signals, name).connect(getattr(self, f"_{name}"), weak=False)
            self.connected = True

    def disconnect(self) -> None:
        from celery import signals

        with self._lock:
            if not self.connected:
                return
            signals.before_task_publish.disconnect(self._published)
            for name in _WORKER_SIGNALS:
                getattr(signals, name).disconnect(getattr(self, f"_{name}"))
            self.connected = False

    # The handlers: one append each, nothing parsed (Celery passes keyword arguments).
    def _published(self, sender=None, body=None, headers=None, routing_key=None, declare=None, **_: Any) -> None:
        self._publishes.append((time.time(), sender, body, headers, routing_key, declare))

    def _task_received(self, sender=None, request=None, **_: Any) -> None:
        self._events.append((time.time(), "received", getattr(request, "id", None),
                             getattr(request, "hostname", None), None))

    def _task_prerun(self, sender=None, task_id=None, **_: Any) -> None:
        self._events.append((time.time(), "started", task_id, None, threading.current_thread().name))

    def _task_postrun(self, sender=None, task_id=None, state=None, **_: Any) -> None:
        self._events.append((time.time(), "finished", task_id, None, state))

    def _task_retry(self, sender=None, request=None, reason=None, **_: Any) -> None:
        self._events.append((time.time(), "retry", getattr(request, "id", None), None, reason))

    def _task_failure(self, sender=None, task_id=None, exception=None, **_: Any) -> None:
        self._events.append((time.time(), "failed", task_id, None, exception))

    def _task_revoked(self, sender=None, request=None, expired=False, terminated=False, **_: Any) -> None:
        why = "expired" if expired else "terminated" if terminated else "revoked"
        self._events.append((time.time(), "revoked", getattr(request, "id", None), None, why))

    def _task_unknown(self, sender=None, name=None, id=None, **_: Any) -> None:  # noqa: A002 - Celery's name
        self._events.append((time.time(), "unknown", id, getattr(sender, "hostname", None), name))

    def _task_rejected(self, sender=None, message=None, exc=None, **_: Any) -> None:
        headers = getattr(message, "headers", None) or {}
        self._events.append((time.time(), "rejected", headers.get("id"), getattr(sender, "hostname", None), exc))

    # Reading: only when a test failed or a .get() timed out.
    def records(self) -> list[TaskRecord]:
        """The tasks published since the test began, in publish order, with the events seen here."""
        records: dict[str, TaskRecord] = {}
        for at, sender, body, headers, routing_key, declare in list(self._publishes):
            try:
                published = datetime.datetime.fromtimestamp(at, datetime.timezone.utc)
                task = sent_task(sender, body, headers, routing_key, declare, published)
            except Exception:  # noqa: BLE001 - a message this parser does not know: left out, not raised
                continue
            record = records.get(task.id)
            if record is None:
                record = records[task.id] = TaskRecord(task, at, [TaskEvent(at, "published", None, _sent_detail(task))])
            else:  # published again under the same id: a retry, from a worker thread of this process
                record.events.append(TaskEvent(at, "published", None, _sent_detail(task) + " (again)"))
            record.sends.append(task)
        for at, what, task_id, worker, detail in list(self._events):
            record = records.get(task_id) if task_id else None
            if record is None:
                continue
            event = _event(at, what, worker, detail)
            if event is not None:
                record.events.append(event)
        for record in records.values():
            record.events.sort(key=lambda event: event.at)
        return list(records.values())

    def record(self, task_id: str) -> TaskRecord | None:
        """The task ``task_id`` if it was published since the test began."""
        return next((record for record in self.records() if record.id == task_id), None)


def _sent_detail(task: SentTask) -> str:
    where = f"to queue {task.queue!r}" if task.queue else "with no queue"
    return where + (f", ETA in {task.countdown:.1f} s" if task.countdown is not None and task.countdown > 0 else "")


def _event(at: float, what: str, worker: str | None, detail: Any) -> TaskEvent | None:
    if what == "finished":
        # postrun: a success is said here; a failure or retry by its own signal, with the exception.
        if detail == "SUCCESS":
            return TaskEvent(at, "succeeded", worker)
        return None if detail in ("FAILURE", "RETRY") else TaskEvent(at, str(detail).lower(), worker)
    if what in ("failed", "retry", "rejected") and detail is not None:
        detail = describe_exception(detail)
    return TaskEvent(at, what, worker, "" if detail is None else str(detail))


def describe_exception(error: Any) -> str:
    """``Type('message')`` for an exception (Celery's Retry as it says itself: ``Retry in 60s: Cause('...')``),
    cut to one line of 300 characters."""
    retry = type(error).__name__ == "Retry"
    text = repr(error) if isinstance(error, BaseException) and not retry else str(error)
    first = text.splitlines()[0] if text else text
    return first[:300]
