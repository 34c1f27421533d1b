"""The watchdog after an interrupt: a cleanup that hangs is ended (stacks printed, the run's containers
removed through the callback, exit 128 + signal); a finished cleanup is never touched."""

import subprocess
import sys

HANGING_CLEANUP = """
import signal, threading, time
from pytest_celery_astra.run.interrupts import Interrupts

interrupts = Interrupts(watchdog_seconds=0.5)
interrupts._start_watchdog(signal.SIGINT, lambda: print("REMOVED-EVERYTHING", flush=True))
{finish}
def stuck_in_cleanup():
    time.sleep(30)
stuck_in_cleanup()
print("NOT-REACHED", flush=True)
"""


def run(finish: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", HANGING_CLEANUP.format(finish=finish)], capture_output=True,
                          text=True, timeout=60)


def test_a_hanging_cleanup_is_ended_with_the_stacks_and_the_containers_removed():
    completed = run(finish="")
    assert completed.returncode == 130
    assert "the cleanup after SIGINT has taken over 0.5 s" in completed.stderr
    assert "in stuck_in_cleanup" in completed.stderr  # the stack of the thread that hangs
    assert "REMOVED-EVERYTHING" in completed.stdout and "NOT-REACHED" not in completed.stdout


def test_a_finished_cleanup_is_left_alone():
    completed = subprocess.run([sys.executable, "-c", HANGING_CLEANUP.format(
        finish="interrupts.cleanup_finished()").replace("time.sleep(30)", "time.sleep(1.5)")],
        capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert "NOT-REACHED" in completed.stdout and "REMOVED-EVERYTHING" not in completed.stdout
