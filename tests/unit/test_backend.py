"""The plugin's result backend (cassandra/backend.py) against a fake driver: what it stores is what Celery's
own CassandraBackend stores (same statements, same values), the read it skips is one that could find
nothing, and .get()'s waiting (poll interval, wake-up, health check, timeouts) behaves as documented.

The fake keeps rows per task id and answers Celery's three statements by their text; it counts the
statements each backend sends."""

from __future__ import annotations

import datetime
import threading
import time

import pytest
from celery import Celery, states
from celery.backends.cassandra import CassandraBackend
from celery.exceptions import TimeoutError as CeleryTimeoutError

from pytest_celery_astra.cassandra import backend as backend_module
from pytest_celery_astra.cassandra.app_state import rows_of, state_of
from pytest_celery_astra.cassandra.backend import CHORD_UNLOCK_INTERVAL, TestCassandraBackend

NOW = datetime.datetime(2026, 12, 2, 8, 0, 0)


class FakeResult:
    def __init__(self, rows):
        self.rows = rows

    def one(self):
        return self.rows[0] if self.rows else None


class FakePrepared:
    def __init__(self, query_string):
        self.query_string = query_string
        self.consistency_level = None


class FakeSession:
    """Celery's INSERT, SELECT and CREATE, by their text; rows are tuples, as the backend asks for."""

    def __init__(self, table: dict, fail_reads: Exception | None = None):
        self.table = table
        self.sent: list[str] = []
        self.fail_reads = fail_reads
        self.row_factory = None

    def prepare(self, query):
        return FakePrepared(query)

    def execute(self, statement, parameters=(), timeout=None):
        query = getattr(statement, "query_string", statement)
        kind = query.split()[0].upper()
        self.sent.append(kind)
        if kind == "INSERT":
            task_id, status, result, date_done, traceback, children = parameters
            self.table[task_id] = (status, bytes(result), date_done, bytes(traceback or b""), bytes(children or b""))
            return FakeResult([])
        if kind == "SELECT":
            if self.fail_reads is not None:
                raise self.fail_reads
            row = self.table.get(parameters[0])
            return FakeResult([row] if row else [])
        return FakeResult([])


class FakeCluster:
    session: FakeSession

    def __init__(self, *args, **kwargs):
        pass

    def connect(self, keyspace=None):
        return self.session

    def shutdown(self):
        pass


@pytest.fixture
def app():
    app = Celery("unit", set_as_current=False)
    app.conf.update(cassandra_servers=["127.0.0.1"], cassandra_keyspace="ks", cassandra_table="results",
                    cassandra_read_consistency="ONE", cassandra_write_consistency="ONE",
                    result_backend_thread_safe=True)
    app.now = lambda: NOW
    # each test's app gets a state (and ledger) of its own on first use (state_of)
    yield app
    app.close()


@pytest.fixture
def rows():
    return {}


@pytest.fixture
def driver(monkeypatch, rows):
    """cassandra.cluster.Cluster replaced: every backend connects to one FakeSession over ``rows``."""
    import cassandra.cluster

    session = FakeSession(rows)
    FakeCluster.session = session
    monkeypatch.setattr(cassandra.cluster, "Cluster", FakeCluster)
    monkeypatch.setattr(backend_module, "_rows_as_tuples", lambda cluster, session: None)
    yield session


def stock(app) -> CassandraBackend:
    return CassandraBackend(app=app)


def ours(app) -> TestCassandraBackend:
    return TestCassandraBackend(app=app)


@pytest.mark.parametrize("state, value", [(states.SUCCESS, {"sorted": "a b"}), (states.FAILURE, ValueError("no"))])
def test_the_row_stored_is_the_row_celery_stores(app, driver, rows, state, value):
    stock(app).store_result("celery-id", value, state)
    celery_row = rows.pop("celery-id")
    ours(app).store_result("celery-id", value, state)
    assert rows["celery-id"] == celery_row
    # And it reads back as Celery's own backend reads it.
    theirs, mine = stock(app).get_task_meta("celery-id"), ours(app).get_task_meta("celery-id")
    assert (mine["status"], repr(mine["result"]), mine["date_done"]) == (
        theirs["status"], repr(theirs["result"]), theirs["date_done"])


def test_no_create_table_is_sent(app, driver):
    ours(app).store_result("id-1", 1, states.SUCCESS)
    assert "CREATE" not in driver.sent


def test_the_read_before_the_write_is_skipped_only_for_an_id_that_has_no_row(app, driver, rows):
    # Celery 5.7+ reads a row before writing it; earlier releases only write, and so does the plugin there.
    celery_reads = "SELECT" if backend_module.CELERY_READS_BEFORE_WRITE else "INSERT"
    backend = ours(app)
    rows_of(app).only_from_here.set()
    driver.sent.clear()
    backend.store_result("fresh", 1, states.SUCCESS)
    assert driver.sent == ["INSERT"]                 # provably absent: no read
    driver.sent.clear()
    backend.store_result("fresh", 2, states.FAILURE)  # stored before: as Celery (keep the first SUCCESS)
    assert driver.sent[0] == celery_reads
    rows_of(app).only_from_here.clear()                        # another writer may have rows: as Celery
    driver.sent.clear()
    backend.store_result("other", 1, states.SUCCESS)
    assert driver.sent[0] == celery_reads


def test_keep_first_success_is_celerys_on_this_release(app, driver, rows):
    """Whatever the installed Celery does with a second store of a SUCCESS id, the plugin's backend does."""
    stock(app).store_result("twice", "first", states.SUCCESS)
    stock(app).store_result("twice", "second", states.FAILURE)
    celery_row = rows.pop("twice")
    rows_of(app).only_from_here.set()
    backend = ours(app)
    backend.store_result("twice", "first", states.SUCCESS)
    backend.store_result("twice", "second", states.FAILURE)
    assert rows["twice"] == celery_row


def test_get_returns_once_the_row_is_ready_and_wakes_on_a_store_here(app, driver):
    backend = ours(app)
    # Neither the poll (60 s) nor Celery's explicit 0.5 s may end the wait: only the wake-up can, well
    # inside join's 10 s. The store comes once the waiter has read and found nothing (it is asleep).
    app.conf.celery_astra_result_poll_interval = 60.0
    stored = rows_of(app).stored
    found = {}

    def waiter():
        found.update(backend.wait_for("woken", timeout=120, interval=60.0))

    thread = threading.Thread(target=waiter)
    thread.start()
    deadline = time.monotonic() + 10
    while not (stored.waiting.get("woken") and "SELECT" in driver.sent):
        assert time.monotonic() < deadline, "the waiter never read"
        time.sleep(0.001)
    backend.store_result("woken", "done", states.SUCCESS)
    thread.join(10)
    assert not thread.is_alive(), "the store did not wake the waiting .get()"
    assert found["status"] == states.SUCCESS and found["result"] == "done"


def test_get_polls_no_slower_than_the_configured_interval(app, driver):
    backend = ours(app)
    app.conf.celery_astra_result_poll_interval = 0.01
    reads = []
    original = backend._read_meta
    backend._read_meta = lambda task_id, remaining: (reads.append(1), original(task_id, remaining))[1]
    with pytest.raises(CeleryTimeoutError, match=r"^The operation timed out\.$"):
        backend.wait_for("never", timeout=0.5, interval=0.5)   # Celery passes 0.5 explicitly
    assert len(reads) >= 10                                      # 0.5 s at 0.01 s, not one read at 0.5 s


def test_a_dead_worker_ends_the_wait_with_its_error(app, driver):
    backend = ours(app)

    def health_check():
        raise RuntimeError("the embedded worker died: boom")

    state_of(app).health_check = health_check
    with pytest.raises(RuntimeError, match="boom"):
        backend.wait_for("orphan", timeout=30)


def test_a_cassandra_that_does_not_answer_is_named_in_the_timeout(app, driver):
    from cassandra import OperationTimedOut

    backend = ours(app)
    backend.store_result("warm", 1, states.SUCCESS)   # connected
    driver.fail_reads = OperationTimedOut("paused node")
    with pytest.raises(CeleryTimeoutError, match="Cassandra did not answer the result read: .*paused node"):
        backend.wait_for("silent", timeout=0.3)
    with pytest.raises(OperationTimedOut):             # without a timeout, the driver's error as Celery raises it
        backend.get_task_meta("silent")


def test_a_last_read_cut_short_by_the_deadline_is_not_blamed_on_cassandra(app, driver):
    """CI stop 38: Cassandra answered every read but the last, which had the 0.05 s left before the deadline."""
    from cassandra import OperationTimedOut

    backend = ours(app)
    backend.store_result("warm", 1, states.SUCCESS)
    original = backend.get_task_meta
    answers = iter([None])   # the first read answers (no row yet), every later one times out

    def read(task_id):
        if next(answers, "timeout") is None:
            return original(task_id)
        raise OperationTimedOut("Client request timeout")

    backend.get_task_meta = read
    with pytest.raises(CeleryTimeoutError) as raised:
        backend.wait_for("late", timeout=0.3)
    assert "Cassandra did not answer" not in str(raised.value)


def test_the_timeout_is_explained_with_the_row_as_it_is_after_the_deadline(app, driver):
    """A retry's RETRY row is written just after the retry is sent: at the deadline the last read may predate it
    (a full local run, 2026-12-06), so the explanation reads once more."""
    backend = ours(app)
    seen = []
    state_of(app).explain_timeout = lambda task_id, meta: seen.append(meta) or "why"
    original = backend._read_meta

    def read(task_id, remaining):
        if remaining == backend_module.FINAL_READ_TIMEOUT:   # the read after the deadline, and only that one
            backend.store_result(task_id, ValueError("later"), states.RETRY)
        return original(task_id, remaining)

    backend._read_meta = read
    app.conf.celery_astra_result_poll_interval = 0.1
    with pytest.raises(CeleryTimeoutError, match="why"):
        backend.wait_for("retried", timeout=0.15)
    assert seen[0]["status"] == states.RETRY


def test_chord_unlock_waits_the_plugins_interval_unless_the_chord_sets_its_own(app, monkeypatch):
    seen = []
    monkeypatch.setattr(CassandraBackend, "fallback_chord_unlock",
                        lambda self, header, body, countdown=1, **kwargs: seen.append((countdown, kwargs["interval"])))
    backend = ours(app)
    backend.fallback_chord_unlock(None, None)
    backend.fallback_chord_unlock(None, None, countdown=1)
    backend.fallback_chord_unlock(None, None, countdown=3, interval=2)
    assert seen == [(CHORD_UNLOCK_INTERVAL, CHORD_UNLOCK_INTERVAL)] * 2 + [(3, 2)]


def test_celery_5_3_port_setting_is_read(app):
    app.conf.cassandra_port = 19042
    assert ours(app).port == 19042


def test_the_skipped_read_still_stores_celerys_own_row(app, driver, rows):
    """The write without the read is Celery's own code: the same row as stock Celery's."""
    stock(app).store_result("same", {"sorted": "a b"}, states.SUCCESS)
    celery_row = rows.pop("same")
    rows_of(app).only_from_here.set()
    driver.sent.clear()
    ours(app).store_result("same", {"sorted": "a b"}, states.SUCCESS)
    assert driver.sent == ["INSERT"] and rows["same"] == celery_row


def test_the_session_view_changes_only_celerys_read_in_the_calling_thread(app, driver, rows):
    backend = ours(app)
    backend._get_connection()
    view = backend._session
    rows["there"] = ("SUCCESS", b"1", NOW, b"", b"")
    calls = []
    original = driver.execute
    driver.execute = lambda statement, parameters=(), timeout=None: (calls.append(timeout),
                                                                     original(statement, parameters))[1]
    backend.turn.absent = "there"
    try:
        assert view.execute(backend._read_stmt, ("there",)).one() is None      # answered "no row", unsent
        assert calls == []
        other = type("Statement", (), {"query_string": backend._read_stmt.query_string})()
        assert view.execute(other, ("there",)).one() is not None                # another statement: sent
        seen = []
        reader = threading.Thread(target=lambda: seen.append(view.execute(backend._read_stmt, ("there",)).one()))
        reader.start()
        reader.join(5)
        assert seen[0] is not None                                              # another thread: sent
    finally:
        backend.turn.absent = None
    backend.turn.limit = 0.25
    try:
        view.execute(backend._read_stmt, ("there",))
    finally:
        backend.turn.limit = None
    view.execute(backend._read_stmt, ("there",))
    assert calls[-2:] == [0.25, None]                                           # bounded only while asked
    assert view.prepare == driver.prepare                                       # the rest is the Session's


def test_before_a_fault_a_failed_background_connect_is_made_again(app, driver, monkeypatch):
    """celery_astra_services waits, before its first Cassandra fault, until the backend has its connection: the
    background connect's failure (a just-started node timing out) is tried again, not left to a store made while
    Cassandra is paused (CI run 3 of 2026-12-08)."""
    import cassandra.cluster
    from cassandra import OperationTimedOut

    from pytest_celery_astra.celery_app import connect_backend_in_background, wait_for_backend_connection

    attempts = []

    class SlowFirstCluster(FakeCluster):
        def connect(self, keyspace=None):
            attempts.append(keyspace)
            if len(attempts) < 3:
                raise OperationTimedOut("Timed out creating connection (5 seconds)")
            return self.session

    monkeypatch.setattr(cassandra.cluster, "Cluster", SlowFirstCluster)
    app.conf.result_backend = "pytest_celery_astra.cassandra.backend:TestCassandraBackend"
    connect_backend_in_background(app)
    state_of(app).backend_connecting.join(10)
    assert not app.backend.has_connection() and len(attempts) == 1   # the background connect failed, quietly
    wait_for_backend_connection(app, timeout=10)
    assert app.backend.has_connection() and len(attempts) == 3
