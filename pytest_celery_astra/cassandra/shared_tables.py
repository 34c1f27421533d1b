"""Which xdist workers of a run use each app table in a shared Astra keyspace.

In Astra mode every xdist worker works in the same keyspace, and a table your app names itself
(``create_table("sorted_words", cql=...)``) is one table for all of them. The worker whose CREATE made it
must not drop it at its end while another worker still uses it (the other's next query would fail with
"Unknown CF"). Each worker records itself as a user of the table in the run's state directory, under a
file lock; at its end it removes itself, and drops the table only when no user is left.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from pytest_celery_astra.host import file_lock


class TableUsers:
    """The run-wide record of app-table users, for one worker."""

    def __init__(self, directory: Path, worker: str):
        self.directory = directory
        self.worker = worker

    def add(self, table: str) -> None:
        with self._locked() as users:
            if self.worker not in users.setdefault(table, []):
                users[table].append(self.worker)

    def release(self, table: str) -> bool:
        """Remove this worker as a user of ``table``; whether no other worker uses it now."""
        with self._locked() as users:
            left = [worker for worker in users.get(table, []) if worker != self.worker]
            if left:
                users[table] = left
            else:
                users.pop(table, None)
            return not left

    @contextmanager
    def _locked(self) -> Iterator[dict[str, list[str]]]:
        """The record, read and written back under the run's lock."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = self.directory / "astra-tables.users"  # not *.json: those are the run's container records
        with file_lock(self.directory / "astra-tables.lock"):
            users = json.loads(path.read_text()) if path.exists() else {}
            yield users
            path.write_text(json.dumps(users))
