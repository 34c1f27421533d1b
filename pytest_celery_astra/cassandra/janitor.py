"""Per-test cleanup: empty the plugin's tables after each test, and nothing else.

The janitor only accepts tables the plugin created (Celery's result table, or
tables made through :meth:`TestDatabase.create_table`), or, in a keyspace the
plugin created itself, tables the test registers. Anything else is refused.

Cost (measured, single node, see ARCHITECTURE.md): an empty table is one
``LIMIT 1`` read (~3 ms). A few rows are deleted by partition key (~9 ms for
one row, ~29 ms for 100) because TRUNCATE costs 40-70 ms even on a test node.
Deletes leave tombstones that later reads must skip, and Cassandra fails reads
past 100,000 of them, so after TOMBSTONE_BUDGET deleted partitions, or for
large tables, the janitor TRUNCATEs instead, which drops them all.

Celery's result table, after a test whose every row there came from this process
(``clean(deferred=True)``: no worker process, no direct use of the database), is
emptied by the task ids this process's backend stored: one delete each, sent
without waiting (see result_rows.py). No read at all, and no wait in the teardown.
"""

from __future__ import annotations

import re
import time

from pytest_celery_astra.cassandra.database import TestDatabase
from pytest_celery_astra.cassandra.target import consistency_level
from pytest_celery_astra.errors import CleanupError


def protect_name(name: str) -> str:
    """cassandra-driver's quoting of a CQL name (imported on use: the driver is slow to import)."""
    from cassandra.metadata import protect_name as quote

    return quote(name)

# Below Cassandra's tombstone_warn_threshold (1,000 per read), far below its failure threshold.
TOMBSTONE_BUDGET = 900
# Past this many partitions one TRUNCATE is cheaper than the deletes.
DELETE_AT_MOST = 300
# What a node that has just rejoined a cluster, with the schema of before, says of a table made meanwhile.
STALE_SCHEMA = re.compile(r"does not exist|unconfigured table|incompatible.?schema", re.IGNORECASE)
# Coordinators tried for a read that meets a stale schema (round robin: each try asks the next node).
STALE_SCHEMA_TRIES = 6


class Janitor:
    """Tables to empty after the current test."""

    def __init__(self, database: TestDatabase):
        self.database = database
        self.tables: list[str] = [database.result_table, *database.cleaned_tables]

    def __repr__(self) -> str:
        return f"Janitor(keyspace={self.database.keyspace!r}, tables={self.tables!r})"

    def register(self, table: str) -> str:
        """Also empty ``table`` (``name`` or ``keyspace.name``) after this test.

        Raises :class:`TableNotOwnedError` unless the plugin created the table,
        or it lives in the keyspace the plugin created (see :meth:`TestDatabase.owned_table`).
        """
        name = self.database.owned_table(table)
        if name not in self.tables:
            self.tables.append(name)
        return name

    def clean(self, deferred: bool = False) -> list[str]:
        """Empty every table that has rows; return the ones that were emptied.

        With ``deferred``, the caller knows every row of the result table was stored by this
        process's backend: those task ids are deleted, and not waited for.

        Too few replicas alive (a node down) raises :class:`CleanupError` with one sentence that names
        the keyspace's replication and the setting."""
        try:
            return self._clean(deferred)
        except Exception as error:
            from pytest_celery_astra.cassandra.replication import unavailable_cause, unavailable_sentence

            unavailable = unavailable_cause(error)
            if unavailable is None:
                raise

            raise CleanupError(unavailable_sentence(
                self.database.keyspace, self.database.replication, unavailable)) from error

    def _clean(self, deferred: bool) -> list[str]:
        emptied = []
        for name in self.tables:
            if name == self.database.result_table:
                table = (self.database.keyspace, name)
                written = self.database.rows.written.take(table)
                self.database.rows.deletes.wait(table)  # the previous test's deferred deletes (raises if one failed twice)
                if deferred:
                    if self._delete_written(name, written):
                        emptied.append(name)
                    continue
            if self._empty_table(name):
                emptied.append(name)
        return emptied

    def _delete_written(self, name: str, task_ids: set[str]) -> bool:
        if not task_ids:
            return False
        spent = self.database.tombstones.get(name, 0)
        if spent + len(task_ids) > TOMBSTONE_BUDGET:
            return self._empty_table(name)  # TRUNCATE, past the tombstone budget
        qualified = f"{protect_name(self.database.keyspace)}.{protect_name(name)}"
        delete = self._delete_statement(qualified, self._partition_key(name))
        self.database.rows.deletes.send((self.database.keyspace, name), self.database.session, delete,
                                        sorted(task_ids))
        self.database.tombstones[name] = spent + len(task_ids)
        return True

    def _empty_table(self, name: str) -> bool:
        session = self.database.session
        # Quoted: a table a user created as "MyTable" keeps its case (unquoted CQL folds it).
        qualified = f"{protect_name(self.database.keyspace)}.{protect_name(name)}"
        if self._read(f"SELECT * FROM {qualified} LIMIT 1").one() is None:
            return False
        key_columns = self._partition_key(name)
        distinct = f"SELECT DISTINCT {', '.join(map(protect_name, key_columns))} FROM {qualified}"
        keys = [tuple(row) for row in self._read(f"{distinct} LIMIT {DELETE_AT_MOST + 1}")]
        spent = self.database.tombstones.get(name, 0)
        if len(keys) > DELETE_AT_MOST or spent + len(keys) > TOMBSTONE_BUDGET:
            if self._truncate(qualified):
                self.database.tombstones[name] = 0
                return True
            keys = [tuple(row) for row in self._read(distinct)]  # every key, page by page
        from cassandra.concurrent import execute_concurrent_with_args

        delete = self._delete_statement(qualified, key_columns)
        execute_concurrent_with_args(session, delete, keys, concurrency=64,
                                     raise_on_first_error=True)
        self.database.tombstones[name] = spent + len(keys)
        return True

    def _truncate(self, qualified: str) -> bool:
        """TRUNCATE, which needs every node of the cluster up; False when one is down (the caller
        deletes by key instead, at the configured consistency)."""
        from cassandra import Unavailable
        from cassandra.protocol import TruncateError

        try:
            self.database.session.execute(f"TRUNCATE {qualified}", timeout=60)
        except (Unavailable, TruncateError):
            return False
        return True

    def _read(self, query: str):
        """A read at the configured consistency; one that meets a node still on the schema of before a
        table was made (it has just rejoined the cluster) is asked of the next node."""
        from cassandra import InvalidRequest
        from cassandra.protocol import ServerError

        for attempt in range(STALE_SCHEMA_TRIES):
            try:
                return self.database.session.execute(query)
            except (InvalidRequest, ServerError) as error:
                if not STALE_SCHEMA.search(str(error)) or attempt == STALE_SCHEMA_TRIES - 1:
                    raise
                time.sleep(0.05 * attempt)  # round robin sends the next try to the next node

    def _delete_statement(self, qualified: str, key_columns: list[str]):
        # Prepared once per table and session, not once per test: a prepare is a server round trip.
        statements = self.database.prepared_deletes
        if qualified not in statements:
            where = " AND ".join(f"{protect_name(column)} = ?" for column in key_columns)
            statement = self.database.session.prepare(f"DELETE FROM {qualified} WHERE {where}")
            statement.consistency_level = consistency_level(self.database.write_consistency)
            statements[qualified] = statement
        return statements[qualified]

    def _partition_key(self, name: str) -> list[str]:
        table = self.database.cluster.metadata.keyspaces[self.database.keyspace].tables.get(name)
        if table is None:
            self.database.refresh_table_metadata(name)
            table = self.database.cluster.metadata.keyspaces[self.database.keyspace].tables[name]
        return [column.name for column in table.partition_key]

