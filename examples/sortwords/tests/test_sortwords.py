"""The walkthrough's sortWords task, end to end: real broker, real Cassandra (or Astra DB with --astra),
the embedded worker, and the rows Celery's result backend writes."""

import json

import pytest
from celery import states
from celery.exceptions import TimeoutError as CeleryTimeoutError

from tasks import sortWords

pytestmark = pytest.mark.usefixtures("celery_astra_worker")


def stored_row(session, app, task_id):
    """The result row of ``task_id`` as Celery's Cassandra backend wrote it."""
    return session.execute(
        f"SELECT status, result, traceback FROM {app.conf.cassandra_table} WHERE task_id = %s", (task_id,)
    ).one()


def test_first_documented_call():
    assert sortWords.delay("storage yay my DB is powerful results Astra", False).get(timeout=30) == (
        "Astra DB is my powerful results storage yay")


def test_second_documented_call():
    assert sortWords.delay("In the land of another wizards day", capitalize=True).get(timeout=30) == (
        "ANOTHER DAY IN LAND OF THE WIZARDS")


def test_ready_becomes_true_then_get_returns():
    result = sortWords.delay("b a", False)
    result.get(timeout=30)  # waits until the worker stored the result
    assert result.ready()
    assert result.successful()
    assert result.state == states.SUCCESS
    assert result.get() == "a b"


def test_row_in_result_table(celery_astra_app, celery_astra_cassandra):
    result = sortWords.delay("zeta Alpha beta", True)
    assert result.get(timeout=30) == "ALPHA BETA ZETA"
    row = stored_row(celery_astra_cassandra, celery_astra_app, result.id)
    assert row.status == states.SUCCESS
    assert json.loads(row.result) == "ALPHA BETA ZETA"


def test_failing_call_is_stored_as_failure_and_reraised(celery_astra_app, celery_astra_cassandra):
    result = sortWords.delay(12345, False)  # not a string: int has no .split
    with pytest.raises(AttributeError, match="split"):
        result.get(timeout=30)
    assert result.state == states.FAILURE
    row = stored_row(celery_astra_cassandra, celery_astra_app, result.id)
    assert row.status == states.FAILURE
    assert json.loads(row.result)["exc_type"] == "AttributeError"
    assert "Traceback" in json.loads(row.traceback)


def test_many_tasks_at_once(celery_astra_app, celery_astra_cassandra):
    texts = [f"w{i:03d} {chr(97 + i % 26)} Middle" for i in range(100)]
    results = [sortWords.delay(text, False) for text in texts]
    expected = [" ".join(sorted(text.split(" "), key=str.lower)) for text in texts]
    assert [r.get(timeout=60) for r in results] == expected
    count = celery_astra_cassandra.execute(
        f"SELECT COUNT(*) FROM {celery_astra_app.conf.cassandra_table}").one()[0]
    assert count == 100


def test_a_result_that_never_comes_times_out():
    # A task nobody consumes: get() must give up at its timeout, not hang.
    result = sortWords.apply_async(("x y", False), queue="nobody-listens-here")
    with pytest.raises(CeleryTimeoutError):
        result.get(timeout=0.3)


class TestCleanupBetweenTests:
    """One test writes, the other finds the table empty: both pass in either order (and under -n 2)."""

    def test_writes(self, celery_astra_app, celery_astra_cassandra):
        sortWords.delay("c b a", False).get(timeout=30)
        assert celery_astra_cassandra.execute(
            f"SELECT COUNT(*) FROM {celery_astra_app.conf.cassandra_table}").one()[0] == 1

    def test_finds_table_empty(self, celery_astra_app, celery_astra_cassandra):
        assert celery_astra_cassandra.execute(
            f"SELECT COUNT(*) FROM {celery_astra_app.conf.cassandra_table}").one()[0] == 0


@pytest.mark.astra_live
def test_live_astra_results_go_to_a_table_of_this_run(celery_astra_database, celery_astra_app):
    # Only with --astra: the shared keyspace gets one result table per run and xdist worker.
    assert celery_astra_database.target.is_astra
    assert celery_astra_app.conf.cassandra_table == celery_astra_database.result_table
    assert celery_astra_database.run_id in celery_astra_database.result_table
