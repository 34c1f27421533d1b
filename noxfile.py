"""Version matrix: every supported Python x pytest x Celery, plus the lowest and latest dependencies.

    eval "$(scripts/provision)"      # container engine + CELERY_ASTRA_* / DOCKER_HOST settings
    pip install nox uv               # uv is optional (falls back to virtualenv), but much faster
    nox                              # every session; `nox -l` lists them
    nox -s lowest latest             # the dependency floors, the newest releases
    nox -s "matrix(3.10-pytest9.0.0-celery5.7.0)"   # one cell (`nox -p 3.12`: every 3.12 session)
    nox -s latest -- -x              # arguments after `--` go to every pytest run
    NOX_PROJECT_TESTS="tests/unit tests/plugin/test_readme.py" nox -s matrix   # a quicker pass

Each session installs the plugin (`-e . --group test`) with exact pins, then runs the plugin's own tests under
pytest-xdist (`lowest` the version-sensitive ones, LOWEST_TESTS) with the sortWords example suite beside them (`-n 0`,
then `-n 2`; `lowest` only `-n 0`; NOX_EXAMPLES_IN_TURN=1 runs it after them instead), then the `serial` ones alone.
The sessions need the environment printed by scripts/provision (nox passes it through). Interpreters are looked up
as python3.X on PATH, then in pyenv's versions directory ($PYENV_ROOT, default ~/.pyenv).
"""

import os
import shutil
import subprocess
from pathlib import Path

import nox
import nox.command

PYTHONS = ["3.9", "3.10", "3.11", "3.12", "3.13"]

# The floors the declared ranges allow. cassandra-driver's floor is higher from Python 3.12 on: asyncore
# left the standard library, so `import cassandra.cluster` needs the libev extension, which 3.28.0 and
# 3.29.0 wheels lack on 3.12 and which no release before 3.29.3 has on 3.13 (no cp313 wheel).
LOWEST = {
    "pytest": "7.4.0",
    "celery": "5.3.0",
    "kombu": "5.3.0",
    "testcontainers": "4.11.0",
    "pytest-xdist": "3.3.0",
    "redis": "4.5.0",
    "cryptography": "41.0.0",
}
LOWEST_CASSANDRA_DRIVER = {"3.9": "3.28.0", "3.13": "3.29.3"}

LATEST = {
    "pytest": "9.2.0",
    "celery": "5.7.0",
    "kombu": "5.7.0",
    "cassandra-driver": "3.30.1",
    "testcontainers": "4.15.0",
    "pytest-xdist": "3.8.0",
    "redis": "8.1.0",
    "cryptography": "50.0.2",
}

# (python, pytest, celery): each Python, each Celery minor and each pytest major at least once
# (with lowest and latest). Everything else resolves to the newest release that Python allows.
# pytest 9 and Celery 5.7 need Python >= 3.10.
MATRIX = [
    ("3.9", "8.4.2", "5.6.3"),  # the newest releases that still support Python 3.9
    ("3.10", "9.0.0", "5.7.0"),  # pytest 9 and Celery 5.7 on the oldest Python they support
    ("3.11", "8.0.0", "5.4.0"),
    ("3.12", "7.4.4", "5.5.3"),
    ("3.13", "8.4.2", "5.3.6"),  # Celery 5.3 with the newest kombu it allows
]


# The dependency floors run the tests whose outcome depends on a version (the rest is pure plugin logic over
# the same public APIs, run once, in `latest`). Why each one:
LOWEST_TESTS = [
    # Every private name of Celery, kombu and the driver the plugin uses (internals contract); settings read through
    # pytest 7.4's getini ("" for unset keys); the backend over Celery 5.3's CassandraBackend; Python 3.9 syntax.
    "tests/unit",
    # The plugin's fixtures in-process on pytest 7.4; the janitor's statements on driver 3.28.
    "tests/integration",
    # The entry point, dormancy and -n 2 on pytest 7.4 / xdist 3.3.
    "tests/plugin/test_dormant.py",
    # testcontainers 4.11's container API against the images.
    "tests/services",
    # Celery 5.3 ignores cassandra_port (the plugin passes it); kombu 5.3 with redis 4.5; groups and chords.
    "tests/plugin/test_plugin.py::test_user_app_round_trip_cleanup_and_teardown",
    # The README on the floors: ini and pyproject reading (pytest 7.4), celery.contrib.pytest's fixtures on Celery 5.3,
    # the factories under xdist 3.3.
    "tests/plugin/test_readme.py::test_quickstart_as_written",
    "tests/plugin/test_readme.py::test_settings_as_written",
    "tests/plugin/test_readme.py::test_celery_contrib_style_as_written",
    "tests/plugin/test_readme.py::test_second_app_keyspace_and_worker_as_written",
    # Broker parametrization (pytest 7.4's collection hooks); settle, purge and held-task drop (kombu 5.3's internals).
    "tests/plugin/test_broker_kinds.py::test_each_worker_test_runs_once_per_broker",
    "tests/plugin/test_isolation.py",
    # Celery 5.3's `celery worker` (prefork, its CLI, its signals).
    "tests/plugin/test_process_worker.py::test_fork_safety_with_the_documented_pattern",
    "tests/plugin/test_process_worker.py::test_with_the_documented_fix_a_crashed_child_leaves_the_worker_whole",
    "tests/plugin/test_process_worker.py::test_a_worker_process_restarted_in_place_reads_its_wiring_again",
    # Celery 5.3's remote control (standby's cancel/add_consumer, the plugin's drop-held command in a worker process),
    # a crashed prefork child, a broker fault on worker processes: one cell of our combination matrix.
    "tests/plugin/test_matrix.py::test_the_shop_suite_passes_in_every_combination[process-rabbitmq-n0]",
    # A Redis restart on kombu 5.3 (celery#8091: the embedded workers are started afresh after it, a path that runs
    # on kombu < 5.4 only, so nowhere else in CI), on the worker thread.
    "tests/plugin/test_matrix.py::test_the_shop_suite_passes_in_every_combination[thread-redis-n0]",
]
# Not at the floors, nor in CI (full_matrix): the example's fault suite on worker processes with both brokers (450 s
# on kombu 5.3, measured 2026-12-05 under -n 4); in latest the matrix's both-both-n0 and process-both-n0 cells run
# faults on worker processes with both brokers.

# Our own suite runs under pytest-xdist (most of its time is spent waiting for the pytest runs it starts and their
# containers), then the tests marked serial alone; the full_matrix cases are left out (see pyproject's markers).
XDIST_WORKERS = os.environ.get("CELERY_ASTRA_SUITE_WORKERS", "4")
PROJECT_PASSES = [
    ("project", ["-n", XDIST_WORKERS, "--dist", "worksteal", "-m", "not serial and not full_matrix"]),
    ("project-serial", ["-m", "serial and not full_matrix"]),
]

SHOWN = ("pytest", "celery", "kombu", "cassandra-driver", "testcontainers", "pytest-xdist", "redis")


def _expose_pyenv_pythons() -> None:
    """Put pyenv's pythonX.Y on PATH when it is missing or only a shim that cannot run it."""
    versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for python in PYTHONS:
        exe = shutil.which(f"python{python}")
        if exe and subprocess.run([exe, "-c", ""], check=False, capture_output=True).returncode == 0:
            continue
        found = sorted(
            versions.glob(f"{python}.*/bin/python{python}"),
            key=lambda path: [int(part) for part in path.parts[-3].split(".") if part.isdigit()],
        )
        if found:
            os.environ["PATH"] = f"{found[-1].parent}{os.pathsep}{os.environ['PATH']}"


_expose_pyenv_pythons()
nox.options.default_venv_backend = "uv|virtualenv"


def _install_and_test(session: nox.Session, pins: dict, project_tests: tuple = ("tests",),
                      example_layouts: tuple = ("n0", "n2")) -> None:
    session.install("-e", ".", "--group", "test", *(f"{name}=={version}" for name, version in pins.items()))
    session.run(
        "python",
        "-c",
        "import importlib.metadata as m, sys; print(*(d + '==' + m.version(d) for d in sys.argv[1:]))",
        *SHOWN,
    )
    # NOX_PROJECT_TESTS narrows the project's own tests (paths or -k), e.g. for a quick pass over the matrix.
    project_tests = tuple(os.environ.get("NOX_PROJECT_TESTS", " ".join(project_tests)).split())
    passes = dict(PROJECT_PASSES)
    # The example suite runs beside the project's -n pass: most of its -n 0 run's ~50 s is spent waiting for
    # restarted containers, while the -n pass keeps both cores busy. The serial pass runs after both, alone.
    example_runs = [run for layout, run in (("n0", ("example", list(session.posargs))),
                                            ("n2", ("example-xdist", ["-n", "2", *session.posargs])))
                    if layout in example_layouts]
    examples = (_Background(session, "examples/sortwords", example_runs)
                if not os.environ.get("NOX_EXAMPLES_IN_TURN") else None)
    failed = []

    def pytest_run(directory: str, part: str, args: list) -> None:
        with session.chdir(directory):
            try:
                session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *_report(session, part), *args,
                            success_codes=[0, 5] if part == "project-serial" else [0])
            except nox.command.CommandFailed:
                failed.append(part)

    pytest_run(".", "project", [*project_tests, *passes["project"], *session.posargs])
    if examples is not None:
        failed += examples.wait()
    else:
        for part, args in example_runs:
            pytest_run("examples/sortwords", part, args)
    pytest_run(".", "project-serial", [*project_tests, *passes["project-serial"], *session.posargs])
    if failed:  # every part ran, so one failure does not hide the others
        session.error(f"failed: {', '.join(failed)}")


class _Background:
    """Pytest runs of ``directory``, one after the other, in a thread beside the session's own runs: each run's
    output goes to a file, printed when :meth:`wait` is called."""

    def __init__(self, session: nox.Session, directory: str, runs: list) -> None:
        import tempfile
        import threading

        self._outputs: list = []
        self._failed: list = []
        env = {**os.environ, **{k: v for k, v in session.env.items() if v is not None},
               "VIRTUAL_ENV": str(session.virtualenv.location),
               "PATH": f"{session.bin}{os.pathsep}{os.environ.get('PATH', '')}"}
        python = os.path.join(session.bin, "python")
        directory = os.path.abspath(directory)  # the session's own runs change the process's directory

        def run_all() -> None:
            for part, args in runs:
                out = tempfile.TemporaryFile("w+")
                command = [python, "-m", "pytest", "-p", "no:cacheprovider", *_report(session, part), *args]
                code = subprocess.call(command, cwd=directory, env=env, stdout=out, stderr=subprocess.STDOUT)
                self._outputs.append((part, command, out))
                if code != 0:
                    self._failed.append(part)

        self._thread = threading.Thread(target=run_all, name="nox-examples")
        self._thread.start()

    def wait(self) -> list:
        """Wait for every run; print each one's output; return the parts that failed."""
        self._thread.join()
        for part, command, out in self._outputs:
            out.seek(0)
            print(f"=== {part} (ran beside the project's -n pass): {' '.join(command[1:])}", flush=True)
            print(out.read(), flush=True)
            out.close()
        return self._failed


def _report(session: nox.Session, part: str) -> list:
    """``--junitxml`` into $CELERY_ASTRA_REPORTS when set (scripts/test-all sums the counts of every run)."""
    directory = os.environ.get("CELERY_ASTRA_REPORTS")
    if not directory:
        return []
    name = "".join(c if c.isalnum() or c in ".-" else "-" for c in session.name).strip("-")
    # A failing test's captured output (a pytest run's, for the tests that make one) goes in the report:
    # summarize-junit.py prints its failing tests and E lines.
    return [f"--junitxml={directory}/{name}-{part}.xml", "-o", "junit_logging=system-out",
            "-o", "junit_log_passing_tests=false"]


@nox.session(python=list(LOWEST_CASSANDRA_DRIVER))
def lowest(session: nox.Session) -> None:
    """The lowest version of every dependency that the declared ranges allow."""
    # The example at -n 0 (its fault tests on kombu 5.3); -n 2 at the floors is the README's second app and
    # Celery-style suite, the isolation suite and dormancy under xdist 3.3 (LOWEST_TESTS).
    _install_and_test(session, {**LOWEST, "cassandra-driver": LOWEST_CASSANDRA_DRIVER[session.python]},
                      project_tests=tuple(LOWEST_TESTS), example_layouts=("n0",))


@nox.session(python="3.13")
def latest(session: nox.Session) -> None:
    """The latest release of every dependency."""
    _install_and_test(session, LATEST)


@nox.session
@nox.parametrize("python,pytest,celery", [nox.param(*cell, id="{}-pytest{}-celery{}".format(*cell)) for cell in MATRIX])
def matrix(session: nox.Session, pytest: str, celery: str) -> None:
    """Python x pytest x Celery covering set; other dependencies at their newest for that Python."""
    _install_and_test(session, {"pytest": pytest, "celery": celery})


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff (pyproject's [tool.ruff]) and mypy (its [tool.mypy]) over the package, tests, bench and scripts."""
    session.install("-e", ".", "--group", "test", "--group", "lint")
    session.run("ruff", "check", ".")
    session.run("mypy")


@nox.session(python="3.11")
def release(session: nox.Session) -> None:
    """Build the sdist and the wheel into dist/, check them with twine, and check that the sdist holds what
    its own tests need (the tests' packages, the example). ``python -m build`` builds the wheel from the sdist
    (not from the checkout), so the wheel in dist/ proves that the sdist builds one."""
    import glob
    import tarfile

    session.install("--group", "release")
    shutil.rmtree("dist", ignore_errors=True)
    session.run("python", "-m", "build", "--installer=uv")   # its isolated build environments made by uv (~2 s less each)
    session.run("python", "-m", "twine", "check", "--strict", *glob.glob("dist/*"))
    (sdist,) = glob.glob("dist/*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = {"LICENSE", "CHANGELOG.md", "tests/astra_standin/__init__.py", "tests/test_astra_standin.py",
              "tests/compat/suite/conftest.py", "examples/sortwords/tasks.py", "pytest_celery_astra/py.typed"}
    missing = sorted(needed - names)
    if missing:
        session.error(f"the sdist lacks {missing}")


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml, docs/): built with --strict, so a broken page or link fails."""
    session.install("--group", "docs")
    session.run("mkdocs", "build", "--strict", "--site-dir", session.create_tmp() + "/site")
