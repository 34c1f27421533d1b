"""The result rows this process wrote, and the deletes of them still in flight: one :class:`ResultRows`
per pytest process (``RunContext.rows``), which the app fixture hands its app (in its
:class:`~pytest_celery_astra.cassandra.app_state.AppState`) for the backend to find.

The plugin's result backend records every task id it stores (``written``). After a test whose every
result-table row came from this process, the janitor deletes exactly those partitions without waiting
for Cassandra to answer (``deletes``): the deletes overlap the next test's set-up and first task.
Nothing can see them half done:

* a delete gets its timestamp when it is sent, during the previous test's teardown, so a row the
  next test writes later wins even if it reaches Cassandra first;
* the backend waits for the deletes in flight before it reads or writes one of their task ids
  (a test that reuses a fixed ``task_id``);
* a test that can read the tables directly (it uses a database fixture or the driver session) waits
  for them in its set-up, and the janitor waits for them before it looks at a table again.

A delete that failed is sent once more, and waited for; if that fails too the error says so.

The same knowledge saves a read per stored result: Celery 5.7 reads a task's row before writing it (to
keep a first SUCCESS); while a test's rows all come from this process (``only_from_here``), an id
not in ``written`` has no row to read (``known_absent``), and the backend writes at once.
"""

from __future__ import annotations

import collections
import threading
from typing import Iterable

from pytest_celery_astra.errors import CleanupError

Table = tuple  # (keyspace, table)


class _WrittenIds:
    """Task ids stored per result table since the janitor last took them."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ids: dict[Table, set[str]] = {}

    def add(self, table: Table, task_id: str) -> None:
        with self.lock:
            self.ids.setdefault(table, set()).add(task_id)

    def take(self, table: Table) -> set[str]:
        with self.lock:
            return self.ids.pop(table, set())

    def __contains__(self, key: tuple[Table, str]) -> bool:
        table, task_id = key
        with self.lock:
            return task_id in self.ids.get(table, ())


class _Batch:
    """One janitor pass's deletes in flight: the driver's futures, by task id."""

    def __init__(self, session, statement, futures: dict):
        self.session = session
        self.statement = statement
        self.futures = futures


class _DeletesInFlight:
    """Deletes sent and not yet waited for, per result table."""

    def __init__(self):
        self.lock = threading.Lock()
        self.deletes: dict[Table, list[_Batch]] = {}

    def send(self, table: Table, session, statement, task_ids: Iterable[str]) -> None:
        """Send one delete per task id; return at once (the driver's event loop does the rest)."""
        futures = {task_id: session.execute_async(statement, (task_id,)) for task_id in task_ids}
        with self.lock:
            self.deletes.setdefault(table, []).append(_Batch(session, statement, futures))

    def pending(self, table: Table, task_id: str) -> bool:
        with self.lock:
            return any(task_id in batch.futures for batch in self.deletes.get(table, ()))

    def wait(self, table: Table, timeout: float = 60.0) -> None:
        """Wait until every delete sent for ``table`` has been applied; resend a failed one once.

        Raises the driver's error, with what failed, if the second attempt fails too."""
        with self.lock:
            batches = self.deletes.pop(table, [])
        for batch in batches:
            for task_id, future in batch.futures.items():
                try:
                    future.result()
                except Exception:  # noqa: BLE001 - a node restarting (celery_astra_services): once more
                    try:
                        batch.session.execute(batch.statement, (task_id,), timeout=timeout)
                    except Exception as error:
                        raise CleanupError(
                            f"pytest-celery-astra: deleting the previous test's result row {task_id} from "
                            f"{table[0]}.{table[1]} failed: {str(error).splitlines()[0][:200]}") from error

    def wait_if_pending(self, table: Table, task_id: str) -> None:
        """Before the backend reads or writes ``task_id``: wait if a delete of it is in flight."""
        if self.deletes and self.pending(table, task_id):
            self.wait(table)

    def forget(self, table: Table) -> None:
        """Wait for the deletes of ``table`` and drop any error (the table is being dropped)."""
        try:
            self.wait(table, timeout=10.0)
        except Exception:  # noqa: BLE001
            pass


class StoredResults:
    """Events that wake the ``.get()`` calls waiting for a task id when its result is stored here."""

    # How many recently stored task ids are remembered (a .get() called after its task finished reads at once).
    REMEMBERED = 4096

    def __init__(self):
        self.lock = threading.Lock()
        self.waiting: dict[str, list[threading.Event]] = {}
        self.recent: collections.OrderedDict[str, None] = collections.OrderedDict()

    def watch(self, task_id: str) -> threading.Event:
        event = threading.Event()
        with self.lock:
            self.waiting.setdefault(task_id, []).append(event)
        return event

    def forget(self, task_id: str, event: threading.Event) -> None:
        with self.lock:
            events = self.waiting.get(task_id, [])
            if event in events:
                events.remove(event)
            if not events:
                self.waiting.pop(task_id, None)

    def stored(self, task_id: str) -> None:
        with self.lock:
            events = list(self.waiting.get(task_id, ()))
            self.recent[task_id] = None
            self.recent.move_to_end(task_id)
            if len(self.recent) > self.REMEMBERED:
                self.recent.popitem(last=False)
        for event in events:
            event.set()

    def was_stored(self, task_id: str) -> bool:
        with self.lock:
            return task_id in self.recent


class ResultRows:
    """What one process knows of the result rows: the ids its backend wrote, the deletes in flight,
    the ``.get()`` calls to wake when a row is stored, and whether the running test's rows all come from here."""

    def __init__(self):
        self.written = _WrittenIds()
        self.stored = StoredResults()
        self.deletes = _DeletesInFlight()
        # Set by the plugin for the call of a test whose every result row comes from this process's backend,
        # and whose tables hold no other writer's row (cleanup on: the janitor deleted them after their test;
        # cleanup off: no earlier test had another writer): the table then holds no row but those in
        # ``written`` (deletes still in flight are waited for first), so a task id not in it has no row.
        self.only_from_here = threading.Event()

    def known_absent(self, table: Table, task_id: str) -> bool:
        """Whether ``task_id`` provably has no row in ``table`` (see ``only_from_here``)."""
        return self.only_from_here.is_set() and (table, task_id) not in self.written

    def forget(self, table: Table) -> None:
        """The table is being dropped (or the run ends): its deletes are waited for, its ids dropped."""
        self.deletes.forget(table)
        self.written.take(table)
