"""Version matrix: every supported Python x pytest x Celery, plus the lowest and latest dependencies.

    eval "$(scripts/provision)"      # container engine + CELERY_ASTRA_* / DOCKER_HOST settings
    pip install nox uv               # uv is optional (falls back to virtualenv), but much faster
    nox                              # every session; `nox -l` lists them
    nox -s lowest latest             # the dependency floors, the newest releases
    nox -s "matrix(3.10-pytest9.0.0-celery5.7.0)"   # one cell (`nox -p 3.12`: every 3.12 session)
    nox -s latest -- -x              # arguments after `--` go to every pytest run
    NOX_PROJECT_TESTS="tests/unit tests/plugin/test_readme.py" nox -s matrix   # a quicker pass

Each session installs the plugin (`-e . --group test`) with exact pins, then runs the plugin's own tests and
the sortWords example suite (with `-n 0` and `-n 2`). The sessions need the environment printed by
scripts/provision (nox passes it through). Interpreters are looked up as python3.X on PATH, then in
pyenv's versions directory ($PYENV_ROOT, default ~/.pyenv).
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


# Run in `latest` only, to keep CI inside its time budget (each of these costs 20-130 s): a second
# xdist variant of a test that also runs with -n 0 at the floors, Celery's own plugin running the
# compatibility suite (tests/compat: the layer itself runs at the floors through the README's contrib
# snippet, -n 0 and -n 2), and stock-Celery demonstrations already run at the floors by their sibling tests.
LATEST_ONLY = [
    "tests/compat/test_celery_contrib.py",
    "tests/plugin/test_process_worker.py::test_the_example_suite_runs_unchanged_against_celery_worker_processes[n2]",
    "tests/plugin/test_process_worker.py::test_the_example_suite_on_worker_processes_switches_brokers_cleanly[n2]",
    # The example with its fault tests on worker processes and two brokers: 2-8 min at the floors (kombu 5.3 leaves
    # the Redis half's faults out); latest runs it whole, and the floors run the same faults on the thread worker.
    "tests/plugin/test_process_worker.py::test_the_example_suite_on_worker_processes_switches_brokers_cleanly[n0]",
    "tests/plugin/test_process_worker.py::test_a_test_gets_the_worker_it_asked_for[n2]",
    "tests/plugin/test_process_worker.py::test_a_second_app_on_its_own_worker_process[n2]",
    "tests/plugin/test_process_worker.py::test_without_the_pattern_a_session_made_before_the_fork_fails_in_the_children",
    "tests/plugin/test_interruptions.py::test_interrupted_run_leaves_nothing[mid-run-sigint-twice-n2]",
    "tests/plugin/test_interruptions.py::test_interrupted_run_leaves_nothing[mid-run-sigterm-n2]",
    "tests/plugin/test_interruptions.py::test_interrupted_run_leaves_nothing[mid-run-sigint-then-sigterm-n2]",
    "tests/plugin/test_shared_services.py::test_eight_xdist_workers[memory]",
    "tests/plugin/test_shared_services.py::test_eight_xdist_workers[redis]",
    "tests/plugin/test_shared_services.py::test_two_concurrent_runs_with_container_reuse",
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


def _install_and_test(session: nox.Session, pins: dict, deselect: tuple = ()) -> None:
    session.install("-e", ".", "--group", "test", *(f"{name}=={version}" for name, version in pins.items()))
    session.run(
        "python",
        "-c",
        "import importlib.metadata as m, sys; print(*(d + '==' + m.version(d) for d in sys.argv[1:]))",
        *SHOWN,
    )
    # NOX_PROJECT_TESTS narrows the project's own tests (paths or -k), e.g. for a quick pass over the matrix.
    project_tests = os.environ.get("NOX_PROJECT_TESTS", "tests").split()
    runs = [
        (".", "project", [*project_tests, *(f"--deselect={test}" for test in deselect), *session.posargs]),
        ("examples/sortwords", "example", list(session.posargs)),
        ("examples/sortwords", "example-xdist", ["-n", "2", *session.posargs]),
    ]
    failed = []
    for directory, part, args in runs:  # every part runs, so one failure does not hide the others
        with session.chdir(directory):
            try:
                session.run("python", "-m", "pytest", "-p", "no:cacheprovider", *_report(session, part), *args)
            except nox.command.CommandFailed:
                failed.append(part)
    if failed:
        session.error(f"failed: {', '.join(failed)}")


def _report(session: nox.Session, part: str) -> list:
    """``--junitxml`` into $CELERY_ASTRA_REPORTS when set (scripts/test-all sums the counts of every run)."""
    directory = os.environ.get("CELERY_ASTRA_REPORTS")
    if not directory:
        return []
    name = "".join(c if c.isalnum() or c in ".-" else "-" for c in session.name).strip("-")
    return [f"--junitxml={directory}/{name}-{part}.xml"]


@nox.session(python=list(LOWEST_CASSANDRA_DRIVER))
def lowest(session: nox.Session) -> None:
    """The lowest version of every dependency that the declared ranges allow."""
    _install_and_test(session, {**LOWEST, "cassandra-driver": LOWEST_CASSANDRA_DRIVER[session.python]},
                      deselect=tuple(LATEST_ONLY))


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
    its own tests need (the tests' packages, the example) and builds a wheel from itself."""
    import glob
    import tarfile

    session.install("--group", "release")
    shutil.rmtree("dist", ignore_errors=True)
    session.run("python", "-m", "build")
    session.run("python", "-m", "twine", "check", "--strict", *glob.glob("dist/*"))
    (sdist,) = glob.glob("dist/*.tar.gz")
    with tarfile.open(sdist) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    needed = {"LICENSE", "CHANGELOG.md", "tests/astra_standin/__init__.py", "tests/test_astra_standin.py",
              "tests/compat/suite/conftest.py", "examples/sortwords/tasks.py", "pytest_celery_astra/py.typed"}
    missing = sorted(needed - names)
    if missing:
        session.error(f"the sdist lacks {missing}")
    unpacked = session.create_tmp()
    session.run("tar", "-xzf", sdist, "-C", unpacked, external=True)
    (root,) = glob.glob(f"{unpacked}/pytest_celery_astra-*")
    session.run("python", "-m", "build", "--wheel", "--outdir", f"{unpacked}/wheel", root)


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """The documentation site (mkdocs.yml, docs/): built with --strict, so a broken page or link fails."""
    session.install("--group", "docs")
    session.run("mkdocs", "build", "--strict", "--site-dir", session.create_tmp() + "/site")
