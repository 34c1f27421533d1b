"""Interruptions as CI delivers them: SIGINT, SIGTERM, both, twice — mid-run and during start, with
-n 0 and -n 2 — then SIGKILL and the next run. The process group is signalled, as a terminal or a CI
runner does. After each: gone within 5 s, no container, no state directory, no process."""

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.plugin.test_plugin import containers_of_run

pytestmark = pytest.mark.usefixtures("container_engine")

SLOW_TESTS = '''
import os
from pathlib import Path


def test_waits(celery_astra_worker):
    Path(os.environ["READY_DIR"], os.environ.get("PYTEST_XDIST_WORKER", "master")).touch()
    import time
    time.sleep(300)


def test_waits_too(celery_astra_worker):
    Path(os.environ["READY_DIR"], os.environ.get("PYTEST_XDIST_WORKER", "master")).touch()
    import time
    time.sleep(300)
'''


class Run:
    """pytest in its own process group, its output in a file."""

    def __init__(self, project: Path, *args: str):
        self.ready = project / "ready"
        self.ready.mkdir(exist_ok=True)
        self.log = open(project / f"output-{time.monotonic_ns()}.txt", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args], cwd=project,
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, "READY_DIR": str(self.ready)})

    def output(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()

    def run_id(self, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = re.search(r"run id (\w+)", self.output())
            if match:
                return match.group(1)
            time.sleep(0.05)
        raise AssertionError(self.output())

    def wait_for(self, condition, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, self.output()
            assert self.process.poll() is None, self.output()
            time.sleep(0.05)

    def signal(self, signum: int) -> None:
        os.killpg(self.process.pid, signum)

    def seconds_to_exit(self, since: float, timeout: float = 60) -> float:
        self.process.wait(timeout)
        return time.monotonic() - since

    def group_is_gone(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return True
        return False


@pytest.fixture
def project(pytester):
    pytester.makepyfile(myapp="from celery import Celery\napp = Celery('myapp')\n", test_slow=SLOW_TESTS)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = myapp:app\npythonpath = .\n")
    return pytester.path


def state_dir(run_id: str) -> Path:
    return Path(tempfile.gettempdir()) / f"pytest-celery-astra-{run_id}"


SEQUENCES = {
    "sigint": [signal.SIGINT],
    "sigterm": [signal.SIGTERM],
    "sigint-twice": [signal.SIGINT, signal.SIGINT],
    "sigint-then-sigterm": [signal.SIGINT, signal.SIGTERM],
}
# The whole matrix: every sequence, mid-run and during start, with -n 0 and -n 2 (16 runs, ~110 s). CI runs the
# representative cases (each sequence once; each of mid-run/during-start with -n 0 and with -n 2 once); the rest
# are marked full_matrix, which scripts/test-all deselects: `pytest tests/plugin/test_interruptions.py` runs all.
REPRESENTATIVE = {("mid-run", "sigint", 0), ("mid-run", "sigint-twice", 2), ("during-start", "sigterm", 2),
                  ("during-start", "sigint-then-sigterm", 0)}
CASES = [pytest.param(when, sequence, xdist, id=f"{when}-{sequence}-n{len(xdist) and 2}",
                      marks=() if (when, sequence, len(xdist) and 2) in REPRESENTATIVE else pytest.mark.full_matrix)
         for when in ("mid-run", "during-start")
         for sequence in SEQUENCES
         for xdist in ([], ["-n", "2"])]


@pytest.mark.serial   # its exit-time bound (5 s) is for a machine the test has to itself
@pytest.mark.parametrize("when, sequence, xdist", CASES)
def test_interrupted_run_leaves_nothing(project, when, sequence, xdist):
    run = Run(project, *xdist)
    run_id = run.run_id()
    if when == "mid-run":
        workers = 2 if xdist else 1
        run.wait_for(lambda: len(list(run.ready.iterdir())) >= workers)
    else:
        run.wait_for(lambda: containers_of_run(run_id) != [])   # created, not yet ready
    signals = SEQUENCES[sequence]
    run.signal(signals[0])
    for later in signals[1:]:
        time.sleep(1 if later == signal.SIGINT else 2)  # a second Ctrl-C; GitHub's SIGTERM follows later
        if run.process.poll() is None:
            run.signal(later)
    last_signal = time.monotonic()
    seconds = run.seconds_to_exit(since=last_signal)
    print(f"EXIT-TIME {when} {sequence} -n{xdist[1] if xdist else 0}: {seconds:.2f} s")
    assert seconds < 5, f"took {seconds:.1f} s to exit\n{run.output()}"
    assert containers_of_run(run_id) == [], run.output()
    assert not state_dir(run_id).exists(), run.output()
    # pytest has exited; its process group (worker processes, xdist workers) must follow within a moment
    deadline = time.monotonic() + 3
    while not run.group_is_gone():
        assert time.monotonic() < deadline, "a process of the run is still there 3 s after pytest exited"
        time.sleep(0.02)


@pytest.mark.serial   # any run on the host reaps a killed run's leftovers: the next one here must be the first
def test_after_sigkill_the_next_run_removes_the_leftovers_and_says_so(project):
    killed = Run(project)
    killed_id = killed.run_id()
    killed.wait_for(lambda: len(list(killed.ready.iterdir())) >= 1)
    killed.signal(signal.SIGKILL)
    killed.process.wait(30)
    assert len(containers_of_run(killed_id)) == 2 and state_dir(killed_id).exists()  # what SIGKILL leaves
    (project / "test_slow.py").write_text("def test_quick(celery_astra_worker):\n    pass\n")
    nxt = Run(project)
    assert nxt.process.wait(180) == 0, nxt.output()
    assert containers_of_run(killed_id) == []
    assert not state_dir(killed_id).exists()
    output = nxt.output()
    header = re.search(r"^celery-astra reaped what killed runs left: (.*)$", output, re.MULTILINE)
    assert header, output                     # said in the header, before the first test
    assert re.search(r"cassandra container \w+ \(pid \d+ on ", header.group(1)), output
    assert f"pytest-celery-astra-{killed_id}" in header.group(1), output
