"""What a test enqueued: every task published in this process, from Celery's ``before_task_publish``.

Celery's maintainers advise against ``task_always_eager`` for testing; recording what is published
lets a test assert which tasks code enqueues (name, arguments, queue, ETA) whether or not a worker
then runs them.
"""

from __future__ import annotations

import dataclasses
import datetime
import threading
from typing import Any, Iterator, cast


@dataclasses.dataclass(frozen=True)
class SentTask:
    """One published task, as the broker received it."""

    id: str
    name: str
    args: tuple
    kwargs: dict
    queue: str | None
    eta: datetime.datetime | None
    countdown: float | None  # seconds from publishing to the ETA, when there is one
    headers: dict = dataclasses.field(repr=False, compare=False)

    def __repr__(self) -> str:
        call = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        when = f", countdown={self.countdown:.3g}" if self.countdown is not None else ""
        return f"<SentTask {self.name}({call}) queue={self.queue!r}{when} id={self.id}>"


def sent_task(sender, body, headers, routing_key, declare,
              published: datetime.datetime | None = None) -> SentTask:
    """A :class:`SentTask` from ``before_task_publish``'s arguments; ``published`` (default: now) is when the
    message was published, which a countdown is measured from."""
    headers = dict(headers or {})
    if isinstance(body, dict):  # task protocol 1
        args, kwargs = body.get("args", ()), body.get("kwargs", {})
        task_id, name, eta = body.get("id"), body.get("task", sender), body.get("eta")
    else:  # task protocol 2: (args, kwargs, embed)
        args, kwargs = body[0], body[1]
        task_id, name, eta = headers.get("id"), headers.get("task", sender), headers.get("eta")
    if published is None:
        published = datetime.datetime.now(datetime.timezone.utc)
    when = datetime.datetime.fromisoformat(eta) if isinstance(eta, str) else eta
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    queues = [queue.name for queue in declare or () if getattr(queue, "name", None)]
    return SentTask(
        id=cast(str, task_id), name=name, args=tuple(args or ()), kwargs=dict(kwargs or {}),
        queue=queues[0] if queues else routing_key, eta=when,
        countdown=None if when is None else (when - published).total_seconds(), headers=headers)


class SentTasks:
    """The tasks published while recording, in order: a read-only sequence of :class:`SentTask`."""

    def __init__(self):
        self._tasks: list[SentTask] = []
        self._lock = threading.Lock()

    def _record(self, sender=None, body=None, headers=None, routing_key=None, declare=None, **_: Any) -> None:
        task = sent_task(sender, body, headers, routing_key, declare)
        with self._lock:
            self._tasks.append(task)

    def start(self) -> "SentTasks":
        from celery import signals

        signals.before_task_publish.connect(self._record, weak=False)
        return self

    def stop(self) -> None:
        from celery import signals

        signals.before_task_publish.disconnect(self._record)

    @property
    def names(self) -> list[str]:
        return [task.name for task in self]

    def of(self, name: str) -> list[SentTask]:
        """The recorded tasks named ``name``."""
        return [task for task in self if task.name == name]

    def clear(self) -> None:
        with self._lock:
            self._tasks.clear()

    def __iter__(self) -> Iterator[SentTask]:
        with self._lock:
            return iter(list(self._tasks))

    def __len__(self) -> int:
        return len(self._tasks)

    def __getitem__(self, index):
        return self._tasks[index]

    def __repr__(self) -> str:
        return f"SentTasks({list(self)!r})"
