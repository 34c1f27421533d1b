"""What the rest of the plugin may ask of a worker it runs: one protocol for the worker thread
(:class:`~pytest_celery_astra.workers.thread.EmbeddedWorker`) and the worker process
(:class:`~pytest_celery_astra.workers.process.ProcessWorker`), so that the per-test steps, standby, the
recovery after a fault and a timeout's explanation use the same names for both, never ``isinstance`` or
``getattr`` with a default."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol


class Worker(Protocol):
    """A running worker of one app, registered in ``run/registry.py`` by the factory that started it."""

    # A thread of this pytest process (its stores wake a .get() here, its tasks' rows are known by id), or a
    # `celery worker` process (its rows are found by reading; it has a log of its own).
    in_this_process: bool
    app: Any
    hostname: str
    pool: str
    concurrency: int
    queues: tuple[str, ...]
    fixturename: str | None  # the fixture that runs it (standby.py); None for one the plugin did not register
    standing_by: bool  # not consuming its queues, for a test that did not ask for it (standby.py)
    failure_reported: bool
    seconds_to_start: float | None
    seconds_to_stop: float | None

    @property
    def consumed_queues(self) -> list[str]: ...

    @property
    def log_path(self) -> Path | None:
        """Its own log file (a worker process's), or None: a worker thread logs where the test process does."""

    def start(self) -> Worker: ...

    def stop(self) -> None: ...

    def settle(self, timeout: float) -> bool:
        """After a test: its queues purged, nothing of the test running or reserved; False if still busy."""

    def check(self) -> None:
        """Raise EmbeddedWorkerError with the cause if it died."""

    def check_unreported(self) -> None:
        """:meth:`check`, unless its death was reported already."""

    def gone(self) -> str | None:
        """Once its death was reported: why later tests cannot use it, in one sentence; else None."""
