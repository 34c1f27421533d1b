"""Interruptions: CI cancels with SIGTERM (GitHub Actions sends SIGINT, then SIGTERM 7.5 s later).

Once the run has something to clean up (a container, a state directory), SIGTERM is handled like
Ctrl-C: pytest's KeyboardInterrupt path tears the fixtures down and removes the containers. While that
cleanup runs, further SIGINTs and SIGTERMs are ignored with a note instead of aborting it half-way.
Before that, nothing changes: signals behave as they would without the plugin.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Callable

_installed = False
_interrupted = False  # a SIGINT or SIGTERM started the cleanup
_shielded = False  # the run removes its containers now (pytest_unconfigure): interrupts are ignored


def install(has_something_to_clean: Callable[[], bool], remove_everything: Callable[[], object] | None = None) -> None:
    """Install the handlers (main thread only; once per process). ``remove_everything`` is the last resort
    of the watchdog (see :func:`_watch_cleanup`)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum, frame):
        global _interrupted
        if not has_something_to_clean():
            _behave_as_before(previous[signum], signum, frame)
            return
        if _interrupted or _shielded:
            sys.stderr.write(f"\npytest-celery-astra: {signal.Signals(signum).name} ignored: removing the run's "
                             f"containers, a few seconds\n")
            return
        _interrupted = True
        _start_watchdog(signum, remove_everything)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    for signum in previous:
        signal.signal(signum, handle)
    _installed = True


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


def interrupted() -> bool:
    """True once a SIGINT or SIGTERM started the cleanup."""
    return _interrupted


def shield_cleanup() -> None:
    """From now on, interrupts no longer abort anything: the run is removing what it made."""
    global _shielded
    _shielded = True


# The cleanup after an interrupt normally takes a few seconds. Further interrupts are ignored meanwhile (so
# that it is never cut half-way), which leaves nothing to stop a cleanup that hangs: after this long, the
# watchdog prints every thread's stack, removes the run's containers itself and exits.
CLEANUP_WATCHDOG_SECONDS = 45.0


def _start_watchdog(signum: int, remove_everything: Callable[[], object] | None) -> None:
    thread = threading.Thread(target=_watch_cleanup, args=(signum, remove_everything, CLEANUP_WATCHDOG_SECONDS),
                              name="celery-astra-cleanup-watchdog", daemon=True)
    thread.start()


_cleanup_finished = threading.Event()


def cleanup_finished() -> None:
    """The run's cleanup is over (``pytest_unconfigure``): the watchdog has nothing left to watch."""
    _cleanup_finished.set()


def _watch_cleanup(signum: int, remove_everything: Callable[[], object] | None, seconds: float) -> None:
    """Runs in a daemon thread: it only acts if the cleanup is still not finished ``seconds`` after the
    interrupt (a process that embeds ``pytest.main()`` lives on after a finished run: never touched)."""
    import faulthandler

    if _cleanup_finished.wait(seconds):
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
