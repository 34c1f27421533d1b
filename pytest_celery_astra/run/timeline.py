"""A failing test's report section: what each task it sent did, with millisecond offsets from its start.

Per task: its name, id, queue, the worker that took it, then every transition the plugin saw — published (in
this process), received, started, succeeded, failed (with the exception), retried, revoked, unknown to the
worker — from the run's journal (a worker thread's signals, ``workers/journal.py``) and each worker process's
log (``workers/process_log.py``, read here only). A task with no outcome gets ``run/why.py``'s sentence, from
what is known without asking the broker. Secrets are masked. Built only for a failing test that sent a task:
a passing test costs nothing here.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_celery_astra.masking import Secret, mask_text
from pytest_celery_astra.run import registry
from pytest_celery_astra.run.context import RUN_CONTEXT_KEY
from pytest_celery_astra.workers.journal import TaskEvent, TaskRecord
from pytest_celery_astra.workers.process_log import ProcessLog, read_log

TITLE = "pytest-celery-astra: the tasks this test sent"
# Seconds to ask a worker process which tasks it knows (for a task it did not know).
REGISTERED_TIMEOUT = 0.5
_FINAL = ("succeeded", "failed", "revoked", "unknown", "rejected")


def report_section(config: pytest.Config) -> tuple[str, str] | None:
    """(title, text) for the current test's report, or None when it sent no task."""
    context = config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None:
        return None
    records = context.journal.records()
    if not records:
        return None
    workers: list = config.stash.get(registry.RUNNING_WORKERS_KEY, [])
    apps: list = config.stash.get(registry.WIRED_APPS_KEY, [])
    ids = {record.id for record in records}
    logs = {worker.hostname: _read(worker, ids) for worker in workers if hasattr(worker, "log_path")}
    started = context.journal.started
    lines = [f"{len(records)} task{'s' if len(records) != 1 else ''} (times from the test's start):"]
    for record in records:
        _merge(record, logs, workers)
        lines += describe(record, started, _why(config, apps, record))
    secrets = [value for value in context.settings.values.values() if isinstance(value, Secret)]
    for app in apps:
        wiring = _wiring(app)
        secrets += wiring.secrets() if wiring is not None and hasattr(wiring, "secrets") else []
    return TITLE, mask_text("\n".join(lines), secrets)


def describe(record: TaskRecord, started: float, why: str | None = None) -> list[str]:
    """The lines of one task: a heading, then one line per event."""
    sent = record.sent
    heading = f"{sent.name}[{sent.id}] queue {sent.queue!r}"
    if record.worker:
        heading += f", taken by {record.worker}"
    if record.retries:
        heading += f", retried {record.retries} time{'s' if record.retries != 1 else ''}"
    lines = [heading]
    for event in record.events:
        lines.append(f"  {(event.at - started) * 1000:+9.0f} ms  {_event_text(event)}")
    if why:
        lines.append(f"  no result: {why}")
    return lines


def _event_text(event: TaskEvent) -> str:
    if event.what == "received" and event.worker:
        return f"received by {event.worker}"
    if event.what == "started":
        return f"started (thread {event.detail})" if event.detail else "started"
    if event.what == "unknown":
        return f"not registered on {event.worker or 'the worker'}: {event.detail}"
    return f"{event.what}: {event.detail}" if event.what in ("failed", "retry", "rejected") else (
        f"{event.what} {event.detail}".rstrip())


def _read(worker, ids: set[str]) -> ProcessLog:
    path = worker.log_path
    try:
        text = path.read_text(errors="replace") if path is not None and path.exists() else ""
    except OSError:
        text = ""
    return read_log(text, worker.hostname, ids)


def _merge(record: TaskRecord, logs: dict[str, ProcessLog], workers: list) -> None:
    """Add what each worker process's log says about the task (received, finished, unregistered); a worker
    that did not know the task says which it knows."""
    by_name = {worker.hostname: worker for worker in workers}
    events = [TaskEvent(event.at, "unknown", event.worker, _knows(by_name.get(event.worker or "")))
              if event.what == "unknown" else event for event in record.events]
    for hostname, log in logs.items():
        events.extend(log.events.get(record.id, ()))
        events.extend(TaskEvent(at, "unknown", hostname, _knows(by_name.get(hostname)))
                      for at, name in log.unregistered if name == record.sent.name and at >= record.published - 0.001)
    record.events = sorted(events, key=lambda event: event.at)


def _knows(worker) -> str:
    """``it has a, b, c``: the tasks the worker knows (a worker process is asked; a thread's are this app's)."""
    if worker is None:
        return "it does not know the task"
    names: list[str] | None = None
    if hasattr(worker, "log_path"):
        try:
            inspect = worker.app.control.inspect(destination=[worker.hostname], timeout=REGISTERED_TIMEOUT)
            names = (inspect.registered() or {}).get(worker.hostname)
        except Exception:  # noqa: BLE001 - then the tasks of the app in this process
            names = None
    if names is None:
        names = [name for name in worker.app.tasks if not name.startswith("celery.")]
    names = sorted(name for name in names if not name.startswith(("celery.", "pytest_celery_astra.")))
    return f"it has {', '.join(names) if names else 'no task of its own'}"


def _why(config: pytest.Config, apps: list, record: TaskRecord) -> str | None:
    """run/why.py's sentence for a task without an outcome, from what is known here (no broker call)."""
    if record.last(*_FINAL) is not None:
        return None
    from pytest_celery_astra.run.why import explain, gather

    app = next((app for app in apps if record.sent.name in app.tasks), apps[0] if apps else None)
    if app is None:
        return None
    try:
        return explain(gather(config, app, record.id, None, probe=False, record=record))
    except Exception:  # noqa: BLE001 - the section still lists what happened
        return None


def _wiring(app: Any):
    from pytest_celery_astra.cassandra.app_state import state_of

    return state_of(app).wiring
