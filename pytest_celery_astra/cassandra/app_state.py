"""What the plugin keeps for one Celery app it wired: one :class:`AppState`, in the app's configuration.

The app fixture attaches the run's state to the user's app (``app.conf["celery_astra_state"]``) and puts
back whatever was there before when it ends (a pytest run inside a test wires the same app again). The
result backend, the workers and the fixtures reach everything through :func:`state_of`; nothing else is
set on the user's app object. An app wired elsewhere (the app of a ``celery worker`` process) gets a fresh
state on first use.

It sits beside the result-row ledger, below its readers (the backend, the workers, ``celery_app.py``): the
worker wiring it holds is the app fixture's value, kept here without this module knowing its type.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from pytest_celery_astra.cassandra.result_rows import ResultRows

# The app configuration key the state lives under (a process-local object: never serialized).
CONF_KEY = "celery_astra_state"


@dataclass(eq=False)
class AppState:
    """The plugin's state for one app in this process."""

    # The result rows this process's backends wrote and are deleting (the run's ledger, shared by its apps).
    rows: ResultRows = field(default_factory=ResultRows)
    # What a `celery worker` process needs to wire the same app the same way: the app fixture's
    # workers.wiring.Wiring (held, never read, here; the process worker's factory reads it).
    wiring: object | None = None
    # The running worker's health check, called while .get() waits: a dead worker fails the test at once.
    health_check: Callable[[], None] | None = None
    # Why a .get() of this app timed out, in a sentence or two (the app fixture's run/why.py), or None when the
    # plugin saw nothing to say: called with the task id and the last row read (None: no row) by the backend.
    explain_timeout: Callable[[str, dict | None], str | None] | None = None
    # Whether an embedded (thread) worker stores this app's results in this process (and so wakes .get()).
    stores_here: bool = False
    # The thread opening the result backend's connection while the worker starts.
    backend_connecting: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"AppState(stores_here={self.stores_here}, wired={self.wiring is not None})"

    def __reduce__(self):
        # Process-local (locks, events, threads): a copy in another process starts afresh.
        return (AppState, ())


_ATTACH_LOCK = threading.Lock()


def state_of(app: Any) -> AppState:
    """The state the app fixture gave ``app``; an app wired elsewhere gets one of its own on first use."""
    state = app.conf.get(CONF_KEY)
    if state is None:
        with _ATTACH_LOCK:
            state = app.conf.get(CONF_KEY)
            if state is None:
                state = app.conf[CONF_KEY] = AppState()
    return state


def attach(app: Any, state: AppState) -> AppState | None:
    """Give ``app`` ``state``; returns the state it had (for :func:`restore`)."""
    before = app.conf.get(CONF_KEY)
    app.conf[CONF_KEY] = state
    return before


def restore(app: Any, before: AppState | None) -> None:
    """Put back the state :func:`attach` replaced (none: the key goes)."""
    if before is None:
        app.conf.changes.pop(CONF_KEY, None)
    else:
        app.conf[CONF_KEY] = before


def rows_of(app: Any) -> ResultRows:
    """The result-row ledger of ``app`` (the run's, given by the app fixture)."""
    return state_of(app).rows
