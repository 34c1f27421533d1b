"""A suite written for celery.contrib.pytest (suite/), run unchanged (a) under Celery's own plugin on its
memory broker and cache backend and (b) under pytest_celery_astra.celery_contrib on RabbitMQ, Redis and
Cassandra, with -n 0 and -n 2: every test that passes under (a) passes under (b).

In CI, (b) is held to every test of the suite but the one Celery's Cassandra backend cannot pass; (a) — which
checks Celery's plugin, not ours, and waits out its busy-worker timeouts (~150 s) — is marked full_matrix."""

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest

SUITE = Path(__file__).parent / "suite"
# Needs what Celery's solo pool cannot do: answer remote control while a task runs.
NEEDS_A_WORKER_THAT_ANSWERS_WHILE_BUSY = {
    "test_control.py::test_inspect_answers_while_a_task_runs",
    "test_control.py::test_ping_answers_while_a_task_runs",
}
# Differs in production too: Celery's CassandraBackend never stores extended results (result_extended: name,
# args, ...). Its _store_result writes six columns (task_id, status, result, date_done, traceback, children)
# in every release from 5.3 to 5.7 (celery/backends/cassandra.py), so AsyncResult.name is None there.
CELERYS_CASSANDRA_BACKEND_STORES_NO_EXTENDED_RESULT = {"test_basics.py::test_extended_result_has_the_task_name"}


def run_suite(tmp_path: Path, *args: str, timeout: int = 900) -> tuple[int, str, dict[str, str]]:
    """Run a copy of the suite; the outcome of each test id (broker parametrization folded into the id)."""
    project = tmp_path / "suite"
    shutil.copytree(SUITE, project)
    (project / "pytest.ini").write_text("[pytest]\n")
    report = tmp_path / "report.xml"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-p", "no:randomly", f"--junitxml={report}", *args],
        cwd=project, capture_output=True, text=True, timeout=timeout)
    outcomes: dict[str, str] = {}
    cases = ElementTree.parse(report).getroot().iter("testcase") if report.exists() else ()
    for case in cases:
        name = f"{case.get('classname').rsplit('.', 1)[-1]}.py::{case.get('name')}"
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[name] = "skipped" if case.find("skipped") is not None else "failed" if failed else "passed"
    return completed.returncode, completed.stdout + completed.stderr, outcomes


@pytest.fixture(scope="module")
def under_celerys_plugin(tmp_path_factory) -> dict[str, str]:
    """(a): the suite under celery.contrib.pytest, memory broker and cache backend (no services)."""
    _, output, outcomes = run_suite(tmp_path_factory.mktemp("a"), "-p", "celery.contrib.pytest", "-n", "2")
    assert len(outcomes) >= 40, output
    return outcomes


@pytest.fixture(scope="module")
def suite_tests(tmp_path_factory) -> set[str]:
    """Every test id of the suite, as collected under Celery's plugin (no test runs)."""
    project = tmp_path_factory.mktemp("collect")
    code, output, _ = run_suite(project, "-p", "celery.contrib.pytest", "--co", "-q", timeout=120)
    assert code == 0, output
    return {line.strip() for line in output.splitlines() if "::" in line}


@pytest.mark.full_matrix   # Celery's own plugin's outcomes; the suite's test ids in CI come from suite_tests
def test_under_celerys_own_plugin_only_the_busy_worker_tests_fail(under_celerys_plugin, suite_tests):
    failed = {name for name, outcome in under_celerys_plugin.items() if outcome != "passed"}
    assert failed == NEEDS_A_WORKER_THAT_ANSWERS_WHILE_BUSY
    assert set(under_celerys_plugin) == suite_tests


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
@pytest.mark.usefixtures("container_engine")
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_every_test_that_passes_under_celerys_plugin_passes_on_real_services(tmp_path, suite_tests, xdist):
    code, output, outcomes = run_suite(
        tmp_path, "-p", "pytest_celery_astra.celery_contrib", "--celery-astra-broker-kind", "rabbitmq,redis", *xdist)
    by_test: dict[str, set[str]] = {}
    for name, outcome in outcomes.items():
        by_test.setdefault(re.sub(r"\[(rabbitmq|redis)\]$", "", name), set()).add(outcome)
    assert set(by_test) == suite_tests, output
    failed = {name for name, outcomes in by_test.items() if outcomes != {"passed"}}
    assert failed == CELERYS_CASSANDRA_BACKEND_STORES_NO_EXTENDED_RESULT, output
    assert code == 1, output
    assert len(outcomes) == 2 * len(by_test)   # each test once per broker


def test_both_plugins_at_once_is_one_sentence(tmp_path):
    code, output, _ = run_suite(tmp_path, "-p", "celery.contrib.pytest", "-p", "pytest_celery_astra.celery_contrib",
                                "--co", timeout=120)
    assert code == 4, output
    assert "celery.contrib.pytest and pytest_celery_astra.celery_contrib are both active" in output
    assert "Traceback" not in output


PREFORK_CONFTEST = '''
import pytest


@pytest.fixture(scope="session")
def celery_worker_pool():
    return "prefork"   # what Celery's own integration suite sets
'''


def test_a_prefork_pool_is_one_sentence_at_once_before_any_service_starts(pytester):
    import time

    from tests.plugin.test_plugin import containers_of_run, run_id_of

    pytester.makeconftest(PREFORK_CONFTEST)
    pytester.makepyfile(test_prefork='''
        def test_one(celery_worker):
            pass

        def test_two(celery_worker):
            pass
    ''')
    started = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "pytest_celery_astra.celery_contrib",
                                           timeout=120)
    seconds = time.monotonic() - started
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*celery_worker_pool 'prefork' cannot run in the worker of "
                                 "pytest_celery_astra.celery_contrib*celery_astra_worker_process fixture.*"])
    assert "Traceback" not in result.stdout.str()
    assert seconds < 15, f"refused after {seconds:.1f} s"   # not the 10 s ping timeout per test, nor a container start
    assert containers_of_run(run_id_of(result)) == []


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
def test_loglevel_logfile_and_heartbeat_parameters_are_honoured(pytester):
    log = pytester.path / "worker.log"
    pytester.makeconftest(f'''
import pytest


@pytest.fixture(scope="session")
def celery_worker_parameters():
    return {{"loglevel": "INFO", "logfile": {str(log)!r}, "without_heartbeat": False}}


@pytest.fixture(scope="session")
def celery_includes():
    return ["tasks_here"]
''')
    pytester.makepyfile(tasks_here='''
        from celery import shared_task
        from celery.utils.log import get_task_logger

        logger = get_task_logger(__name__)


        @shared_task(name="tasks_here.add")
        def add(a, b):
            logger.info("adding %s and %s", a, b)
            return a + b
    ''')
    pytester.makepyfile(test_params='''
        def test_runs(celery_app, celery_worker):
            from tasks_here import add
            assert add.delay(2, 3).get(timeout=30) == 5
            assert celery_worker.loglevel == 20 or celery_worker.loglevel == "INFO"
            assert celery_worker.consumer.heart is not None   # Celery's Heart step ran: heartbeats on
    ''')
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "pytest_celery_astra.celery_contrib",
                                           timeout=300)
    result.assert_outcomes(passed=1)
    # As with Celery's start_worker (its test config leaves the root logger alone): task loggers log into the file.
    assert "adding 2 and 3" in log.read_text()
