"""Several brokers in one run: --celery-astra-broker-kind rabbitmq,redis runs each test that uses the
app or a worker once per broker, ids [rabbitmq] and [redis], with -n 0 and -n 2; the header lists both;
tests that use no worker run once; each broker really carries its tests' tasks."""

import pytest

from tests.plugin.test_plugin import USER_APP, containers_of_run, run_id_of

pytestmark = pytest.mark.usefixtures("container_engine")

MATRIX_TESTS = '''
import os
from pathlib import Path

from myapp import add

SCHEMES = {"rabbitmq": "amqp://", "redis": "redis://"}


def test_round_trip(celery_astra_worker, celery_astra_broker_url, celery_astra_broker_kind):
    assert celery_astra_broker_url.startswith(SCHEMES[celery_astra_broker_kind])
    assert add.delay(2, 3).get(timeout=30) == 5
    with open(Path(__file__).with_name("ran.txt"), "a") as ran:
        ran.write(f"{celery_astra_broker_kind} {os.environ.get('PYTEST_XDIST_WORKER', 'master')}\\n")


def test_worker_consumes_from_this_broker(celery_astra_app, celery_astra_worker, celery_astra_broker_kind):
    # The worker's own consumer connection, not only the app's configuration, is on this broker.
    transport = celery_astra_worker.app.connection_for_read().transport_cls
    assert transport in (("amqp", "pyamqp") if celery_astra_broker_kind == "rabbitmq" else ("redis",))
    assert add.apply_async((1, 1), countdown=0).get(timeout=30) == 2


def test_without_the_plugin():
    assert True
'''


@pytest.fixture
def project(pytester):
    pytester.makepyfile(myapp=USER_APP, test_matrix=MATRIX_TESTS)
    pytester.makeini("[pytest]\ncelery_astra_app = myapp:app\npythonpath = .\n")
    return pytester


def passed(output: str, test_id: str) -> bool:
    """-v prints "<id> PASSED" without xdist and "[gw0] [ 20%] PASSED <id>" with it."""
    return f"{test_id} PASSED" in output or f"PASSED {test_id}\n" in output + "\n" or f"PASSED {test_id} " in output


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_each_worker_test_runs_once_per_broker(project, xdist):
    result = project.runpytest_subprocess("--celery-astra-broker-kind", "rabbitmq,redis", "-v", *xdist,
                                          timeout=300)
    result.assert_outcomes(passed=5)
    output = result.stdout.str()
    for test in ("test_round_trip", "test_worker_consumes_from_this_broker"):
        for kind in ("rabbitmq", "redis"):
            assert passed(output, f"test_matrix.py::{test}[{kind}]"), output
    assert passed(output, "test_matrix.py::test_without_the_plugin")
    assert "test_without_the_plugin[" not in output
    result.stdout.fnmatch_lines([
        "celery-astra broker: container rabbitmq (image *), redis (image *); each test that uses the worker "
        "runs once per broker (option --celery-astra-broker-kind)*"])
    ran = sorted(line.split()[0] for line in (project.path / "ran.txt").read_text().splitlines())
    assert ran == ["rabbitmq", "redis"]
    assert containers_of_run(run_id_of(result)) == []


def test_a_broker_kind_named_twice_or_unknown_is_one_sentence(project):
    result = project.runpytest_inprocess("--celery-astra-broker-kind", "rabbitmq,kafka")  # refused at configure
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*option --celery-astra-broker-kind 'rabbitmq,kafka' is not valid for "
                                 "broker_kind*expected one of rabbitmq, redis, got 'kafka'*"])
    result = project.runpytest_inprocess("--celery-astra-broker-kind", "redis,redis")
    result.stderr.fnmatch_lines(["*is not valid for broker_kind*expected each broker once*"])


def test_the_example_fault_suite_passes_on_redis():
    """The sortWords fault suite on Redis with the worker thread: a Redis restart mid-flight and a paused
    Cassandra behave as with RabbitMQ. (RabbitMQ's half is the example's own -n 0 run in every nox session; both
    brokers in one run, the fault tests included and the services restored between the halves, is
    tests/plugin/test_process_worker.py's switches-brokers test; the rest of the example on both brokers is the
    shop matrix's thread/both cells, tests/plugin/test_matrix.py.)"""
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "sortwords"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "0", "-v", "-k", "faults",
         "--celery-astra-broker-kind", "redis"], cwd=example, capture_output=True, text=True, timeout=600)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert " 6 passed" in output, output  # the 6 fault tests, on Redis
    assert "test_faults.py::test_a_broker_restart_mid_flight_still_ends_in_success PASSED" in output, output


@pytest.mark.full_matrix   # four Cassandra containers at once: ~50 s on 2 cores alone, more beside the suite
def test_the_example_fault_suite_passes_at_n4_on_each_xdist_workers_own_containers():
    """`-n 4`: each xdist worker that may run a fault test has a Cassandra and a broker of its own (xdist_faults =
    own), so a restart or pause in one worker's test never reaches another's; every fault test passes, and the run
    leaves no container. (At -n 2 the example's fault tests run in every nox session's example-xdist run.)"""
    import re
    import subprocess
    import sys
    from pathlib import Path

    from tests.plugin.test_plugin import containers_of_run

    example = Path(__file__).resolve().parents[2] / "examples" / "sortwords"
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", "4", "-k", "faults"],
        cwd=example, capture_output=True, text=True, timeout=600)
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert re.search(r"\b6 passed\b", output) and "skipped" not in output.splitlines()[-1], output
    assert containers_of_run(re.search(r"run id (\w+)", output).group(1)) == []
