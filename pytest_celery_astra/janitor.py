"""Per-test cleanup: empty the plugin's tables after each test, and nothing else.

The janitor only accepts tables the plugin created (Celery's result table, or
tables made through :meth:`TestDatabase.create_table`), or, in a keyspace the
plugin created itself, tables the test registers. Anything else is refused.

Emptying is cheap when there is nothing to do: one ``LIMIT 1`` read per table.
A table with rows is TRUNCATEd (fast on test nodes: ``auto_snapshot: false``).
"""

from __future__ import annotations

from .database import OWNER_TABLE, TestDatabase, parse_mark
from .errors import TableNotOwnedError

SYSTEM_KEYSPACES = frozenset({
    "system", "system_auth", "system_schema", "system_distributed", "system_traces",
    "system_views", "system_virtual_schema", "data_endpoint_auth", "datastax_sla",
})


class Janitor:
    """Tables to empty after the current test."""

    def __init__(self, database: TestDatabase):
        self.database = database
        self.tables: list[str] = [database.result_table]

    def __repr__(self) -> str:
        return f"Janitor(keyspace={self.database.keyspace!r}, tables={self.tables!r})"

    def register(self, table: str) -> str:
        """Also empty ``table`` (``name`` or ``keyspace.name``) after this test.

        Raises :class:`TableNotOwnedError` unless the plugin created the table,
        or it lives in the keyspace the plugin created.
        """
        keyspace, _, name = table.rpartition(".")
        keyspace = keyspace or self.database.keyspace
        if keyspace in SYSTEM_KEYSPACES or keyspace != self.database.keyspace:
            raise TableNotOwnedError(
                f"pytest-celery-astra: refusing to clean {keyspace}.{name}: only tables in the test keyspace "
                f"{self.database.keyspace!r} are cleaned.")
        if not self._owned(name):
            raise TableNotOwnedError(
                f"pytest-celery-astra: refusing to clean {keyspace}.{name}: the plugin did not create it "
                f"(create it with celery_astra_database.create_table(...) to have it cleaned).")
        if name not in self.tables:
            self.tables.append(name)
        return name

    def _owned(self, name: str) -> bool:
        if name == OWNER_TABLE:
            return False
        if name in self.database.created_tables:
            return True
        if self.database.owns_keyspace:
            self.database.cluster.refresh_table_metadata(self.database.keyspace, name)
            return name in self.database.cluster.metadata.keyspaces[self.database.keyspace].tables
        # A shared (Astra) keyspace: only tables marked by this very run.
        mark = parse_mark(self.database.table_comment(name))
        return mark is not None and mark["run"] == self.database.run_id

    def clean(self) -> list[str]:
        """Empty every table that has rows; return the ones that were emptied."""
        session = self.database.session
        emptied = []
        for name in self.tables:
            qualified = f"{self.database.keyspace}.{name}"
            if session.execute(f"SELECT * FROM {qualified} LIMIT 1").one() is None:
                continue
            session.execute(f"TRUNCATE {qualified}", timeout=60)
            emptied.append(name)
        return emptied
