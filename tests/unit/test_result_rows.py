"""The result-row ledger (cassandra/result_rows.py) with a fake driver session: no services."""

import pytest

from pytest_celery_astra.cassandra import result_rows
from pytest_celery_astra.errors import CleanupError

TABLE = ("ks", "celery_results")


class Future:
    def __init__(self, error=None):
        self.error = error

    def result(self):
        if self.error:
            raise self.error


class Session:
    """Records what is sent; execute_async's futures fail for ids in ``async_failures``, execute for ``failures``."""

    def __init__(self, async_failures=(), failures=()):
        self.async_failures, self.failures = set(async_failures), set(failures)
        self.sent, self.executed = [], []

    def execute_async(self, statement, values):
        self.sent.append(values[0])
        return Future(RuntimeError("node restarting") if values[0] in self.async_failures else None)

    def execute(self, statement, values, timeout=None):
        self.executed.append(values[0])
        if values[0] in self.failures:
            raise RuntimeError("Unavailable: 1 replica of 2 alive\nmore")


def test_written_ids_are_taken_once_per_table():
    written = result_rows._WrittenIds()
    written.add(TABLE, "a")
    written.add(TABLE, "b")
    written.add(("other", "t"), "c")
    assert (TABLE, "a") in written and (TABLE, "c") not in written
    assert written.take(TABLE) == {"a", "b"}
    assert written.take(TABLE) == set() and (("other", "t"), "c") in written


def test_deletes_are_sent_at_once_and_waited_for_later():
    deletes, session = result_rows._DeletesInFlight(), Session()
    deletes.send(TABLE, session, "DELETE", ["a", "b"])
    assert session.sent == ["a", "b"] and deletes.pending(TABLE, "a") and not deletes.pending(TABLE, "z")
    deletes.wait(TABLE)
    assert not deletes.pending(TABLE, "a") and session.executed == []


def test_a_failed_delete_is_sent_once_more():
    deletes, session = result_rows._DeletesInFlight(), Session(async_failures={"b"})
    deletes.send(TABLE, session, "DELETE", ["a", "b"])
    deletes.wait(TABLE)
    assert session.executed == ["b"]


def test_a_delete_that_fails_twice_is_one_sentence():
    deletes, session = result_rows._DeletesInFlight(), Session(async_failures={"b"}, failures={"b"})
    deletes.send(TABLE, session, "DELETE", ["b"])
    with pytest.raises(CleanupError, match=r"^pytest-celery-astra: deleting the previous test's result row b from "
                                           r"ks.celery_results failed: Unavailable: 1 replica of 2 alive$"):
        deletes.wait(TABLE)


def test_wait_if_pending_waits_only_for_an_id_in_flight():
    deletes, session = result_rows._DeletesInFlight(), Session(async_failures={"a"})
    deletes.send(TABLE, session, "DELETE", ["a"])
    deletes.wait_if_pending(TABLE, "other")
    assert session.executed == [] and deletes.pending(TABLE, "a")
    deletes.wait_if_pending(TABLE, "a")
    assert session.executed == ["a"] and not deletes.pending(TABLE, "a")


def test_forget_drops_the_error_of_a_table_being_dropped():
    deletes, session = result_rows._DeletesInFlight(), Session(async_failures={"a"}, failures={"a"})
    deletes.send(TABLE, session, "DELETE", ["a"])
    deletes.forget(TABLE)
    assert not deletes.pending(TABLE, "a")


def test_an_id_is_known_absent_only_while_rows_all_come_from_here():
    rows = result_rows.ResultRows()
    assert not rows.known_absent(TABLE, "x")
    rows.only_from_here.set()
    assert rows.known_absent(TABLE, "x")
    rows.written.add(TABLE, "x")
    assert not rows.known_absent(TABLE, "x")   # stored before: Celery's read-before-write applies


def test_a_stored_result_wakes_its_waiters_and_is_remembered():
    stored = result_rows.StoredResults()
    first, second, other = stored.watch("a"), stored.watch("a"), stored.watch("b")
    assert not stored.was_stored("a")
    stored.stored("a")
    assert first.is_set() and second.is_set() and not other.is_set()
    assert stored.was_stored("a") and not stored.was_stored("b")
    stored.forget("a", first)
    stored.forget("a", second)
    assert "a" not in stored.waiting                       # no waiter left: nothing kept for it


def test_only_the_most_recent_stored_ids_are_remembered(monkeypatch):
    stored = result_rows.StoredResults()
    monkeypatch.setattr(stored, "REMEMBERED", 3)
    for task_id in "abcd":
        stored.stored(task_id)
    assert [stored.was_stored(task_id) for task_id in "abcd"] == [False, True, True, True]


def test_forgetting_a_table_waits_for_its_deletes_and_drops_its_ids():
    rows, session = result_rows.ResultRows(), Session()
    rows.written.add(TABLE, "a")
    rows.deletes.send(TABLE, session, "DELETE", ["b"])
    rows.forget(TABLE)
    assert not rows.deletes.pending(TABLE, "b") and (TABLE, "a") not in rows.written
