"""The janitor on a cluster with a node down or just back, with a fake session: TRUNCATE refused falls back
to deletes, a stale-schema read is asked of the next node, deletes go at the configured consistency, and
too few replicas is one sentence naming the replication. No services."""

import types

import pytest
from cassandra import ConsistencyLevel, InvalidRequest, Unavailable

from pytest_celery_astra.cassandra.janitor import DELETE_AT_MOST, Janitor
from pytest_celery_astra.cassandra.replication import Replication
from pytest_celery_astra.cassandra.result_rows import ResultRows
from pytest_celery_astra.errors import CleanupError


class Rows(list):
    def one(self):
        return self[0] if self else None


class FakeSession:
    """Answers SELECTs from ``rows``; ``failures`` maps a statement's first word to errors raised in turn."""

    def __init__(self, rows, failures=None):
        self.rows = rows
        self.failures = failures or {}
        self.executed = []
        self.prepared = []

    def execute(self, query, parameters=None, timeout=None):
        text = str(query)
        self.executed.append(text)
        queue = self.failures.get(text.split()[0], [])
        if queue:
            raise queue.pop(0)
        if text.startswith("SELECT * "):
            return Rows(self.rows[:1])
        if text.startswith("SELECT DISTINCT"):
            limit = int(text.rsplit("LIMIT", 1)[1]) if "LIMIT" in text else len(self.rows)
            return Rows(self.rows[:limit])
        return Rows()

    def prepare(self, query):
        statement = types.SimpleNamespace(query=query, consistency_level=None)
        self.prepared.append(statement)
        return statement


def fake_database(session, replication=None):
    column = types.SimpleNamespace(name="id")
    table = types.SimpleNamespace(partition_key=[column])
    keyspace = types.SimpleNamespace(tables={"celery_results": table, "app_rows": table})
    cluster = types.SimpleNamespace(metadata=types.SimpleNamespace(keyspaces={"ks": keyspace}),
                                    refresh_table_metadata=lambda *a: None)
    return types.SimpleNamespace(
        keyspace="ks", result_table="celery_results", cleaned_tables=["app_rows"], tombstones={},
        prepared_deletes={}, session=session, cluster=cluster, write_consistency="QUORUM",
        replication=replication, created_tables={"celery_results", "app_rows"}, owns_keyspace=True,
        rows=ResultRows())


@pytest.fixture
def deletes(monkeypatch):
    sent = []

    def execute_concurrent_with_args(session, statement, keys, **kwargs):
        sent.append((statement, list(keys)))

    monkeypatch.setattr("cassandra.concurrent.execute_concurrent_with_args", execute_concurrent_with_args)
    return sent


def unavailable():
    return Unavailable("Cannot achieve consistency level QUORUM", consistency=ConsistencyLevel.QUORUM,
                       required_replicas=2, alive_replicas=1)


def test_deletes_go_at_the_configured_write_consistency(deletes):
    session = FakeSession([("a",), ("b",)])
    janitor = Janitor(fake_database(session))
    assert janitor.clean() == ["celery_results", "app_rows"]
    statement, keys = deletes[0]
    assert statement.consistency_level == ConsistencyLevel.QUORUM
    assert keys == [("a",), ("b",)]


def test_truncate_refused_with_a_node_down_falls_back_to_deleting_every_key(deletes):
    rows = [(str(n),) for n in range(DELETE_AT_MOST + 50)]
    session = FakeSession(rows, failures={"TRUNCATE": [unavailable(), unavailable()]})
    database = fake_database(session)
    assert Janitor(database).clean() == ["celery_results", "app_rows"]
    assert [len(keys) for _, keys in deletes] == [len(rows), len(rows)]  # every key, not the first 301
    assert database.tombstones == {"celery_results": len(rows), "app_rows": len(rows)}


def test_truncate_is_used_when_every_node_is_up(deletes):
    session = FakeSession([(str(n),) for n in range(DELETE_AT_MOST + 1)])
    Janitor(fake_database(session)).clean()
    assert deletes == []
    assert sum(text.startswith("TRUNCATE") for text in session.executed) == 2


def test_a_read_that_meets_a_stale_schema_is_asked_again(deletes):
    stale = InvalidRequest("Error from server: code=2200 [Invalid query] message=\"table app_rows does not exist\"")
    session = FakeSession([("a",)], failures={"SELECT": [stale, stale]})
    assert Janitor(fake_database(session)).clean() == ["celery_results", "app_rows"]
    assert len(deletes) == 2


def test_other_invalid_requests_are_not_retried(deletes):
    session = FakeSession([("a",)], failures={"SELECT": [InvalidRequest("Syntax error")]})
    with pytest.raises(InvalidRequest, match="Syntax error"):
        Janitor(fake_database(session)).clean()
    assert len(session.executed) == 1


def test_too_few_replicas_is_one_sentence_naming_the_replication_and_the_setting(deletes):
    session = FakeSession([("a",)], failures={"SELECT": [unavailable()]})
    database = fake_database(session, Replication(1, source="option --celery-astra-replication"))
    with pytest.raises(CleanupError) as raised:
        Janitor(database).clean()
    message = str(raised.value)
    assert "\n" not in message
    assert "replication factor 1" in message and "--celery-astra-replication" in message and "ks" in message
