"""The janitor against the plugin's real Cassandra: empties what it owns, refuses the rest."""

import pytest

from pytest_celery_astra import TableNotOwnedError
from pytest_celery_astra.cassandra import janitor as janitor_module

pytestmark = pytest.mark.usefixtures("container_engine")


@pytest.fixture(scope="module")
def foreign_keyspace(celery_astra_cassandra):
    """A keyspace with data the plugin did not create."""
    session = celery_astra_cassandra
    session.execute("CREATE KEYSPACE IF NOT EXISTS foreign_ks WITH replication = "
                    "{'class': 'SimpleStrategy', 'replication_factor': 1}")
    session.execute("CREATE TABLE IF NOT EXISTS foreign_ks.precious (id int PRIMARY KEY)")
    session.execute("INSERT INTO foreign_ks.precious (id) VALUES (1)")
    yield "foreign_ks"
    assert session.execute("SELECT id FROM foreign_ks.precious").one().id == 1
    session.execute("DROP KEYSPACE foreign_ks")


def test_foreign_and_system_tables_are_refused(celery_astra_cleanup, foreign_keyspace):
    for table in (f"{foreign_keyspace}.precious", "system.local", "system_auth.roles", "celery_astra_owner"):
        with pytest.raises(TableNotOwnedError, match="refusing to clean"):
            celery_astra_cleanup.register(table)
    assert celery_astra_cleanup.tables == [celery_astra_cleanup.database.result_table]


def test_composite_partition_keys_are_deleted(celery_astra_cassandra, celery_astra_cleanup):
    session = celery_astra_cassandra
    session.execute("CREATE TABLE IF NOT EXISTS events (tenant text, day int, seq int, PRIMARY KEY ((tenant, day), seq))")
    for seq in range(5):
        session.execute("INSERT INTO events (tenant, day, seq) VALUES ('a', 1, %s)", (seq,))
    session.execute("INSERT INTO events (tenant, day, seq) VALUES ('b', 2, 0)")
    celery_astra_cleanup.register("events")
    assert celery_astra_cleanup.clean() == ["events"]
    assert session.execute("SELECT * FROM events").one() is None


def test_tombstone_budget_switches_to_truncate(celery_astra_database, celery_astra_cleanup, monkeypatch):
    monkeypatch.setattr(janitor_module, "TOMBSTONE_BUDGET", 3)
    session, table = celery_astra_database.session, celery_astra_database.result_table
    insert = session.prepare(f"INSERT INTO {table} (task_id, status, date_done) VALUES (?, 'X', toTimestamp(now()))")
    celery_astra_database.tombstones[table] = 0
    session.execute(insert, ("t1",))
    session.execute(insert, ("t2",))
    celery_astra_cleanup.clean()
    assert celery_astra_database.tombstones[table] == 2      # deleted by key
    session.execute(insert, ("t3",))
    session.execute(insert, ("t4",))
    celery_astra_cleanup.clean()
    assert celery_astra_database.tombstones[table] == 0      # over budget: truncated
    assert session.execute(f"SELECT * FROM {table}").one() is None
