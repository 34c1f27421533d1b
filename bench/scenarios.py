"""What the bench runs: generated test directories, timed subprocesses, memory sampling.

Everything is generated into a temporary directory (never into the repo's
tests/): the example app (tasks.py, celeryconfig.py) is copied there, with a
pytest.ini naming it and a conftest.py that records pytest's own per-phase
durations to a JSON file, so per-test figures exclude interpreter start-up and
container start.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "sortwords"
HANDWIRED = Path(__file__).resolve().parent / "handwired.py"
LABEL = "io.github.pytest-celery-astra"
BENCH_LABEL = LABEL + ".bench"
RUN_TIMEOUT = 900  # seconds; a hung run is killed rather than stalling the bench

PYTEST_INI = """\
[pytest]
celery_astra_app = tasks:app
pythonpath = .
addopts = -p no:cacheprovider
"""

# Records every test report (controller side, so it also sees xdist workers' reports).
TIMING_CONFTEST = '''\
import json, os

_reports = []


def pytest_runtest_logreport(report):
    _reports.append({"nodeid": report.nodeid, "when": report.when, "outcome": report.outcome,
                     "duration": report.duration, "stop": report.stop})


def pytest_sessionfinish(session):
    if not hasattr(session.config, "workerinput") and os.environ.get("BENCH_TIMINGS"):
        with open(os.environ["BENCH_TIMINGS"], "w") as handle:
            json.dump(_reports, handle)
'''

ONE_TEST = '''\
import pytest
from tasks import sortWords

pytestmark = pytest.mark.usefixtures("celery_astra_worker")


def test_first_documented_call():
    assert sortWords.delay("storage yay my DB is powerful results Astra", False).get(timeout=60) == (
        "Astra DB is my powerful results storage yay")
'''

SUITE = '''\
import pytest
from tasks import sortWords

pytestmark = pytest.mark.usefixtures("celery_astra_worker")


@pytest.mark.parametrize("n", range({count}))
def test_sort_words(n):
    assert sortWords.delay(f"zeta {{n}} Alpha", True).get(timeout=30) == f"{{n}} ALPHA ZETA"
'''

# The bare round trip, on the very broker vhost and Cassandra keyspace the suite
# used: one kombu publish + consume, one prepared INSERT + SELECT. It runs after
# the suite (same warm JVM) and is left out of the per-test statistics.
# Then the same with the queries Celery's backend itself issues per task, the floor
# under any round trip that keeps Celery's data path: Celery >= 5.7 reads the row
# before it stores a result (to keep a first SUCCESS), then .get() reads it once.
BARE = '''\
import json, os, time, uuid

import pytest
from cassandra import ConsistencyLevel
from kombu import Connection

from pytest_celery_astra.cassandra.backend import CELERY_READS_BEFORE_WRITE as READS_BEFORE_WRITE


@pytest.fixture(scope="module")
def bare_round_trip(celery_astra_broker_url, celery_astra_cassandra):
    session = celery_astra_cassandra
    session.execute("CREATE TABLE IF NOT EXISTS bench_bare (id text PRIMARY KEY, body text)", timeout=60)
    insert = session.prepare("INSERT INTO bench_bare (id, body) VALUES (?, ?)")
    select = session.prepare("SELECT body FROM bench_bare WHERE id = ?")
    # The plugin's backend reads and writes at LOCAL_QUORUM; do the same.
    insert.consistency_level = select.consistency_level = ConsistencyLevel.LOCAL_QUORUM
    with Connection(celery_astra_broker_url) as connection:
        queue = connection.SimpleQueue("bench_bare")

        def round_trip(n, reads_first=False):
            queue.put({{"text": f"zeta {{n}} Alpha", "capitalize": True}})
            message = queue.get(timeout=10)
            message.ack()
            key = uuid.uuid4().hex
            if reads_first:
                assert session.execute(select, (key,)).one() is None
            session.execute(insert, (key, json.dumps(message.payload)))
            assert session.execute(select, (key,)).one().body

        yield round_trip
        queue.close()


def test_zz_bare_round_trip(bare_round_trip):
    timings = {{"bare_s": [], "celery_floor_s": []}}
    for name, reads_first in (("bare_s", False), ("celery_floor_s", READS_BEFORE_WRITE)):
        for n in range({count}):
            started = time.perf_counter()
            bare_round_trip(n, reads_first)
            timings[name].append(time.perf_counter() - started)
    with open(os.environ["BENCH_BARE"], "w") as handle:
        json.dump(timings, handle)


# The same round trip once per test, as the embedded figure is (one .get() per test). pytest's own work
# between two round trips can make each of them slower (caches), which the loop above never pays: this is
# the like-for-like comparison, shown next to the target's (which keeps the loop).
@pytest.mark.parametrize("n", range({count}))
def test_zz_bare_each(bare_round_trip, n):
    bare_round_trip(n)
'''


# Canvas: a chord of 5 with a summing callback, and a group of 50, each timed from the call to .get()'s return.
CANVAS = '''\
import json, os, time

from celery import chord, group
from tasks import app


@app.task(name="bench.add")
def add(a, b):
    return a + b


@app.task(name="bench.total")
def total(numbers):
    return sum(numbers)


def test_canvas(celery_astra_worker):
    assert add.delay(1, 1).get(timeout=30) == 2          # worker warm
    chords, groups = [], []
    for _ in range(5):
        started = time.perf_counter()
        assert chord(add.s(i, i) for i in range(5))(total.s()).get(timeout=30) == 20
        chords.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert group(add.s(i, i) for i in range(50))().get(timeout=30) == [2 * i for i in range(50)]
        groups.append(time.perf_counter() - started)
    warm = []  # the same group 10 times more: Cassandra's JIT warmer, as for the round-trip figures
    for _ in range(10):
        started = time.perf_counter()
        assert group(add.s(i, i) for i in range(50))().get(timeout=30) == [2 * i for i in range(50)]
        warm.append(time.perf_counter() - started)
    with open(os.environ["BENCH_CANVAS"], "w") as handle:
        json.dump({{"chord_s": chords, "group50_s": groups, "group50_warm_s": warm}}, handle)
'''


def compile_plugin() -> None:
    """Byte-compile the plugin's modules, as pip does when it installs the wheel. An editable checkout
    whose sources changed since their .pyc files were written, under PYTHONDONTWRITEBYTECODE, compiles them
    again at every pytest start (~25 ms here): time users never pay."""
    import compileall
    import importlib.util

    spec = importlib.util.find_spec("pytest_celery_astra")
    for location in (spec.submodule_search_locations or []) if spec else []:
        compileall.compile_dir(location, quiet=1)


class Workspace:
    """A temporary directory holding the example app and the generated test files."""

    def __init__(self, tests: int):
        compile_plugin()
        self.path = Path(tempfile.mkdtemp(prefix="celery-astra-bench-"))
        for name in ("tasks.py", "celeryconfig.py"):
            shutil.copy(EXAMPLE / name, self.path / name)
        files = {
            "pytest.ini": PYTEST_INI, "conftest.py": TIMING_CONFTEST, "test_one.py": ONE_TEST,
            "test_suite.py": SUITE.format(count=tests), "test_zz_bare.py": BARE.format(count=tests),
            # The same suite again after the first (and the bare round trip): Cassandra's JIT warm, as it is
            # for the bare round trip, so the two compare like for like.
            "test_zzz_warm.py": SUITE.format(count=tests).replace("def test_sort_words", "def test_warm_sort_words"),
            "test_canvas.py": CANVAS.format(),
            "test_empty_session.py": EMPTY_SESSION,
        }
        for name, text in files.items():
            (self.path / name).write_text(text)
        self.tests = tests
        self.counter = 0
        self.run_ids: set[str] = set()  # every plugin run id seen, for the final clean-up

    def new_file(self, stem: str) -> Path:
        self.counter += 1
        return self.path / f"{stem}-{self.counter}.json"

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# ---------------------------------------------------------------- subprocesses

def _run(command: list[str], cwd: Path, env: dict, log: Path, on_start=None) -> dict:
    """Run ``command``; return wall time, exit code, its own peak RSS and its start time.

    ``os.wait4`` gives the rusage of exactly this child (RUSAGE_CHILDREN would be a
    running maximum over every child the bench ever waited for).
    """
    with open(log, "w") as out:
        started_at, started = time.time(), time.monotonic()
        proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
        watchdog = threading.Timer(RUN_TIMEOUT, lambda: os.killpg(proc.pid, signal.SIGKILL))
        watchdog.start()
        stop_sampling = on_start(proc) if on_start else None
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except BaseException:
            # Ctrl-C of the bench: SIGINT lets pytest remove its containers, as for a person.
            os.killpg(proc.pid, signal.SIGINT)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            watchdog.cancel()
        wall = time.monotonic() - started
        proc.returncode = os.waitstatus_to_exitcode(status)
        extra = stop_sampling() if stop_sampling else {}
    return {"wall_s": wall, "exit": proc.returncode, "maxrss_mb": usage.ru_maxrss / 1024,
            "started_at": started_at, "log": str(log), **extra}


def run_pytest(ws: Workspace, files: list[str], env_extra: dict | None = None, args: tuple = (),
               sample_cassandra: bool = False) -> dict:
    """One pytest run in the workspace; adds per-test timings and the plugin's run id."""
    timings, bare, log = ws.new_file("timings"), ws.new_file("bare"), ws.new_file("log")
    canvas = ws.new_file("canvas")
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BENCH_TIMINGS": str(timings), "BENCH_BARE": str(bare),
           "BENCH_CANVAS": str(canvas), **(env_extra or {})}
    command = [sys.executable, "-m", "pytest", *args, *files]
    sampler = (lambda proc: CassandraSampler(log, proc).start()) if sample_cassandra else None
    result = _run(command, ws.path, env, log, on_start=sampler)
    text = log.read_text(errors="replace")
    result["run_ids"] = sorted(set(re.findall(r"run id (\w+)", text)))
    ws.run_ids.update(result["run_ids"])
    result["reports"] = json.loads(timings.read_text()) if timings.exists() else []
    bare_timings = json.loads(bare.read_text()) if bare.exists() else {}
    result["bare_s"] = bare_timings.get("bare_s")
    result["celery_floor_s"] = bare_timings.get("celery_floor_s")
    result["canvas"] = json.loads(canvas.read_text()) if canvas.exists() else None
    calls = [r for r in result["reports"] if r["when"] == "call"]
    passed = [r for r in calls if r["outcome"] == "passed"]
    result["first_pass_s"] = min(r["stop"] for r in passed) - result["started_at"] if passed else None
    # From the first test's call to the last one's end: the part -n 2 can split between workers.
    result["test_phase_s"] = (max(r["stop"] for r in calls) - min(r["stop"] - r["duration"] for r in calls)
                              if calls else None)
    if calls and result.get("cpu_samples"):
        phase_start = min(r["stop"] - r["duration"] for r in calls)
        result["cpu"] = cpu_during(result.pop("cpu_samples"), phase_start, max(r["stop"] for r in calls))
    result.pop("cpu_samples", None)
    result["ok"] = result["exit"] == 0
    if not result["ok"]:
        sys.stderr.write(f"bench: pytest {' '.join(files)} exited {result['exit']}; last lines of {log}:\n"
                         + "\n".join(text.splitlines()[-15:]) + "\n")
    return result


def run_import_floor(ws: Workspace) -> dict:
    """What any run pays before its first test, containers or not: the interpreter, pytest and the
    imports a Celery + Cassandra test needs (pytest --version loads every plugin, ours included)."""
    log = ws.new_file("floor-log")
    code = ("import pytest, celery, kombu, cassandra.cluster, celery.contrib.testing.worker, "
            "celery.backends.cassandra; raise SystemExit(pytest.main(['--version']))")
    result = _run([sys.executable, "-c", code], ws.path, {**os.environ}, log)
    result["ok"] = result["exit"] == 0
    return result


# A session of one empty test with the imports a Celery + Cassandra test needs, without this plugin:
# what any pytest run of such a suite pays, start to exit, before it does anything.
EMPTY_SESSION = """\
import celery, celery.backends.cassandra, celery.contrib.testing.worker, cassandra.cluster, kombu


def test_nothing():
    pass
"""


def run_empty_session(ws: Workspace) -> dict:
    """``pytest`` on one empty test that imports Celery, kombu and the driver, with the plugin disabled."""
    log = ws.new_file("empty-session-log")
    result = _run([sys.executable, "-m", "pytest", "-q", "-p", "no:celery_astra", "test_empty_session.py"],
                  ws.path, {**os.environ}, log)
    result["ok"] = result["exit"] == 0
    return result


def run_handwired(ws: Workspace, bench_label: str) -> dict:
    """The hand-wired baseline (bench/handwired.py) in its own interpreter."""
    log = ws.new_file("handwired-log")
    result = _run([sys.executable, str(HANDWIRED), str(ws.path), bench_label], ws.path,
                  {**os.environ, "PYTHONUNBUFFERED": "1"}, log)
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.startswith('{"first_pass_at"')]
    data = json.loads(lines[-1]) if lines else {}
    result["ok"] = result["exit"] == 0 and bool(data)
    result["first_pass_s"] = data["first_pass_at"] - result["started_at"] if data else None
    result["steps"] = data.get("steps")
    if not result["ok"]:
        sys.stderr.write(f"bench: handwired run failed (exit {result['exit']}), see {log}\n")
    return result


# ---------------------------------------------------------------- per-test figures

def per_test_figures(reports: list[dict], only: str = "test_suite.py") -> dict:
    """Per-test cost with the one-off session fixture work taken out.

    Session fixtures (containers, keyspace, worker) are set up in the first
    test's setup and torn down in the last one's teardown. Their cost is that
    phase minus the median of the same phase over the other tests; per-test
    cost = (sum of setup+call+teardown - those two) / number of tests.
    """
    tests: dict[str, dict] = {}
    for report in reports:
        if not report["nodeid"].startswith(only):  # one generated file: the suite, or its warm repeat
            continue
        tests.setdefault(report["nodeid"], {})[report["when"]] = report
    rows = sorted(tests.values(), key=lambda phases: phases["setup"]["stop"])
    if len(rows) < 3:
        return {}
    setups = [row["setup"]["duration"] for row in rows]
    teardowns = [row["teardown"]["duration"] for row in rows]
    calls = [row["call"]["duration"] for row in rows if "call" in row]
    total = sum(setups) + sum(calls) + sum(teardowns)
    fixture_setup = setups[0] - statistics.median(setups[1:])
    fixture_teardown = teardowns[-1] - statistics.median(teardowns[:-1])
    return {
        "tests": len(rows),
        "per_test_ms": 1000 * (total - fixture_setup - fixture_teardown) / len(rows),
        "call_median_ms": 1000 * statistics.median(calls),
        "setup_median_ms": 1000 * statistics.median(setups[1:]),
        "teardown_median_ms": 1000 * statistics.median(teardowns[:-1]),
        "fixture_setup_s": fixture_setup,
        "fixture_teardown_s": fixture_teardown,
    }


# ---------------------------------------------------------------- memory

class CassandraSampler:
    """Samples the memory of this run's Cassandra container while pytest runs.

    The container is found by the plugin's run-id label (read from pytest's
    report header), so other people's containers on the same engine are never
    confused with ours. Reads the container's memory cgroup directly: cheaper
    than ``podman stats`` on a 2-core machine.
    """

    INTERVAL = 0.5

    def __init__(self, log: Path, proc: subprocess.Popen):
        self.log, self.proc = log, proc
        self.peak_bytes = 0     # cgroup's own high-water mark (includes page cache)
        self.rss_bytes = 0      # highest sampled anonymous memory (the JVM itself)
        # (time, CPU seconds so far) of pytest (its process, threads included: the embedded worker) and of
        # every container of the run (cpuacct cgroups: Cassandra and the broker), to bound what 2 cores allow.
        self.cpu_samples: list[tuple[float, float, float]] = []  # (time, pytest s, containers s)
        self.cpu_cgroups: list[Path] = []
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self):
        self.thread.start()
        return self.stop

    def stop(self) -> dict:
        self.stop_event.set()
        self.thread.join(5)
        return {"cassandra_peak_mb": self.peak_bytes / 2**20 or None,
                "cassandra_rss_mb": self.rss_bytes / 2**20 or None, "cpu_samples": self.cpu_samples}

    def _loop(self) -> None:
        cgroup = None
        while not self.stop_event.wait(self.INTERVAL):
            try:
                cgroup = cgroup or self._find_cgroup()
                if cgroup is not None:
                    self._sample(cgroup)
                    self._sample_cpu()
            except (OSError, ValueError):
                pass  # the container is gone (end of run) or not there yet

    def _sample_cpu(self) -> None:
        pytest_s = _tree_cpu_seconds(self.proc.pid)
        containers_s = sum(int((path / "cpuacct.usage").read_text()) / 1e9 for path in self.cpu_cgroups
                           if (path / "cpuacct.usage").exists())
        self.cpu_samples.append((time.time(), pytest_s, containers_s))

    def _find_cgroup(self) -> Path | None:
        found = re.search(r"run id (\w+)", self.log.read_text(errors="replace"))
        if not found:
            return None
        import docker

        client = docker.from_env()
        try:
            containers = client.containers.list(filters={"label": [f"{LABEL}.run-id={found.group(1)}"]})
            cassandra = [c for c in containers if c.labels.get(f"{LABEL}.service") == "cassandra"]
            if not cassandra or len(containers) < 2:
                return None  # both the broker and Cassandra, for the CPU figures
            pid = cassandra[0].attrs["State"]["Pid"]
            self.cpu_cgroups = [path for path in (_cpuacct_cgroup(c.attrs["State"]["Pid"]) for c in containers)
                                if path is not None]
        finally:
            client.close()
        for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if "memory" in controllers.split(","):           # cgroup v1
                return Path("/sys/fs/cgroup/memory" + path)
            if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():  # v2
                return Path("/sys/fs/cgroup" + path)
        return None

    def _sample(self, cgroup: Path) -> None:
        for name in ("memory.max_usage_in_bytes", "memory.peak"):
            if (cgroup / name).exists():
                self.peak_bytes = max(self.peak_bytes, int((cgroup / name).read_text()))
        stat = dict(line.split() for line in (cgroup / "memory.stat").read_text().splitlines())
        self.rss_bytes = max(self.rss_bytes, int(stat.get("total_rss", stat.get("anon", 0))))


def _tree_cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and every live descendant (xdist workers, worker processes)."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            stats[int(entry.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))  # ppid, ticks
    tree, ticks = {root}, 0
    for _ in range(4):  # a few generations deep is plenty
        tree |= {pid for pid, (ppid, _) in stats.items() if ppid in tree}
    ticks = sum(stats[pid][1] for pid in tree if pid in stats)
    return ticks / os.sysconf("SC_CLK_TCK")


def _cpuacct_cgroup(pid: int) -> Path | None:
    """The cgroup-v1 cpuacct directory of process ``pid`` (a container's init): its whole container."""
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "cpuacct" in controllers.split(","):
            return Path("/sys/fs/cgroup/" + controllers) / path.lstrip("/")
    return None


def cpu_during(samples: list, start: float, end: float) -> dict | None:
    """CPU seconds of pytest and of the run's containers between ``start`` and ``end`` (the test phase),
    from the samples nearest inside it; None without two such samples."""
    inside = [sample for sample in samples if start <= sample[0] <= end]
    if len(inside) < 2:
        return None
    (t0, p0, c0), (t1, p1, c1) = inside[0], inside[-1]
    span = t1 - t0
    return {"span_s": span, "pytest_s": p1 - p0, "containers_s": c1 - c0,
            "cores_busy": (p1 - p0 + c1 - c0) / span if span else None}


# ---------------------------------------------------------------- clean-up

def remove_bench_containers(ws: Workspace, bench_label: str, kept_only: bool = False) -> list[str]:
    """Remove containers this bench owns: its runs' (by run-id label) and the hand-wired ones.

    ``kept_only`` removes only the kept (reuse-labelled) containers of our runs,
    between the reuse pair of one round and the next.
    """
    import docker

    client = docker.from_env()
    removed = []
    try:
        candidates = client.containers.list(all=True, filters={"label": LABEL + ".run-id"})
        if not kept_only:
            candidates += client.containers.list(all=True, filters={"label": f"{BENCH_LABEL}={bench_label}"})
        for container in candidates:
            labels = container.labels
            ours = labels.get(LABEL + ".run-id") in ws.run_ids or labels.get(BENCH_LABEL) == bench_label
            if ours and (not kept_only or labels.get(LABEL + ".reuse") == "1"):
                container.remove(force=True, v=True)
                removed.append(container.short_id)
    finally:
        client.close()
    return removed
