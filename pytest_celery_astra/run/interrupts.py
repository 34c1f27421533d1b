"""Interruptions: CI cancels with SIGTERM (GitHub Actions sends SIGINT, then SIGTERM 7.5 s later).

Once the run has something to clean up (a container, a state directory), SIGTERM is handled like
Ctrl-C: pytest's KeyboardInterrupt path tears the fixtures down and removes the containers. While that
cleanup runs, further SIGINTs and SIGTERMs are ignored with a note instead of aborting it half-way.
Before that, nothing changes: signals behave as they would without the plugin.

Signal handlers belong to the process, but the flags behind them belong to the run: each run's
:class:`Interrupts` (``RunContext.interrupts``) installs a handler bound to itself, and puts the previous
handlers back when its cleanup is over, so a later ``pytest.main()`` in the same process starts afresh.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any, Callable

# The cleanup after an interrupt normally takes a few seconds. Further interrupts are ignored meanwhile (so
# that it is never cut half-way), which leaves nothing to stop a cleanup that hangs: after this long, the
# watchdog prints every thread's stack, removes the run's containers itself and exits.
CLEANUP_WATCHDOG_SECONDS = 45.0

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupts:
    """One run's interrupt flags and its SIGINT/SIGTERM handler."""

    def __init__(self, watchdog_seconds: float = CLEANUP_WATCHDOG_SECONDS) -> None:
        self.watchdog_seconds = watchdog_seconds
        self._previous: dict[int, Any] | None = None  # the handlers this run's replaced, once installed
        self._restored = False
        self._has_something_to_clean: Callable[[], bool] = lambda: False
        self._remove_everything: Callable[[], object] | None = None
        self._interrupted = False  # a SIGINT or SIGTERM started the cleanup
        self._shielded = False  # the run removes its containers now (pytest_unconfigure): interrupts are ignored
        self._cleanup_finished = threading.Event()

    def install(self, has_something_to_clean: Callable[[], bool],
                remove_everything: Callable[[], object] | None = None) -> None:
        """Install the handlers (main thread only; once per run). ``remove_everything`` is the last resort
        of the watchdog (see :meth:`_watch_cleanup`)."""
        if self._previous is not None or threading.current_thread() is not threading.main_thread():
            return
        self._has_something_to_clean = has_something_to_clean
        self._remove_everything = remove_everything
        self._previous = {signum: signal.getsignal(signum) for signum in _SIGNALS}
        for signum in _SIGNALS:
            signal.signal(signum, self._handle)

    def _handle(self, signum, frame) -> None:
        if not self._has_something_to_clean():
            _behave_as_before(self._previous[signum] if self._previous else signal.SIG_DFL, signum, frame)
            return
        if self._interrupted or self._shielded:
            sys.stderr.write(f"\npytest-celery-astra: {signal.Signals(signum).name} ignored: removing the run's "
                             f"containers, a few seconds\n")
            return
        self._interrupted = True
        self._start_watchdog(signum, self._remove_everything)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    def interrupted(self) -> bool:
        """True once a SIGINT or SIGTERM started the cleanup."""
        return self._interrupted

    def shield_cleanup(self) -> None:
        """From now on, interrupts no longer abort anything: the run is removing what it made."""
        self._shielded = True

    def cleanup_finished(self) -> None:
        """The run's cleanup is over (``pytest_unconfigure``): the watchdog has nothing left to watch, and
        the handlers this run replaced are back (unless someone replaced this run's since)."""
        self._cleanup_finished.set()
        if self._previous is None or self._restored or threading.current_thread() is not threading.main_thread():
            return
        self._restored = True
        for signum, handler in self._previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, handler)

    def _start_watchdog(self, signum: int, remove_everything: Callable[[], object] | None) -> None:
        thread = threading.Thread(target=self._watch_cleanup, args=(signum, remove_everything),
                                  name="celery-astra-cleanup-watchdog", daemon=True)
        thread.start()

    def _watch_cleanup(self, signum: int, remove_everything: Callable[[], object] | None) -> None:
        """Runs in a daemon thread: it only acts if the cleanup is still not finished ``watchdog_seconds``
        after the interrupt (a process that embeds ``pytest.main()`` lives on after a finished run: never
        touched)."""
        import faulthandler

        seconds = self.watchdog_seconds
        if self._cleanup_finished.wait(seconds):
            return
        sys.stderr.write(f"\npytest-celery-astra: the cleanup after {signal.Signals(signum).name} has taken over "
                         f"{seconds:g} s; every thread's stack follows, then the run's containers are removed and "
                         f"pytest exits.\n")
        sys.stderr.flush()
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        if remove_everything is not None:
            remover = threading.Thread(target=remove_everything, daemon=True)
            remover.start()
            remover.join(20)
        sys.stderr.flush()
        os._exit(128 + signum)


def _behave_as_before(previous, signum, frame) -> None:
    if callable(previous):
        previous(signum, frame)
    elif previous == signal.SIG_IGN:
        return
    elif signum == signal.SIGINT:
        raise KeyboardInterrupt
    else:  # SIG_DFL for SIGTERM: die as the process would have
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
