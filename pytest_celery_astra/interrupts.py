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
_interrupted = False


def install(has_something_to_clean: Callable[[], bool]) -> None:
    """Install the handlers (main thread only; once per process)."""
    global _installed
    if _installed or threading.current_thread() is not threading.main_thread():
        return
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}

    def handle(signum, frame):
        global _interrupted
        if not has_something_to_clean():
            _behave_as_before(previous[signum], signum, frame)
            return
        if _interrupted:
            sys.stderr.write(f"\npytest-celery-astra: {signal.Signals(signum).name} ignored: removing the run's "
                             f"containers, a few seconds\n")
            return
        _interrupted = True
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
    global _interrupted
    _interrupted = True
