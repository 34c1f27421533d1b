"""Every failure explains itself: a user's suite plants each way a task's result can fail to come back, in one
pytest run (-n 0, the thread worker and the real worker process), and each failing test says why — in the
TimeoutError itself, fast (a 2 s .get() timeout, no 120 s wait) — and lists what each task it sent did in its
report; a passing test gets nothing."""

import json
import re

import pytest

from tests.plugin.test_plugin import containers_of_run, run_id_of

pytestmark = pytest.mark.usefixtures("container_engine", "shared_cassandra", "shared_brokers")

SHOP = '''
"""A shop whose tasks fail to come back in every way the plugin can see."""
import os
import time

from celery import Celery
from celery.backends.cache import CacheBackend

app = Celery("shop")
app.conf.task_routes = {"shop.restock": {"queue": "restock"}}   # a queue no worker is told to consume


@app.task(name="shop.price")
def price(quantity, unit):
    return quantity * unit


@app.task(name="shop.restock")
def restock(item):
    return f"restocked {item}"


@app.task(name="shop.hold")
def hold(path):
    """Runs until the test releases it (the file appears), at most 10 s."""
    deadline = time.monotonic() + 10
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return "released"


@app.task(name="shop.flaky", bind=True, max_retries=None)
def flaky(self):
    raise self.retry(exc=ValueError("the supplier did not answer"), countdown=60)


@app.task(name="shop.boom")
def boom(url):
    raise RuntimeError(f"cannot reach {url}")


@app.task(name="shop.audit", backend=CacheBackend(app=app, backend="memory://"))
def audit():
    return "audited"


@app.task(name="shop.crash")
def crash():
    os._exit(13)
'''

# Records, for every test, the plugin's report section (none for a passing test) and the call's duration.
CONFTEST = '''
import json
import os


def pytest_runtest_logreport(report):
    if report.when == "setup" and not report.failed:
        return
    path = os.environ["WHY_SECTIONS"]
    seen = json.load(open(path)) if os.path.exists(path) else {}
    entry = seen.setdefault(report.nodeid.split("::")[-1], {})
    entry[report.when] = {"outcome": report.outcome, "duration": report.duration,
                          "sections": {title: text for title, text in report.sections
                                       if title.startswith("pytest-celery-astra")}}
    json.dump(seen, open(path, "w"))
'''

TESTS = '''
import pytest
from celery.exceptions import WorkerLostError

from shop import audit, boom, crash, flaky, hold, price, restock


def test_a_no_worker_runs(celery_astra_app):
    price.delay(1, 2).get(timeout=2)


def test_b_a_queue_no_worker_consumes(celery_astra_worker):
    restock.delay("apples").get(timeout=2)


def test_c_still_running_on_the_worker_thread(celery_astra_worker, tmp_path):
    try:
        hold.delay(str(tmp_path / "release")).get(timeout=2)
    finally:
        (tmp_path / "release").touch()


def test_d_retried(celery_astra_worker):
    flaky.delay().get(timeout=2)


def test_e_held_for_its_eta(celery_astra_worker):
    price.apply_async((2, 2), countdown=60).get(timeout=2)


def test_f_stored_elsewhere(celery_astra_worker, celery_astra_app):
    celery_astra_app.AsyncResult(audit.delay().id).get(timeout=2)


def test_g_asks_for_no_worker_while_one_runs(celery_astra_app):
    price.delay(3, 3).get(timeout=2)


def test_h_a_failure_the_test_did_not_look_at(celery_astra_worker, celery_astra_broker_url):
    boom.delay(celery_astra_broker_url.unmasked())
    assert price.delay(2, 3).get(timeout=10) == 7


def test_i_unregistered(celery_astra_worker, celery_astra_app):
    celery_astra_app.send_task("shop.ghost").get(timeout=10)


def test_j_passes(celery_astra_worker):
    assert price.delay(2, 3).get(timeout=10) == 6


def test_k_still_running_in_a_child(celery_astra_worker_process, tmp_path):
    try:
        hold.delay(str(tmp_path / "release")).get(timeout=2)
    finally:
        (tmp_path / "release").touch()


def test_l_after_a_lost_prefork_child(celery_astra_worker_process):
    with pytest.raises(WorkerLostError):
        crash.delay().get(timeout=30)
    price.delay(2, 2).get(timeout=2)
'''

# What each planted failure says, after "The operation timed out. (pytest-celery-astra: " (regular expressions).
SAYS = {
    "test_a_no_worker_runs": r"no worker runs for this app, so nothing consumes queue 'celery'; 1 message waits there; "
                             r"ask for celery_astra_worker \(a worker thread\) or celery_astra_worker_process \(a "
                             r"`celery worker` process\) in this test\.\)",
    "test_b_a_queue_no_worker_consumes": r"shop\.restock\[[-\w]+\] went to queue 'restock', which no running worker "
                                         r"consumes \(celery_astra_worker \({NODE}\) consumes "
                                         r"'celery'\); 1 message waits there\. Route the task to a queue a worker "
                                         r"consumes .* celery_astra_queues = restock in the ini file, "
                                         r"--celery-astra-queues restock, or factories\.worker",
    "test_c_still_running_on_the_worker_thread": r"shop\.hold\[[-\w]+\] is still running on celery_astra_worker "
                                                 r"\({NODE}, a worker thread of this process, in "
                                                 r"thread [^)]+\), started [12]\.\d s ago",
    "test_d_retried": r"shop\.flaky\[[-\w]+\] was retried 1 time and has no result yet: its result row says RETRY "
                      r"\(ValueError\('the supplier did not answer'\)\); its next attempt is due at \S+ \(in 5\d\.\d s\)",
    "test_e_held_for_its_eta": r"shop\.price\[[-\w]+\] is held by celery_astra_worker \({NODE}\) "
                               r"until its ETA, \S+ \(in 5\d\.\d s\): \.get\(\) cannot return before then\.",
    "test_f_stored_elsewhere": r"task shop\.audit stores its results with a backend of its own \(CacheBackend.*\), not "
                               r"in celery_astra_\w+\.\w+, where this \.get\(\) reads",
    "test_g_asks_for_no_worker_while_one_runs": r"this test asked for no worker: celery_astra_worker "
                                                r"\({NODE}\) stands by \(only the workers a test asks "
                                                r"for consume\), so nothing consumes queue 'celery'; 1 message waits "
                                                r"there; ask for celery_astra_worker in this test\.",
    "test_k_still_running_in_a_child": r"shop\.hold\[[-\w]+\] is still running on worker process "
                                       r"{NODE} \(child pid \d+\), started [12]\.\d s ago",
    "test_l_after_a_lost_prefork_child": r"worker process {NODE} lost a prefork child "
                                         r"\(ForkPoolWorker-\d+, pid \d+, exitcode 13\) at \+\d+ ms, and "
                                         r"shop\.price\[[-\w]+\], received after it at \+\d+ ms, has stored no result "
                                         r"\(it is still active in child pid \d+, .*\): after a lost child, .* "
                                         r"Fix: connect the result backend again in each child with a "
                                         r"worker_process_init handler",
}
# A worker's node name (celery_astra_<run id>_<xdist worker>_<fixture>[_process]@<host>).
NODE = r"celery_astra_\w+@[-\w.]+"
# A planted timeout's test returns within its 2 s .get() and the plugin's bounded look (the lost child: + the crash).
FAST = 5.0


def test_every_planted_failure_says_why_fast_and_lists_what_its_tasks_did(pytester, monkeypatch):
    pytester.makepyfile(shop=SHOP, test_shop_why=TESTS)
    pytester.makeconftest(CONFTEST)
    (pytester.path / "pytest.ini").write_text(
        "[pytest]\ncelery_astra_app = shop:app\npythonpath = .\ncelery_astra_worker_process_concurrency = 1\n")
    sections_file = pytester.path / "sections.json"
    monkeypatch.setenv("WHY_SECTIONS", str(sections_file))
    # A lost child leaves its replacement hanging on the last test's task: settled and stopped within 5 s each.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", "-n", "0",
                                           "--celery-astra-worker-timeout", "5", timeout=600)
    output = result.stdout.str()
    result.assert_outcomes(failed=11, passed=1)
    for test, says in SAYS.items():
        block = _block(output, test)
        assert has(r"E +celery\.exceptions\.TimeoutError: The operation timed out\. \(pytest-celery-astra: "
                         + says, block), f"{test}:\n{block}"
    reports = json.loads(sections_file.read_text())
    for test in SAYS:
        limit = FAST + (5.0 if test == "test_l_after_a_lost_prefork_child" else 0.0)
        assert reports[test]["call"]["duration"] < limit, (test, reports[test]["call"]["duration"])

    section = "pytest-celery-astra: the tasks this test sent"
    assert reports["test_j_passes"]["call"]["sections"] == {}              # a passing test: nothing added
    assert all(section in reports[test]["call"]["sections"] for test in reports if test != "test_j_passes")

    unlooked = reports["test_h_a_failure_the_test_did_not_look_at"]["call"]["sections"][section]
    assert has(r"^2 tasks \(times from the test's start\):\n"
                     r"shop\.boom\[[-\w]+\] queue 'celery', taken by {NODE}\n"
                     r" +\+\d+ ms  published to queue 'celery'\n"
                     r" +\+\d+ ms  received by {NODE}\n"
                     r" +\+\d+ ms  started \(thread [^)]+\)\n"
                     r" +\+\d+ ms  failed: RuntimeError\('cannot reach amqp://[^@']*\*\*\*@[^']+'\)\n"
                     r"shop\.price\[[-\w]+\] queue 'celery', taken by {NODE}\n"
                     r"(.*\n){3} +\+\d+ ms  succeeded$", unlooked), unlooked
    assert "guest:guest" not in unlooked                                    # the broker's password, masked

    retried = reports["test_d_retried"]["call"]["sections"][section]
    assert has(r"^1 task .*\nshop\.flaky\[[-\w]+\] queue 'celery', taken by {NODE}, retried 1 time\n", retried), retried
    for line in (r"retry: Retry in 60s: ValueError\('the supplier did not answer'\)",   # the attempt, then its
                 r"published to queue 'celery', ETA in (59|60)\.\d s \(again\)",      # next one, received
                 r"received by {NODE}\n  no result: shop\.flaky\[[-\w]+\] is held by"):  # and held for its ETA
        assert has(r"\n +\+\d+ ms  " + line, retried), (line, retried)

    unknown = reports["test_i_unregistered"]["call"]["sections"][section]
    assert has(r"not registered on {NODE}: it has shop\.audit, shop\.boom, shop\.crash, "
                     r"shop\.flaky, shop\.hold, shop\.price, shop\.restock", unknown), unknown

    lost = reports["test_l_after_a_lost_prefork_child"]["call"]["sections"][section]
    assert has(r"shop\.crash\[[-\w]+\] queue 'celery', taken by {NODE}\n"
                     r" +\+\d+ ms  published to queue 'celery'\n +\+\d+ ms  received by {NODE}\n", lost), lost
    assert has(r"shop\.price\[[-\w]+\] .*\n(.*\n){2}  no result: worker process {NODE} lost a prefork child", lost), lost

    nowhere = reports["test_b_a_queue_no_worker_consumes"]["call"]["sections"][section]
    assert has(r"^1 task \(times from the test's start\):\nshop\.restock\[[-\w]+\] queue 'restock'\n"
                     r" +\+\d+ ms  published to queue 'restock'\n  no result: shop\.restock\[[-\w]+\] went to queue "
                     r"'restock', which no running worker consumes", nowhere), nowhere
    assert containers_of_run(run_id_of(result)) == []


def _block(output: str, test: str) -> str:
    """The failure report of ``test`` in pytest's output (its ``____ test ____`` header to the next one)."""
    match = re.search(rf"_{{3,}} {test} _{{3,}}\n(.*?)(?=\n_{{3,}} \w+ _{{3,}}\n|\n={{3,}} )", output, re.S)
    assert match, f"no failure report for {test}:\n{output}"
    return match.group(1)


def has(pattern: str, text: str):
    """``re.search`` with ``{NODE}`` standing for a worker's node name."""
    return re.search(pattern.replace("{NODE}", NODE), text)
