"""What one test sends, the next test never sees: queues purged, worker idle, countdowns cancelled, tables emptied — for the
default database and worker and for a second set made with the factories, with -n 0 and -n 2."""

import pytest

from tests.plugin.test_plugin import containers_of_run, run_id_of

pytestmark = pytest.mark.usefixtures("container_engine")

APPS = '''
import time

from celery import Celery

app = Celery("myapp")
billing = Celery("billing")


@app.task(name="myapp.slow")
def slow(n):
    time.sleep(0.05)
    return n


@billing.task(name="billing.slow")
def billing_slow(n):
    time.sleep(0.05)
    return n


@app.task(name="myapp.node", bind=True)
def node(self):
    return self.request.hostname


@billing.task(name="billing.node", bind=True)
def billing_node(self):
    return self.request.hostname
'''
CONFTEST = '''
from pytest_celery_astra import factories

billing_database = factories.database(keyspace_prefix="billing")
billing_app = factories.app("myapp:billing", database_fixture="billing_database")
billing_worker = factories.worker(app_fixture="billing_app")
'''
TESTS = '''
import time

import pytest
from celery.worker import state
from myapp import billing_slow, slow
from pytest_celery_astra.cassandra.app_state import state_of


def queue_depth(app, queue):
    with app.connection_for_write() as connection:
        return connection.default_channel.queue_declare(queue, passive=True).message_count


def held_for_later(worker):
    """Tasks the worker received for an ETA or countdown and holds in its timer, not yet started."""
    timer = worker.controller.consumer.timer
    return [entry for _, _, entry in timer.queue
            if not entry.canceled and getattr(entry.fun, "__name__", "") in ("apply_eta_task", "_limit_post_eta")]


def test_the_backend_connects_in_the_background_without_schema_metadata(celery_astra_app):
    """First in the file: nothing has asked the backend for a result yet."""
    backend = celery_astra_app.backend
    state_of(celery_astra_app).backend_connecting.join(30)
    assert backend._session is not None                          # connected by the app fixture's thread
    assert backend._cluster.schema_metadata_enabled is False     # Celery never reads it
    # Only the backend's own Cluster: the app's settings, which its own Clusters are made from, keep it.
    assert "schema_metadata_enabled" not in celery_astra_app.conf.cassandra_options


@pytest.mark.parametrize("round", range(3))
class TestSendAndForget:
    def test_sends_without_waiting(self, round, celery_astra_worker, billing_worker):
        slow.delay(0).get(timeout=30)          # the worker is up and consuming
        for n in range(3):
            slow.apply_async((n,), countdown=60)
            billing_slow.apply_async((n,), countdown=60)
        deadline = time.monotonic() + 30
        while len(held_for_later(celery_astra_worker)) < 3 or len(held_for_later(billing_worker)) < 3:
            assert time.monotonic() < deadline, "the workers never received the countdown tasks"
            time.sleep(0.01)
        for n in range(30):
            slow.delay(n)
            billing_slow.delay(n)

    def test_next_test_sees_nothing(self, round, celery_astra_worker, billing_worker, celery_astra_database,
                                    billing_database):
        assert not state.active_requests and not state.reserved_requests
        assert held_for_later(celery_astra_worker) == [] and held_for_later(billing_worker) == []
        assert queue_depth(celery_astra_worker.app, "celery") == 0
        assert queue_depth(billing_worker.app, "celery") == 0
        for db in (celery_astra_database, billing_database):
            assert db.session.execute(f"SELECT * FROM {db.result_table}").one() is None


# The janitor deletes a worker-only test's result rows without waiting (by the task ids the backend stored):
# the next test must still find a reused task id PENDING, and storing it again must not keep the old result.
def test_stores_fixed_task_ids(celery_astra_worker):
    for n in range(5):
        assert slow.apply_async((n,), task_id=f"fixed-{n}").get(timeout=30) == n


def test_the_next_test_finds_them_pending_and_stores_them_again(celery_astra_worker):
    for n in range(5):
        assert slow.AsyncResult(f"fixed-{n}").state == "PENDING"
        assert slow.apply_async((n + 10,), task_id=f"fixed-{n}").get(timeout=30) == n + 10


def test_a_task_id_whose_delete_is_in_flight_is_read_and_stored_after_it(celery_astra_worker, celery_astra_database):
    from pytest_celery_astra.cassandra.janitor import Janitor
    db = celery_astra_database
    DELETES = db.rows.deletes
    table = (db.keyspace, db.result_table)
    assert slow.apply_async((1,), task_id="reused").get(timeout=30) == 1
    assert celery_astra_worker.settle(timeout=10)  # the worker's own work on the task is over, as after a test
    Janitor(db).clean(deferred=True)               # what the plugin does after a worker-only test
    assert DELETES.pending(table, "reused")
    assert slow.AsyncResult("reused").state == "PENDING"
    assert not DELETES.pending(table, "reused")    # the read waited for the delete
    assert slow.apply_async((2,), task_id="reused").get(timeout=30) == 2
    assert celery_astra_worker.settle(timeout=10)
    Janitor(db).clean(deferred=True)
    assert slow.apply_async((3,), task_id="reused").get(timeout=30) == 3   # not Celery's kept first SUCCESS


# While a test's rows all come from this process, the backend skips Celery 5.7's read before storing an id
# it has not stored yet; an id stored twice is still read first, so Celery's rule (5.7 keeps the first
# SUCCESS; earlier releases store the last) holds.
def test_an_id_stored_twice_in_one_test_follows_celerys_rule(celery_astra_worker):
    import celery
    from pytest_celery_astra.cassandra.app_state import rows_of

    ROWS_ONLY_FROM_HERE = rows_of(slow.app).only_from_here   # the run's ledger, which the app fixture gave the app

    assert ROWS_ONLY_FROM_HERE.is_set()
    assert slow.apply_async((1,), task_id="twice").get(timeout=30) == 1
    slow.apply_async((2,), task_id="twice")
    assert slow.delay(3).get(timeout=30) == 3     # the solo worker runs in order: the second one is stored
    keeps_first = tuple(int(part) for part in celery.VERSION[:2]) >= (5, 7)
    assert slow.AsyncResult("twice").get(timeout=30) == (1 if keeps_first else 2)


# A row the test writes itself is not one the backend stored: the janitor finds it by reading the table.
def test_writes_a_result_row_itself(celery_astra_database):
    from pytest_celery_astra.cassandra.app_state import rows_of

    ROWS_ONLY_FROM_HERE = rows_of(slow.app).only_from_here   # the run's ledger, which the app fixture gave the app

    assert not ROWS_ONLY_FROM_HERE.is_set()        # it reaches the table: no id is known to be absent
    db = celery_astra_database
    db.session.execute(f"INSERT INTO {db.result_table} (task_id, status, date_done) "
                       f"VALUES ('written-by-hand', 'SUCCESS', toTimestamp(now()))")


def test_the_hand_written_row_is_gone(celery_astra_worker, celery_astra_database):
    db = celery_astra_database
    assert db.session.execute(f"SELECT * FROM {db.result_table}").one() is None


# The same with the Session got at run time (request.getfixturevalue), which no fixture list shows: the
# database sees the request itself, so the backend reads before it writes from then on (Celery 5.7 keeps the
# first SUCCESS, written here by hand), and the janitor finds the row by reading.
def test_gets_the_session_at_run_time_and_writes_a_success_row(request, celery_astra_worker):
    import celery
    from pytest_celery_astra.cassandra.app_state import rows_of

    ROWS_ONLY_FROM_HERE = rows_of(slow.app).only_from_here   # the run's ledger, which the app fixture gave the app

    assert ROWS_ONLY_FROM_HERE.is_set()
    db = request.getfixturevalue("celery_astra_database")
    db.session.execute(f"INSERT INTO {db.result_table} (task_id, status, result, date_done) "
                       f"VALUES ('by-hand-at-run-time', 'SUCCESS', textAsBlob('7'), toTimestamp(now()))")
    assert not ROWS_ONLY_FROM_HERE.is_set()
    slow.apply_async((8,), task_id="by-hand-at-run-time")
    assert slow.delay(0).get(timeout=30) == 0
    keeps_first = tuple(int(part) for part in celery.VERSION[:2]) >= (5, 7)
    assert slow.AsyncResult("by-hand-at-run-time").get(timeout=30) == (7 if keeps_first else 8)


def test_the_row_written_at_run_time_is_gone(celery_astra_worker, celery_astra_database):
    db = celery_astra_database
    assert db.session.execute(f"SELECT * FROM {db.result_table}").one() is None


def test_each_task_sees_its_own_workers_node_name(celery_astra_worker, billing_worker):
    from myapp import billing_node, node
    assert node.delay().get(timeout=30) == celery_astra_worker.hostname
    assert billing_node.delay().get(timeout=30) == billing_worker.hostname
    assert celery_astra_worker.hostname != billing_worker.hostname


def test_countdowns_still_run_after_held_ones_were_cancelled(celery_astra_worker):
    assert slow.apply_async((5,), countdown=0.2).get(timeout=30) == 5


def test_each_worker_stops_on_its_own(celery_astra_worker, billing_worker):
    billing_worker.stop()
    assert billing_worker.seconds_to_stop < 5
    assert celery_astra_worker.thread.is_alive()
    assert slow.delay(7).get(timeout=30) == 7     # the default worker still runs
'''


# Not on shared_brokers: at the dependency floors (kombu 5.3) its -n 0 run on the suite's kept RabbitMQ hung
# after its 15th test once (a full local run, 2026-12-06; not yet understood), so it keeps a broker of its own.
@pytest.mark.usefixtures("shared_cassandra")
@pytest.mark.parametrize("xdist", [[], ["-n", "2", "--dist", "loadscope"]], ids=["n0", "n2"])
def test_nothing_crosses_from_one_test_to_the_next(pytester, xdist):
    pytester.makepyfile(myapp=APPS, test_isolation=TESTS)
    pytester.makeconftest(CONFTEST)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = myapp:app\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", *xdist, timeout=300)
    result.assert_outcomes(passed=18)
    assert containers_of_run(run_id_of(result)) == []


# With cleanup off nothing is deleted: the backend may still skip Celery 5.7's read before storing an id it
# has not stored, until a test with another writer (here a row written by hand) has run; from then on it
# reads first again, so a first SUCCESS written by someone else is kept as Celery keeps it.
CLEANUP_OFF_TESTS = '''
import celery

from myapp import slow
from pytest_celery_astra.cassandra.app_state import rows_of

# The run's ledger, which the app fixture gave the app (a session fixture: it stays).
KEEPS_FIRST = tuple(int(part) for part in celery.VERSION[:2]) >= (5, 7)


def test_1_stores_an_id(celery_astra_worker):
    assert rows_of(slow.app).only_from_here.is_set()
    assert slow.apply_async((1,), task_id="kept").get(timeout=30) == 1


def test_2_the_row_is_kept_and_stored_again_by_celerys_rule(celery_astra_worker):
    assert rows_of(slow.app).only_from_here.is_set()
    slow.apply_async((2,), task_id="kept")
    assert slow.delay(0).get(timeout=30) == 0
    assert slow.AsyncResult("kept").get(timeout=30) == (1 if KEEPS_FIRST else 2)


def test_3_writes_a_success_row_by_hand(celery_astra_database):
    assert not rows_of(slow.app).only_from_here.is_set()
    db = celery_astra_database
    db.session.execute(f"INSERT INTO {db.result_table} (task_id, status, result, date_done) "
                       f"VALUES ('by-hand', 'SUCCESS', textAsBlob('7'), toTimestamp(now()))")


def test_4_after_another_writer_the_backend_reads_first_again(celery_astra_worker):
    assert not rows_of(slow.app).only_from_here.is_set()
    slow.apply_async((8,), task_id="by-hand")
    assert slow.delay(0).get(timeout=30) == 0
    assert slow.AsyncResult("by-hand").get(timeout=30) == (7 if KEEPS_FIRST else 8)
'''


@pytest.mark.usefixtures("shared_cassandra")
def test_with_cleanup_off_celerys_rule_holds_for_rows_of_earlier_tests(pytester):
    pytester.makepyfile(myapp=APPS, test_cleanup_off=CLEANUP_OFF_TESTS)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = myapp:app\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly",
                                           "--celery-astra-cleanup", "false", timeout=300)
    result.assert_outcomes(passed=4)
    assert containers_of_run(run_id_of(result)) == []


# The embedded worker's event loop otherwise turns only on I/O or its wake_interval timer: with the timer at
# ten minutes (both workers: the default one overridden by the same factory), every settle after a test,
# cancel of held countdown tasks and stop below must be woken by the worker's poke socket, or the run fails at
# the worker timeout (20 s here).
WAKE_ONLY_BY_POKE = CONFTEST.replace('factories.worker(app_fixture="billing_app")',
                                     'factories.worker(app_fixture="billing_app", wake_interval=600)') + '''
celery_astra_worker = factories.worker(wake_interval=600)
'''
assert "wake_interval=600)" in WAKE_ONLY_BY_POKE.partition("celery_astra_worker")[0]


@pytest.mark.usefixtures("shared_cassandra")
def test_settle_cancel_and_stop_do_not_wait_for_the_workers_timer(pytester):
    pytester.makepyfile(myapp=APPS, test_isolation=TESTS)
    pytester.makeconftest(WAKE_ONLY_BY_POKE)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = myapp:app\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly",
                                           "--celery-astra-worker-timeout", "20",
                                           "-k", "(TestSendAndForget and 0) or stops_on_its_own or background", timeout=300)
    result.assert_outcomes(passed=4)
    assert "did not stop" not in result.stdout.str()
    assert containers_of_run(run_id_of(result)) == []
