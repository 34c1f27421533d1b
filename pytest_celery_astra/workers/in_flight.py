"""Which tasks published in this process are still to run: :class:`InFlight`, from Celery's signals."""

from __future__ import annotations

import collections
import threading


class InFlight:
    """Ids of tasks published in this process that no worker has finished yet (Celery's signals).

    Lets :func:`~pytest_celery_astra.workers.thread.settle_all` return at once after the usual test, whose
    tasks all ran. One per run (``RunContext.in_flight``), connected to Celery's process-wide signals while an
    embedded worker runs, disconnected at the run's end."""

    def __init__(self):
        # Counts, not a set: a retry publishes the same id again before its first run has finished.
        self.ids: collections.Counter = collections.Counter()
        self.lock = threading.Lock()
        self.connected = False

    def connect(self) -> None:
        if self.connected:
            return
        from celery import signals

        signals.before_task_publish.connect(self._published, weak=False)
        for signal in _finish_signals():
            signal.connect(self._finished, weak=False)
        self.connected = True

    def disconnect(self) -> None:
        if not self.connected:
            return
        from celery import signals

        signals.before_task_publish.disconnect(self._published)
        for signal in _finish_signals():
            signal.disconnect(self._finished)
        self.connected = False

    def _published(self, sender=None, headers=None, body=None, **kwargs):
        task_id = (headers or {}).get("id")  # task protocol 2; protocol 1 has it in the body
        if task_id is None and isinstance(body, dict):
            task_id = body.get("id")
        if task_id:
            with self.lock:
                self.ids[task_id] += 1

    def _finished(self, sender=None, task_id=None, request=None, **kwargs):
        self.finished(task_id or getattr(request, "id", None))

    def finished(self, task_id: str | None) -> None:
        with self.lock:
            if self.ids.get(task_id, 0) > 1:
                self.ids[task_id] -= 1
            else:
                self.ids.pop(task_id, None)

    def empty(self) -> bool:
        with self.lock:
            return not self.ids

    def clear(self) -> None:
        with self.lock:
            self.ids.clear()


def _finish_signals() -> tuple:
    """Celery's signals that a task will not run (again) for its publish: it ran, or was revoked or dropped."""
    from celery import signals

    return (signals.task_postrun, signals.task_revoked, signals.task_unknown, signals.task_rejected)
