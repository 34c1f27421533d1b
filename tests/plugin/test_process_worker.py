"""The real `celery worker` command as the test worker: the example suite unchanged, 200 tasks over 2
prefork children, fork safety with and without the documented pattern, its log on failure, start and
stop times. Real RabbitMQ and Cassandra containers, pytest in a subprocess."""

import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.conftest import without_short_summary
from tests.plugin.test_plugin import containers_of_run

pytestmark = pytest.mark.usefixtures("container_engine")
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "sortwords"

FORKY_APP = '''
import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

app = Celery("forky")
session = None


def connect():
    from cassandra.cluster import Cluster

    conf = app.conf
    cluster = Cluster(conf.cassandra_servers, port=conf.cassandra_port, **(conf.cassandra_options or {}))
    return cluster.connect(conf.cassandra_keyspace)


@worker_init.connect
def connect_in_the_parent(**_):
    """As many apps do: one Session for the worker, made before the pool forks its children."""
    global session
    session = connect()


if os.environ.get("FORKY_SAFE"):
    @worker_process_init.connect
    def _new_session_after_fork(**_):
        global session
        session = None


@app.task(name="forky.write")
def write(n):
    global session
    if session is None:
        session = connect()
    session.execute("INSERT INTO forky_rows (n, pid) VALUES (%s, %s)", (n, os.getpid()), timeout=5)
    return os.getpid()
'''

FORKY_TESTS = '''
import pytest
from forky import write


@pytest.fixture(scope="session")
def rows(celery_astra_database):
    celery_astra_database.create_table("forky_rows", cql="CREATE TABLE forky_rows (n int PRIMARY KEY, pid int)")
    return celery_astra_database.session


def test_two_hundred_tasks_over_two_children(rows, celery_astra_worker_process):
    assert celery_astra_worker_process.pool == "prefork" and celery_astra_worker_process.concurrency == 2
    results = [write.delay(n) for n in range(200)]
    pids = {result.get(timeout=20) for result in results}   # without the pattern the first never comes
    assert len(pids) == 2, pids                       # both children ran tasks
    assert rows.execute("SELECT COUNT(*) FROM forky_rows").one()[0] == 200
    print(f"PROCESS-WORKER started in {celery_astra_worker_process.seconds_to_start:.2f} s")
'''


def run(project, *args, env=None, timeout=600):
    import os

    completed = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-s", *args], cwd=project,
                               capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})
    return completed.returncode, completed.stdout + completed.stderr


def forky_project(pytester):
    pytester.makepyfile(forky=FORKY_APP, test_forky=FORKY_TESTS)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = forky:app\npythonpath = .\n")
    return pytester.path


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_the_example_suite_runs_unchanged_against_celery_worker_processes(request, xdist):
    """-n 0 with the fault tests (its own containers: they restart them); -n 2 on the suite's Cassandra node, with
    one set of containers for the run (xdist_faults = skip: faults under xdist are the README's and the matrix's)."""
    if xdist:
        request.getfixturevalue("shared_cassandra")
    code, output = run(EXAMPLE, "--celery-astra-worker-kind", "process",
                       *([*xdist, "--celery-astra-xdist-faults", "skip"] if xdist else []))
    assert code == 0, output
    if xdist:
        assert_example_on_worker_processes(output, passed=11, skipped=7)   # the fault tests skip
    else:   # the 1 skipped: Astra only
        assert_example_on_worker_processes(output, passed=17, skipped=1)


def assert_example_on_worker_processes(output: str, passed: int, skipped: int) -> None:
    assert "process `celery worker` (option --celery-astra-worker-kind), pool prefork (default)" in output
    assert re.search(rf"\b{passed} passed, {skipped} skipped", output), output
    run_id = re.search(r"run id (\w+)", output).group(1)
    assert containers_of_run(run_id) == []
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout.splitlines()
    # no worker process of this run left (its node names carry the run id; other runs may be going on)
    assert [line for line in processes if "pytest_celery_astra.workers.process_app" in line and run_id in line] == []
    # nor its state directory, which holds each worker process's directory (wiring, log)
    assert not (Path(tempfile.gettempdir()) / f"pytest-celery-astra-{run_id}").exists()


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
def test_fork_safety_with_the_documented_pattern(pytester):
    code, output = run(forky_project(pytester), env={"FORKY_SAFE": "1"})
    assert code == 0, output
    print(re.search(r"PROCESS-WORKER .*", output).group(0))


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
def test_without_the_pattern_a_session_made_before_the_fork_fails_in_the_children(pytester):
    # Its children hang on the dead session: the settle after the test and the worker's stop each wait out
    # worker_timeout (20 s by default), which is not what this test is about.
    code, output = run(forky_project(pytester), "-x", "--celery-astra-worker-timeout", "8", env={"FORKY_SAFE": ""},
                       timeout=900)
    assert code == 1, output
    # In the child the driver's I/O thread is gone: the query never returns, and neither does the result.
    assert re.search(r"OperationTimedOut|NoHostAvailable|TimeoutError", output), output
    assert "celery worker process celery_astra_" in output   # the worker's log, attached to the failure


@pytest.mark.serial   # any run on the host reaps a killed run's leftovers: the next one here must be the first
def test_the_worker_process_dies_with_a_killed_pytest(pytester):
    """SIGKILL (OOM killer, a dying CI runner) skips every teardown: the parent-death signal still ends it."""
    import os
    import signal
    import time

    project = forky_project(pytester)
    (project / "test_forky.py").write_text(
        "import os, time\n"
        "from pathlib import Path\n\n"
        "def test_waits(celery_astra_worker_process):\n"
        "    Path(os.environ['READY_FILE']).write_text(str(celery_astra_worker_process.process.pid))\n"
        "    time.sleep(300)\n")
    ready = project / "ready"
    killed_output = project / "killed-output.txt"
    with killed_output.open("w") as sink:
        process = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider"], cwd=project,
                                   env={**os.environ, "READY_FILE": str(ready), "FORKY_SAFE": "1"},
                                   stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert time.monotonic() < deadline and process.poll() is None, "the worker process never started"
            time.sleep(0.1)
        worker_pid = int(ready.read_text())
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        deadline = time.monotonic() + 15
        while _alive(worker_pid):
            assert time.monotonic() < deadline, "the worker process outlived the killed pytest"
            time.sleep(0.1)
    finally:
        if process.poll() is None:
            process.kill()
    killed_run = re.search(r"run id (\w+)", killed_output.read_text()).group(1)
    assert containers_of_run(killed_run), "SIGKILL skipped every teardown: its containers are still there"
    # The killed run's containers: the next run on this host (serial: no other run reaps them first) removes them,
    # and says so — with -q the header is hidden, so in the warnings summary.
    code, output = run(project, "--collect-only", "-q", "-p", "no:randomly")
    assert "pytest-celery-astra: removed what killed earlier runs left: " in output, output
    assert containers_of_run(killed_run) == [], output


def _alive(pid: int) -> bool:
    """Exists and is not a zombie (an orphan is reaped by whoever adopted it, maybe later)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


RESTART_TESTS = '''
import os
import signal
import time

from forky import write


def test_a_worker_process_that_starts_again_finds_its_wiring(rows, celery_astra_worker_process):
    worker = celery_astra_worker_process
    assert write.delay(1).get(timeout=30)
    wiring = list(worker.directory.glob("config.json"))
    assert wiring and oct(wiring[0].stat().st_mode & 0o777) == "0o600"   # private, for the whole run
    before = worker.log_path.read_text()
    os.kill(worker.process.pid, signal.SIGHUP)       # Celery re-executes `celery worker` in place
    deadline = time.monotonic() + 60
    while "Restarting celery worker" not in worker.log_path.read_text():
        assert time.monotonic() < deadline, "the worker never restarted"
        time.sleep(0.1)
    assert write.delay(2).get(timeout=60)            # the new program read the same wiring
    assert worker.process.poll() is None, worker.log_tail()
    assert "Unable to load celery application" not in worker.log_path.read_text()[len(before):]
    print("WORKER-DIR", worker.directory)
'''


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
def test_a_worker_process_restarted_in_place_reads_its_wiring_again(pytester):
    project = forky_project(pytester)
    (project / "test_forky.py").write_text(FORKY_TESTS.split("def test_two_hundred")[0] + RESTART_TESTS)
    code, output = run(project, env={"FORKY_SAFE": "1"})
    assert code == 0, output
    directory = Path(re.search(r"WORKER-DIR (\S+)", output).group(1))
    assert not directory.exists()                     # removed with the run


WHO_APP = '''
import os

from celery import Celery

app = Celery("who")


@app.task(name="who.pid")
def pid():
    return os.getpid()
'''

WHO_TESTS = '''
import os

from who import pid


def ran_on(n=8):
    return {result.get(timeout=30) for result in [pid.delay() for _ in range(n)]}


def test_1_thread_worker(celery_astra_worker):
    assert ran_on() == {os.getpid()}


def test_2_process_worker_alone_runs_its_tests_tasks(celery_astra_worker_process):
    # The thread worker, started by the test before, stands by: every task runs in the worker process.
    assert os.getpid() not in ran_on()


def test_3_thread_worker_again_while_the_process_worker_lives(celery_astra_worker):
    assert ran_on() == {os.getpid()}


def test_4_both_share_the_queue_on_purpose(celery_astra_worker, celery_astra_worker_process):
    assert ran_on(40) - {os.getpid()}                 # the process worker takes some
'''


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
@pytest.mark.parametrize("xdist", [[], ["-n", "2", "--dist", "loadfile"]], ids=["n0", "n2"])
def test_a_test_gets_the_worker_it_asked_for(pytester, xdist):
    pytester.makepyfile(who=WHO_APP, test_who=WHO_TESTS)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = who:app\npythonpath = .\n")
    code, output = run(pytester.path, "-p", "no:randomly", *xdist)
    assert code == 0, output
    assert re.search(r"\b4 passed", output), output


CRASHY_APP = '''
import os
import signal
import time

from celery import Celery
from celery.signals import worker_process_init

app = Celery("crashy")


@app.task(name="crashy.crash")
def crash(how):
    if how == "kill":             # as the OOM killer does
        os.kill(os.getpid(), signal.SIGKILL)
    os._exit(13)


@app.task(name="crashy.pid")
def pid(barrier):
    # Held until two children have each taken one (a barrier in files, not a sleep): both answer, or 10 s pass.
    open(os.path.join(barrier, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 10
    while len(os.listdir(barrier)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()
'''

CRASHY_TESTS = '''
import pytest
from crashy import crash, pid


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_after_a_crashed_child_every_child_answers(celery_astra_worker_process, how, tmp_path):
    with pytest.raises(Exception, match="exited prematurely|signal 9"):
        crash.delay(how).get(timeout=30)
    pids = {result.get(timeout=15) for result in [pid.delay(str(tmp_path)) for _ in range(6)]}
    assert len(pids) == 2         # the surviving child and its replacement
'''


def crashy_project(pytester, with_fix: bool):
    fix = snippets_of("crashfix")["tasks.py"] if with_fix else ""
    pytester.makepyfile(crashy=CRASHY_APP + "\n" + fix, test_crashy=CRASHY_TESTS)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = crashy:app\npythonpath = .\n")
    return pytester.path


def snippets_of(group):
    from tests.plugin.test_readme import snippets

    return snippets(group)


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
def test_stock_celery_hangs_the_task_after_a_crashed_child_and_the_plugin_stays_faithful(pytester):
    """Celery's Cassandra backend (stock as under the plugin): the worker's main process stores the
    WorkerLostError, which connects a driver Session in the parent; the replacement child is forked with it,
    and its first result write never returns. Production hangs the same way (see the README)."""
    code, output = run(crashy_project(pytester, with_fix=False), "-k", "exit", "--celery-astra-worker-timeout", "3",
                       timeout=300)
    assert code == 1, output
    assert "TimeoutError" in output and "len(pids) == 2" not in output, output


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
@pytest.mark.parametrize("broker", ["rabbitmq", "redis"])
def test_with_the_documented_fix_a_crashed_child_leaves_the_worker_whole(pytester, broker):
    code, output = run(crashy_project(pytester, with_fix=True), "--celery-astra-broker-kind", broker, timeout=300)
    assert code == 0, output
    assert re.search(r"\b2 passed", output), output


GONE_TESTS = '''
import os
import signal

from who import pid


def test_1_the_worker_process_dies_mid_test(celery_astra_worker_process):
    os.kill(celery_astra_worker_process.process.pid, signal.SIGKILL)
    celery_astra_worker_process.process.wait(10)
    pid.delay().get(timeout=30)


def test_2_a_later_test_is_told_in_one_sentence(celery_astra_worker_process):
    pid.delay().get(timeout=30)


def test_3_and_the_next(celery_astra_worker_process):
    pid.delay().get(timeout=30)
'''


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
def test_a_worker_process_that_died_fails_its_test_with_the_log_and_later_ones_in_one_sentence(pytester):
    pytester.makepyfile(who=WHO_APP, test_gone=GONE_TESTS)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = who:app\npythonpath = .\n")
    code, output = run(pytester.path, "-p", "no:randomly")
    assert code == 1, output
    # the test that saw it die fails; the two later ones error at set-up, before their call runs
    assert re.search(r"\b1 failed, 2 errors\b", output), output
    # the log once, with the test that saw it (pytest's summary repeats the message: in full where CI is set)
    assert without_short_summary(output).count("exited with -9; its log:") == 1, output
    sentence = "exited with -9 during an earlier test (its log is in that test's report), so this test cannot use it"
    assert output.count(sentence) >= 2, output


# In CI the combination matrix's cells cover both (tests/plugin/test_matrix.py): -n 2 (fault tests skip there) is
# process-both-n2; -n 0 with the fault tests is both-both-n0 (worker processes and threads on both brokers, a broker
# and a Cassandra restart), and the example itself on worker processes runs above on RabbitMQ. At ~140 s the suite's
# longest test, it runs in full local runs.
@pytest.mark.parametrize("xdist", [pytest.param([], marks=pytest.mark.full_matrix),
                                   pytest.param(["-n", "2"], marks=pytest.mark.full_matrix)], ids=["n0", "n2"])
def test_the_example_suite_on_worker_processes_switches_brokers_cleanly(xdist):
    """Both brokers in one run, the fault tests included (-n 0): the app, its worker process and remote
    control move to Redis after the RabbitMQ half (a closed pool of the first broker was cached again by the
    old worker's stop: every later ping failed with "Acquire on closed pool"); after each Cassandra restart
    every prefork child's result backend and the app's own Sessions are back before the test goes on."""
    import kombu

    # kombu before 5.4 stops consuming from a restarted Redis (celery#8091, as in production; docs/faults.md):
    # a worker process is not restarted for it, so there the Redis half runs without the fault tests.
    old_kombu = tuple(int(part) for part in kombu.__version__.split(".")[:2]) < (5, 4)
    deselect = ["-k", "not (faults and redis)"] if old_kombu and not xdist else []
    code, output = run(EXAMPLE, "--celery-astra-worker-kind", "process", "--celery-astra-broker-kind", "rabbitmq,redis",
                       *deselect, *xdist)
    assert code == 0, output
    if xdist:
        assert_example_on_worker_processes(output, passed=22, skipped=14)
    else:   # the 2 skipped: Astra only
        assert_example_on_worker_processes(output, passed=28 if old_kombu else 34, skipped=2)


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
def test_thread_and_process_workers_switch_brokers_cleanly(pytester):
    pytester.makepyfile(who=WHO_APP, test_who=WHO_TESTS)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = who:app\npythonpath = .\n")
    code, output = run(pytester.path, "-p", "no:randomly", "--celery-astra-broker-kind", "rabbitmq,redis")
    assert code == 0, output
    assert re.search(r"\b8 passed", output), output


# A task defined in a test module (on the user's app) is known to the worker process too: pytest imported
# the module while collecting, and the worker process imports the modules that define the app's tasks.
TASK_IN_A_TEST_MODULE = '''
import os

from who import app


@app.task(name="tests.defined_here")
def defined_here(x):
    return [x * 2, os.getpid()]


def test_a_task_defined_in_this_module_runs_on_the_worker_process(celery_astra_worker_process):
    doubled, pid = defined_here.delay(21).get(timeout=30)
    assert doubled == 42 and pid != os.getpid()
'''


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
def test_a_task_defined_in_a_test_module_runs_on_the_worker_process(pytester):
    pytester.makepyfile(who=WHO_APP, test_here=TASK_IN_A_TEST_MODULE)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = who:app\npythonpath = .\n")
    code, output = run(pytester.path, "-p", "no:randomly")
    assert code == 0, output
    assert re.search(r"\b1 passed", output), output


# A second app on the real worker process, as the README's one line has it.
BILLING_APP = '''
import os

from celery import Celery

app = Celery("billing")


@app.task(name="billing.invoice")
def invoice(number):
    return [f"invoice {number}", os.getpid()]
'''

BILLING_CONFTEST = '''
from pytest_celery_astra import factories

billing_database = factories.database(keyspace_prefix="billing")
billing_app = factories.app("billing:app", database_fixture="billing_database")
billing_process = factories.worker_process(app_fixture="billing_app")
'''

BILLING_TESTS = '''
import os

from billing import invoice
from who import pid


def test_the_second_app_runs_on_its_worker_process(billing_process, billing_database):
    text, worker_pid = invoice.delay(7).get(timeout=30)
    assert text == "invoice 7" and worker_pid != os.getpid()   # a prefork child of the worker process
    assert billing_database.keyspace.startswith("billing")


def test_the_default_app_beside_it(celery_astra_worker, billing_process):
    assert pid.delay().get(timeout=30) == os.getpid()          # the thread worker
    assert invoice.delay(8).get(timeout=30)[1] != os.getpid()   # the process worker
'''


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_a_second_app_on_its_own_worker_process(pytester, xdist):
    pytester.makepyfile(who=WHO_APP, billing=BILLING_APP, test_billing=BILLING_TESTS)
    pytester.makeconftest(BILLING_CONFTEST)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = who:app\npythonpath = .\n")
    code, output = run(pytester.path, "-p", "no:randomly", *xdist)
    assert code == 0, output
    assert re.search(r"\b2 passed", output), output


BOTH_PROCESS_WORKERS_TESTS = '''
from who import pid


def test_1_the_default_worker_is_a_process(celery_astra_worker):
    assert pid.delay().get(timeout=30)


def test_2_the_worker_process_fixture_beside_it(celery_astra_worker_process):
    assert pid.delay().get(timeout=30)


def test_3_both_at_once(celery_astra_worker, celery_astra_worker_process):
    assert celery_astra_worker.hostname != celery_astra_worker_process.hostname
    assert pid.delay().get(timeout=30)
'''


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
def test_two_worker_processes_of_one_app_never_share_a_node_name(pytester):
    """With --celery-astra-worker-kind process, celery_astra_worker and celery_astra_worker_process are both
    `celery worker` processes of one app: the second used to take the first's node name, and RabbitMQ refused
    it the exclusive pidbox queue (RESOURCE_LOCKED), failing every later test."""
    pytester.makepyfile(who=WHO_APP, test_both=BOTH_PROCESS_WORKERS_TESTS)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = who:app\npythonpath = .\n")
    code, output = run(pytester.path, "-p", "no:randomly", "--celery-astra-worker-kind", "process")
    assert code == 0, output
    assert re.search(r"\b3 passed", output), output
    assert "RESOURCE_LOCKED" not in output
