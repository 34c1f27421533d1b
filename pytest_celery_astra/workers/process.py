"""A real ``celery worker`` process (prefork by default), wired to the test broker and Cassandra.

The walkthrough's ``celery -A tasks worker`` and production run the prefork pool, where what breaks only
there breaks: a driver Session created before the fork, results pickled across processes,
``worker_process_init`` hooks. The command is Celery's own, with ``-A pytest_celery_astra.workers.process_app``
(the user's app, wired as in the test process). Ready once it answers a ping addressed to its node name;
stopped with a warm shutdown, then its whole process group is killed; it dies with pytest (Linux
parent-death signal, and its own process group removed at the end).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_celery_astra.cassandra.app_state import state_of
from pytest_celery_astra.celery_app import purge_queues
from pytest_celery_astra.errors import EmbeddedWorkerError
from pytest_celery_astra.workers.held import DROP_HELD_COMMAND

if TYPE_CHECKING:
    from pytest_celery_astra.workers.wiring import Wiring

LOG_TAIL_LINES = 60
# Written beside the wiring by the worker process: task modules it could not import (process_app.py).
IMPORT_PROBLEMS = "import-problems.txt"
# A task of the worker process only (process_app.py), on a queue of its own that it consumes only while
# probed (an extra queue would change how it shares a Redis queue with a thread worker): after a Cassandra
# fault, each child (or thread) reads through its own result backend, then says so in a file (no result).
BACKEND_PROBE = "pytest_celery_astra.backend_probe"
# A child busy with a test's task cannot take a probe: past this, the children that answered are enough.
ALL_CHILDREN_WAIT = 10.0


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM this process when the pytest process that started it dies (even by SIGKILL)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the process group is still removed at the end
        pass


# Rounds of "idle, and a purge found nothing" in a row that settle a worker process (ProcessWorker.settle).
SETTLED_ROUNDS = 2


class ProcessWorker:
    """``celery worker`` in a subprocess, for one app fixture of this pytest process (a :class:`~.protocol.Worker`)."""

    in_this_process = False

    def __init__(self, app, wiring: "Wiring", hostname: str, pool: str = "prefork", concurrency: int = 2,
                 queues: tuple[str, ...] = (), start_timeout: float = 60.0, stop_timeout: float = 20.0,
                 directory_parent: Path | None = None):
        self.app = app
        self.wiring = wiring
        self.hostname = hostname
        self.pool = pool
        self.concurrency = concurrency
        self.queues = queues
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None
        # Where the private directory (wiring and log) is made: the run's state directory, which the run
        # removes at its end and a later run reaps if this one was killed.
        self.directory_parent = directory_parent
        self.fixturename: str | None = None  # the fixture that runs it (standby.py)
        self.standing_by = False  # not consuming its queues, for a test that did not ask for it (standby.py)
        self.dropped: set[str] = set()  # held tasks dropped after their test (canceled, they stay listed until their ETA)
        self.directory: Path | None = None
        self.seconds_to_start: float | None = None
        self.seconds_to_stop: float | None = None
        self.failure_reported = False

    def __repr__(self) -> str:
        alive = self.process is not None and self.process.poll() is None
        return f"ProcessWorker({self.hostname!r}, pool={self.pool!r}, concurrency={self.concurrency}, alive={alive})"

    @property
    def consumed_queues(self) -> list[str]:
        default = self.app.conf.task_default_queue
        return [default, *[queue for queue in self.queues if queue != default]]

    @property
    def log_path(self) -> Path | None:
        return None if self.directory is None else self.directory / "worker.log"

    @property
    def probe_queue(self) -> str:
        """The queue of :data:`BACKEND_PROBE` tasks, which only this worker consumes."""
        return f"celery_astra_probe.{self.hostname}"

    @property
    def children(self) -> int:
        """Processes (or threads) that run tasks, each with its own result backend."""
        return 1 if self.pool == "solo" else self.concurrency

    def command(self) -> list[str]:
        return [*_celery_program(), "-A", "pytest_celery_astra.workers.process_app", "worker",
                "--pool", self.pool, "--concurrency", str(self.concurrency), "--hostname", self.hostname,
                "--queues", ",".join(self.consumed_queues), "--loglevel", "INFO",
                "--without-heartbeat", "--without-mingle", "--without-gossip"]

    def start(self) -> "ProcessWorker":
        started = time.monotonic()
        # 0700; kept until stop(): whatever starts `celery worker` again (Celery re-executes itself on
        # SIGHUP) reads the same wiring.
        self.directory = Path(tempfile.mkdtemp(prefix="pytest-celery-astra-worker-", dir=self.directory_parent))
        # The file holds no secret: they travel in the child's environment (Wiring.write).
        wiring = dataclasses.replace(self.wiring, task_modules=task_modules(self.app))
        env = {**os.environ, **wiring.write(self.directory / "config.json"),
               # the user's modules are importable here through pytest's pythonpath / rootdir insertion
               "PYTHONPATH": os.pathsep.join(path for path in sys.path if path)}
        env.pop("PYTEST_XDIST_WORKER", None)  # the worker is not a test process
        assert self.log_path is not None
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                self.command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                start_new_session=True, preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
        deadline = started + self.start_timeout
        try:
            while not self._answers_ping():
                if self.process.poll() is not None:
                    raise EmbeddedWorkerError(
                        f"pytest-celery-astra: the worker process (celery -A pytest_celery_astra.workers.process_app worker) "
                        f"exited with {self.process.returncode} while starting; its log:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise EmbeddedWorkerError(
                        f"pytest-celery-astra: the worker process {self.hostname} did not answer a ping within "
                        f"{self.start_timeout:g} s; raise --celery-astra-worker-timeout. Its log:\n{self.log_tail()}")
        except BaseException:
            self._kill_group()
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        state_of(self.app).health_check = self.check
        self.seconds_to_start = time.monotonic() - started
        problems = self.directory / IMPORT_PROBLEMS
        if problems.exists():  # imported here: this module is also imported by the worker process
            import warnings

            import pytest

            for problem in problems.read_text().splitlines():
                warnings.warn(pytest.PytestWarning(problem))
        return self

    def _answers_ping(self) -> bool:
        try:
            replies = self.app.control.ping(destination=[self.hostname], timeout=0.25)
        except Exception:  # noqa: BLE001 - the broker connection is not up yet either
            time.sleep(0.1)
            return False
        return any(self.hostname in reply for reply in replies or ())

    def settle(self, timeout: float) -> bool:
        """Purge the worker's queues, then wait until it runs nothing and has nothing reserved; tasks held
        for an ETA or countdown are dropped in the worker (workers/held.py): what a test sent never runs, nor
        is recorded, during the next one. Returns once the worker has confirmed the drop.

        A prefork child publishes what follows its task (a chain's next link, a retry) before the worker's
        main process hears the task finished, so "idle" can be seen while that message is in the queue, or on
        its way to the worker (Redis: popped, not yet handled). Settled is therefore idle in two rounds in a
        row with a purge between that found nothing; one that finds something starts the count again."""
        if self.process is None or self.process.poll() is not None:
            return True
        deadline = time.monotonic() + timeout
        purge_queues(self.app, self.consumed_queues)
        quiet_rounds = 0
        while quiet_rounds < SETTLED_ROUNDS:
            if not self._idle_once(max(0.1, deadline - time.monotonic())):
                return False
            quiet_rounds = 0 if purge_queues(self.app, self.consumed_queues) else quiet_rounds + 1
        return True

    def _idle_once(self, timeout: float) -> bool:
        try:
            return self._wait_idle(self.app.control.inspect(destination=[self.hostname], timeout=1.0), timeout)
        except Exception:  # noqa: BLE001 - a pooled connection the broker closed (a restart): once more, afresh
            with self.app.connection_for_write() as connection:
                return self._wait_idle(
                    self.app.control.inspect(destination=[self.hostname], timeout=1.0, connection=connection), timeout)

    def _wait_idle(self, inspect, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any((inspect.active() or {}).values()) and not any((inspect.reserved() or {}).values()):
                # Idle: what is left is held for an ETA (received before the purge, so no new one comes).
                held = {task["request"]["id"] for tasks in (inspect.scheduled() or {}).values() for task in tasks}
                if held - self.dropped:
                    replies = self.app.control.broadcast(
                        DROP_HELD_COMMAND, destination=[self.hostname], reply=True,
                        timeout=max(0.1, min(5.0, deadline - time.monotonic())), connection=inspect.connection)
                    for reply in replies or ():
                        self.dropped.update(*reply.values())
                    return not (held - self.dropped)
                return True
            time.sleep(0.005)
        return False

    def probe_backends(self, timeout: float) -> None:
        """After a Cassandra fault: return once the result backend of every child (or thread) has answered a
        read — as a thread worker's backend does in this process — so the next task's result is not stored
        by a driver that has not reconnected yet. A child busy with a task for over
        :data:`ALL_CHILDREN_WAIT` is left to reconnect by itself (the driver's reconnection policy)."""
        if self.process is None or self.process.poll() is not None:
            return
        started = time.monotonic()
        barrier = Path(tempfile.mkdtemp(prefix="probe-", dir=self.directory))
        control = self.app.control
        try:
            self._consume_probe_queue(started + timeout)
            for _ in range(self.children):
                self.app.send_task(BACKEND_PROBE, (str(barrier), self.children, timeout), queue=self.probe_queue,
                                   ignore_result=True)
            while True:
                answered = len(list(barrier.glob("answered-*")))
                waited = time.monotonic() - started
                if answered >= self.children or (answered and waited > ALL_CHILDREN_WAIT):
                    return
                self.check()
                if waited > timeout:
                    raise EmbeddedWorkerError(
                        f"pytest-celery-astra: no result backend of the worker process {self.hostname} answered a "
                        f"read within {timeout:g} s; its log:\n{self.log_tail()}")
                time.sleep(0.01)
        finally:
            shutil.rmtree(barrier, ignore_errors=True)  # releases the children that hold
            try:
                control.cancel_consumer(self.probe_queue, destination=[self.hostname], reply=True, timeout=5.0)
            except Exception:  # noqa: BLE001 - a broker gone meanwhile: the queue is the worker's own anyway
                pass

    def _consume_probe_queue(self, deadline: float) -> None:
        """Until the worker confirms it consumes the probe queue (its remote control may still be
        reconnecting to the broker)."""
        while True:
            replies = self.app.control.add_consumer(self.probe_queue, destination=[self.hostname], reply=True,
                                                    timeout=1.0)
            if any(self.hostname in reply for reply in replies or ()):
                return
            self.check()
            if time.monotonic() > deadline:
                raise EmbeddedWorkerError(
                    f"pytest-celery-astra: the worker process {self.hostname} did not answer remote control "
                    f"(add_consumer) after the fault; its log:\n{self.log_tail()}")

    def check(self) -> None:
        """Raise :class:`EmbeddedWorkerError` if the worker process died: with its log the first time
        (the test that was running), then the one sentence of :meth:`gone`."""
        if self.process is not None and self.process.poll() is not None:
            if self.failure_reported:
                raise EmbeddedWorkerError(self.gone())
            self.failure_reported = True
            raise EmbeddedWorkerError(
                f"pytest-celery-astra: the worker process {self.hostname} exited with {self.process.returncode}; "
                f"its log:\n{self.log_tail()}")

    def gone(self) -> str | None:
        """Once its death was reported with its log: why the tests after it cannot use it, in one sentence."""
        if self.process is None or self.process.poll() is None or not self.failure_reported:
            return None
        return (f"pytest-celery-astra: the worker process {self.hostname} exited with {self.process.returncode} "
                f"during an earlier test (its log is in that test's report), so this test cannot use it; the "
                f"worker is not restarted, to keep what killed it visible.")

    def check_unreported(self) -> None:
        if not self.failure_reported:
            self.check()

    def stop(self) -> None:
        """Warm shutdown (SIGTERM: running tasks finish), then the whole process group is killed."""
        if self.process is None:
            return
        started = time.monotonic()
        state_of(self.app).health_check = None
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                # The worker notices the signal's flag only when its event loop wakes, which an idle
                # worker does every ~10 s; a control message addressed to it wakes it at once.
                try:
                    self.app.control.ping(destination=[self.hostname], timeout=0.05)
                except Exception:  # noqa: BLE001 - the broker is gone: the timeout below still bounds it
                    pass
                try:
                    self.process.wait(self.stop_timeout)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            self._kill_group()
            self.seconds_to_stop = time.monotonic() - started
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)
            self.process = None

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        from pytest_celery_astra.masking import mask_text

        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        text = self.log_path.read_text(errors="replace")
        return mask_text("\n".join(text.splitlines()[-lines:]), self.wiring.secrets())

    def _kill_group(self) -> None:
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # the prefork children too
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            pass


def _celery_program() -> list[str]:
    """The `celery` command as users run it: the console script beside this interpreter. Not ``python -m
    celery``: on SIGHUP Celery re-executes ``python sys.argv...``, and ``celery/__main__.py`` run as a
    script fails on its relative import, so a worker restarted in place would be gone."""
    script = Path(sys.executable).with_name("celery")
    return [sys.executable, str(script)] if script.is_file() else [sys.executable, "-m", "celery"]


def task_modules(app) -> dict[str, list[str]]:
    """Modules that define the app's tasks in this process (test modules too: pytest imported them while
    collecting), with their task names: the worker process imports them, so a task defined in a test
    module runs there as it does on the thread worker."""
    modules: dict[str, list[str]] = {}
    for name, task in sorted(app.tasks.items()):
        module = getattr(task, "__module__", None) or ""
        if module and not module.startswith("celery.") and module != "__main__":
            modules.setdefault(module, []).append(name)
    return modules
