"""What a worker process's log says about tasks and its prefork children: read when a test failed.

``celery worker --loglevel INFO`` (the command ``workers/process.py`` runs) writes, in Celery's default
format ``[%(asctime)s: %(levelname)s/%(processName)s] %(message)s``, a line when its main process receives a
task (``Task name[id] received``), one when a child finishes it (``succeeded in``, ``raised unexpected:``,
``retry:``), one when a revoked task is discarded, and, from billiard, one when a child exits unexpectedly
(``Process 'ForkPoolWorker-1' pid:1234 exited with 'exitcode 13'``). Celery 5.3 to 5.7 write the same lines.
Times are the worker's local time, to the millisecond, as ``time.time()`` values here.
"""

from __future__ import annotations

import dataclasses
import re
import time

from pytest_celery_astra.workers.journal import TaskEvent

_LINE = re.compile(r"^\[(?P<when>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(?P<ms>\d{3}): (?P<level>\w+)/(?P<process>[^\]]+)\] "
                   r"(?P<message>.*)$")
_TASK = re.compile(r"^Task (?P<name>\S+?)\[(?P<id>[^\]]+)\] (?P<rest>.*)$")
_DISCARDED = re.compile(r"^Discarding revoked task: (?P<name>\S+?)\[(?P<id>[^\]]+)\]")
_EXIT = re.compile(r"^Process '(?P<child>[^']+)' pid:(?P<pid>\d+) exited with '(?P<status>[^']+)'")
_UNREGISTERED = re.compile(r"^Received unregistered task of type '(?P<name>[^']+)'")


@dataclasses.dataclass(frozen=True)
class ChildExit:
    """A prefork child that exited unexpectedly (billiard's line): its process name, pid and exit status."""

    at: float
    child: str
    pid: int
    status: str


@dataclasses.dataclass
class ProcessLog:
    """The facts of one worker process's log: per task id its events, the children that exited, and the task
    names it received without knowing them (with when)."""

    events: dict[str, list[TaskEvent]]
    exits: list[ChildExit]
    unregistered: list[tuple[float, str]]


def read_log(text: str, hostname: str, task_ids: set[str] | None = None) -> ProcessLog:
    """Parse ``text`` (a worker process's log) for the tasks in ``task_ids`` (all when None)."""
    log = ProcessLog({}, [], [])
    for line in text.splitlines():
        if not line.startswith("["):
            continue  # a traceback's or a banner's line
        match = _LINE.match(line)
        if match is None:
            continue
        message = match["message"]
        at = _when(match["when"], match["ms"])
        task = _TASK.match(message) or _DISCARDED.match(message)
        if task is not None:
            task_id = task["id"]
            if task_ids is not None and task_id not in task_ids:
                continue
            event = _task_event(at, hostname, match["process"], task.groupdict().get("rest"))
            if event is not None:
                log.events.setdefault(task_id, []).append(event)
            continue
        exited = _EXIT.match(message)
        if exited is not None:
            log.exits.append(ChildExit(at, exited["child"], int(exited["pid"]), exited["status"]))
            continue
        unknown = _UNREGISTERED.match(message)
        if unknown is not None:
            log.unregistered.append((at, unknown["name"]))
    return log


def _task_event(at: float, hostname: str, process: str, rest: str | None) -> TaskEvent | None:
    if rest is None:  # "Discarding revoked task"
        return TaskEvent(at, "revoked", hostname, f"discarded by {process}")
    if rest == "received":
        return TaskEvent(at, "received", hostname)
    if rest.startswith("succeeded in "):
        return TaskEvent(at, "succeeded", hostname, f"in {process}, {rest[len('succeeded in '):].split(':')[0]}")
    if rest.startswith("retry: "):
        return TaskEvent(at, "retry", hostname, f"in {process}: {rest[len('retry: '):][:300]}")
    if rest.startswith("raised "):
        detail = rest.split(": ", 1)[1] if ": " in rest else rest
        return TaskEvent(at, "failed", hostname, f"in {process}: {detail[:300]}")
    return None


def _when(stamp: str, milliseconds: str) -> float:
    """The log's local time as a ``time.time()`` value."""
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(milliseconds) / 1000
