"""A Celery worker in a thread of the test process: bounded start, loud failure, fast stop."""

from __future__ import annotations

import socket
import sys
import threading
import time
import traceback
from pathlib import Path

from celery import Celery
from celery.contrib.testing.worker import TestWorkController
from celery.exceptions import WorkerTerminate
from celery.worker import state as worker_state
from kombu.asynchronous import set_event_loop

from pytest_celery_astra.cassandra.app_state import state_of
from pytest_celery_astra.celery_app import purge_queues
from pytest_celery_astra.errors import EmbeddedWorkerError
from pytest_celery_astra.internals import allow_joining_results, worker_controller_started
from pytest_celery_astra.workers.held import drop_held_tasks
from pytest_celery_astra.workers.in_flight import InFlight

# How often, by default, the worker's event loop wakes to look at the stop flag (``EmbeddedWorker(wake_interval=)``).
# kombu's hub otherwise sleeps in epoll for up to 10 s, which is why Celery's own start_worker() takes ~10 s to
# stop: it only sets a flag the loop reads after its poll.
WAKE_INTERVAL = 0.05
# Settle passes after a test that left messages in the broker (settle_all): the second catches what the first purge
# overtook; a third only if the second still purged something.
SETTLE_PASSES = 3




class _ThreadWorkController(TestWorkController):
    """Celery's test worker, remembering why it died and waking its loop often.

    It stops on its own event, not on Celery's process-wide ``should_terminate``
    flag, so stopping one embedded worker never stops another.
    """

    failure: BaseException | None = None

    def __init__(self, *args, in_flight: InFlight | None = None, wake_interval: float = WAKE_INTERVAL,
                 task_hostname: _TaskHostname | None = None, **kwargs):
        self.in_flight = InFlight() if in_flight is None else in_flight
        self.wake_interval = wake_interval
        self.task_hostname = task_hostname
        self.stop_requested = threading.Event()
        self.drop_held_requested = threading.Event()
        self.consumer = None
        self.ticks = 0
        # A socket pair the event loop reads: a byte sent from another thread ends its wait in poll() at once
        # (otherwise a stop or a settle waits for the next wake_interval timer). Sockets, not a pipe: the
        # hub's select() takes only sockets on Windows.
        self._poke_read, self._poke_write = socket.socketpair()
        self._poke_read.setblocking(False)
        self._poke_write.setblocking(False)
        super().__init__(*args, **kwargs)

    def poke(self) -> None:
        """From any thread: have the worker's event loop turn (and run :meth:`wake`) now."""
        try:
            self._poke_write.send(b"!")
        except OSError:  # full (a turn is due anyway) or closed (the worker is gone)
            pass

    def _on_poke(self) -> None:
        try:
            while self._poke_read.recv(4096):
                pass
        except OSError:  # drained (BlockingIOError) or closed
            pass
        self.wake()

    def close_poke_pipe(self) -> None:
        """Once the worker thread has ended; closing twice is harmless."""
        self._poke_read.close()
        self._poke_write.close()

    def wake(self) -> None:
        """Runs in the worker thread every ``wake_interval``; leaves the loop once a stop is requested."""
        if self.drop_held_requested.is_set():
            _drop_held_tasks(self.consumer, self.in_flight)
            self.drop_held_requested.clear()
        self.ticks += 1  # one more turn of the event loop: what was readable has been read
        if self.stop_requested.is_set():
            raise WorkerTerminate(0)

    def start(self):
        # current_app is per thread: the worker's own thread always sees the worker's app,
        # whether or not that app is Celery's default.
        _in_worker_thread(self.app, self.hostname, self.task_hostname)
        try:
            self.blueprint.start(self)
        except WorkerTerminate:
            self.terminate()
        except BaseException as error:  # recorded, re-raised in the test thread
            self.failure = error
            try:
                self.stop(exitcode=1)
            except Exception:
                pass

    def register_with_event_loop(self, hub):
        # Runs in the worker thread each time the consumer's event loop (re)starts, also after a
        # reconnection to the broker (on_consumer_ready runs once only): the one place where adding a
        # timer to the hub is thread-safe. Without it a reconnected worker would never see its stop event.
        super().register_with_event_loop(hub)
        previous = getattr(self, "_wake_entry", None)
        if previous is not None:
            previous.cancel()
        self._wake_entry = hub.call_repeatedly(self.wake_interval, self.wake)
        hub.add_reader(self._poke_read.fileno(), self._on_poke)

    def on_consumer_ready(self, consumer):
        self.consumer = consumer
        if consumer.hub is None:  # a transport without an event loop (synloop)
            _shorten_drain_timeout(consumer.connection, self.wake, self.wake_interval)
        super().on_consumer_ready(consumer)


def _drop_held_tasks(consumer, in_flight: InFlight) -> None:
    """In the worker thread: drop the tasks held for an ETA or countdown (workers/held.py); none is in flight."""
    for task_id in drop_held_tasks(consumer):
        in_flight.finished(task_id)


def _shorten_drain_timeout(connection, wake, interval: float) -> None:
    # Transports without an event loop (memory://) block in drain_events for
    # 2 s per cycle; cap it so a stop is seen within about ``interval``.
    original = connection.drain_events

    def drain_events(timeout=None, **kwargs):
        wake()
        return original(timeout=interval if timeout is None else min(timeout, interval), **kwargs)

    connection.drain_events = drain_events


class _TaskHostname:
    """One embedded worker's ``task_prerun`` receiver: ``self.request.hostname`` is the worker's node name,
    as under ``celery worker``, for tasks run in the threads it marked (its own thread, its pool's threads).

    Celery's CLI worker sets it process-wide (setup_worker_optimizations); a test worker traces tasks
    with the machine's host name instead, and several embedded workers share one process. Connected while
    the worker runs (:meth:`EmbeddedWorker.start` to :meth:`EmbeddedWorker.stop`), then disconnected."""

    def __init__(self) -> None:
        self._threads = threading.local()  # .hostname in the threads whose tasks are this worker's
        self.dispatch_uid = f"celery-astra-task-hostname-{id(self)}"
        self.connected = False

    def mark_current_thread(self, hostname: str) -> None:
        self._threads.hostname = hostname

    def __call__(self, task=None, **_kwargs) -> None:
        hostname = getattr(self._threads, "hostname", None)
        if hostname is not None and task is not None:
            task.request.hostname = hostname

    def connect(self) -> None:
        from celery import signals

        signals.task_prerun.connect(self, weak=False, dispatch_uid=self.dispatch_uid)
        self.connected = True

    def disconnect(self) -> None:
        from celery import signals

        signals.task_prerun.disconnect(dispatch_uid=self.dispatch_uid)
        self.connected = False


def _in_worker_thread(app: Celery, hostname: str, task_hostname: _TaskHostname | None) -> None:
    """Mark the calling thread as the worker's: its current_app and the node name its tasks see."""
    app.set_current()
    if task_hostname is not None:
        task_hostname.mark_current_thread(hostname)


def _pool_class(pool: str, app: Celery, hostname: str, task_hostname: _TaskHostname | None = None):
    """The pool to run: for ``threads``, Celery's thread pool whose threads see ``app`` as current_app.

    Celery runs a task through ``trace_task_ret``, which takes the app from current_app of the
    pool's thread; without this, a second app's tasks would run against the default app.
    """
    if pool != "threads":
        return pool
    from concurrent.futures import ThreadPoolExecutor

    from celery.concurrency.thread import TaskPool

    class AppThreadPool(TaskPool):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.executor = ThreadPoolExecutor(max_workers=self.limit, initializer=_in_worker_thread,
                                               initargs=(app, hostname, task_hostname))

    return AppThreadPool


def settle_all(workers: list, timeout: float, in_flight: InFlight) -> list:
    """Settle every running embedded worker (see :meth:`EmbeddedWorker.settle`); return those still busy.

    Free after the usual test: when every task published in this process has finished, nothing can
    still arrive, and there is nothing to purge or wait for."""
    if in_flight.empty() and not (worker_state.active_requests or worker_state.reserved_requests):
        return []
    for _ in range(SETTLE_PASSES):
        busy = [embedded for embedded in workers if not embedded.settle(timeout)]
        # A pass that purged messages ran while the test's last publishes were still reaching the broker: a publish
        # and the purge travel on different connections, which RabbitMQ does not order, so a message routed just after
        # the purge is delivered to a worker after its idle check. One more pass sees it (purged again, or run while it
        # waits); a pass that purges nothing and finds every worker idle ends it.
        if busy or not any(embedded.purged for embedded in workers):
            break
    in_flight.clear()  # purged, or ran: none of them can arrive any more
    return busy


class EmbeddedWorker:
    """Runs ``app``'s tasks in a daemon thread until :meth:`stop` (a :class:`~.protocol.Worker`).

    :meth:`check` raises :class:`EmbeddedWorkerError` with the cause if the
    thread died; the plugin calls it while tests wait for results and after
    each test.
    """

    in_this_process = True

    def __init__(self, app: Celery, hostname: str, pool: str = "solo", concurrency: int = 1,
                 queues: tuple[str, ...] = (), start_timeout: float = 20.0, stop_timeout: float = 20.0,
                 loglevel: str = "WARNING", make_default: bool = True, in_flight: InFlight | None = None,
                 logfile: str | None = None, without_heartbeat: bool = True, wake_interval: float = WAKE_INTERVAL):
        self.app = app
        # The run's record of tasks still to run (RunContext.in_flight); a worker made outside a run keeps its own.
        self.in_flight = InFlight() if in_flight is None else in_flight
        self.hostname = hostname
        self.pool = pool
        self.concurrency = concurrency
        self.queues = queues
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.loglevel = loglevel
        self.logfile = logfile
        self.without_heartbeat = without_heartbeat
        # How often its event loop turns without I/O (a stop, settle or cancel pokes it at once anyway).
        self.wake_interval = wake_interval
        self.task_hostname = _TaskHostname()  # connected from start() to stop()
        # Only the plugin's own worker makes its app Celery's default; a second app made with
        # the factories must not take over ``current_app`` for the first one's tasks.
        self.make_default = make_default
        self.fixturename: str | None = None  # the fixture that runs it (standby.py)
        self.standing_by = False  # not consuming its queues, for a test that did not ask for it (standby.py)
        self.controller: _ThreadWorkController | None = None
        self.thread: threading.Thread | None = None
        self.seconds_to_start: float | None = None
        self.failure_reported = False
        self.seconds_to_stop: float | None = None
        self.purged = 0  # messages its last settle() purged from its queues

    def __repr__(self) -> str:
        alive = self.thread is not None and self.thread.is_alive()
        return f"EmbeddedWorker({self.hostname!r}, pool={self.pool!r}, alive={alive})"

    @property
    def consumed_queues(self) -> list[str]:
        return [self.app.conf.task_default_queue, *[q for q in self.queues if q != self.app.conf.task_default_queue]]

    @property
    def log_path(self) -> Path | None:
        return None  # it logs where the test process does

    def gone(self) -> str | None:
        return None  # a dead worker thread is reported by check(), every time

    def start(self) -> "EmbeddedWorker":
        started = time.monotonic()
        self.in_flight.connect()
        self.task_hostname.connect()
        self.app.finalize()
        if self.make_default:
            self.app.set_current()
            self.app.set_default()
        # Celery's Hub step reuses kombu's process-wide event loop when one exists: a second
        # embedded worker would run on the first one's loop and never become ready. Each gets its own.
        set_event_loop(None)
        self.controller = _ThreadWorkController(
            app=self.app, hostname=self.hostname, pool=_pool_class(self.pool, self.app, self.hostname, self.task_hostname),
            concurrency=self.concurrency, in_flight=self.in_flight, wake_interval=self.wake_interval,
            task_hostname=self.task_hostname,
            loglevel=self.loglevel, logfile=self.logfile, ready_callback=None, queues=self.consumed_queues,
            without_heartbeat=self.without_heartbeat, without_mingle=True, without_gossip=True,
        )
        self.thread = threading.Thread(target=self.controller.start, name="celery-astra-worker", daemon=True)
        self.thread.start()
        deadline = started + self.start_timeout
        try:
            while not worker_controller_started(self.controller).wait(0.05):
                if not self.thread.is_alive() or self.controller.failure is not None:
                    self._raise_failure("died while starting")
                if time.monotonic() > deadline:
                    self._abandon()
                    raise EmbeddedWorkerError(
                        f"pytest-celery-astra: the embedded worker did not become ready within "
                        f"{self.start_timeout:g} s (broker {self._broker()}; registered tasks: "
                        f"{', '.join(self.registered_tasks()) or 'none'}); check the broker or raise "
                        f"--celery-astra-worker-timeout.")
        except BaseException:
            if not self.thread.is_alive():  # never stopped by stop(): its pipe is closed here
                self.controller.close_poke_pipe()
            self.task_hostname.disconnect()  # an abandoned worker's tasks need no node name
            raise
        # Starting a worker marks this process as a worker, where .get() is
        # forbidden; the tests run in another thread and must be allowed to wait.
        allow_joining_results()
        state = state_of(self.app)
        state.health_check = self.check
        state.stores_here = True  # its results are stored in this process: .get() is woken
        self.seconds_to_start = time.monotonic() - started
        return self

    def settle(self, timeout: float) -> bool:
        """Purge this worker's queues, wait (at most ``timeout``) until no task is running or reserved
        in this process, then cancel the tasks held for an ETA or countdown: what a test sent without
        waiting never runs during the next test.
        Returns False if a task was still running at the deadline."""
        self.purged = 0
        if self.thread is None or not self.thread.is_alive() or self.controller is None:
            return True
        self.purged = purge_queues(self.app, self.consumed_queues)
        deadline = time.monotonic() + timeout
        while True:
            while worker_state.active_requests or worker_state.reserved_requests:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.002)
            # Idle now; but a message already delivered to the worker's socket becomes a request only
            # on the event loop's next turn. Two turns later, idle means idle.
            ticks = self.controller.ticks
            while self.controller.ticks < ticks + 2 and self.thread.is_alive():
                if time.monotonic() > deadline:
                    return False
                self.controller.poke()
                time.sleep(0.002)
            if not (worker_state.active_requests or worker_state.reserved_requests):
                return self._drop_held(deadline)

    def _drop_held(self, deadline: float) -> bool:
        """Have the worker thread cancel its tasks held for an ETA or countdown; wait until it has."""
        assert self.controller is not None and self.thread is not None  # started
        self.controller.drop_held_requested.set()
        self.controller.poke()
        while self.controller.drop_held_requested.is_set() and self.thread.is_alive():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def registered_tasks(self) -> list[str]:
        return sorted(name for name in self.app.tasks if not name.startswith("celery."))

    def check(self) -> None:
        """Raise :class:`EmbeddedWorkerError` if the worker thread died."""
        if self.thread is None or self.controller is None:
            return
        if self.controller.failure is not None or not self.thread.is_alive():
            self._raise_failure("died")

    def check_unreported(self) -> None:
        """Like :meth:`check`, but quiet once a test already failed with the worker's death."""
        if not self.failure_reported:
            self.check()

    def stop(self) -> None:
        """Stop the worker within ``stop_timeout``; raise with its stack if it does not."""
        if self.thread is None:
            return
        assert self.controller is not None
        started = time.monotonic()
        state = state_of(self.app)
        state.health_check = None
        state.stores_here = False
        self.controller.stop_requested.set()
        self.controller.poke()
        try:
            self.thread.join(self.stop_timeout)
            if self.thread.is_alive():
                raise EmbeddedWorkerError(
                    f"pytest-celery-astra: the embedded worker did not stop within {self.stop_timeout:g} s "
                    f"(a task still running?); raise --celery-astra-worker-timeout. Worker thread stack:\n"
                    f"{self._thread_stack()}")
            self.controller.close_poke_pipe()
        finally:
            self.task_hostname.disconnect()
            self.seconds_to_stop = time.monotonic() - started
            self.thread = None

    def _abandon(self) -> None:
        # A worker that never became ready has no event loop to see its own stop event
        # (it is still connecting): Celery's process-wide flag is the only way in.
        if self.controller is not None:
            self.controller.stop_requested.set()
        worker_state.should_terminate = 0
        try:
            if self.thread is not None:
                self.thread.join(2)
        finally:
            worker_state.should_terminate = None

    def _raise_failure(self, what: str) -> None:
        cause = self.controller.failure if self.controller else None
        detail = "".join(traceback.format_exception_only(type(cause), cause)).strip() if cause else "no exception recorded"
        self.failure_reported = True
        raise EmbeddedWorkerError(f"pytest-celery-astra: the embedded worker {what}: {detail}") from cause

    def _broker(self) -> str:
        from pytest_celery_astra.masking import mask_url

        return mask_url(self.app.conf.broker_url or "")

    def _thread_stack(self) -> str:
        frame = sys._current_frames().get(self.thread.ident or 0) if self.thread else None
        return "".join(traceback.format_stack(frame)) if frame else "(thread gone)"
