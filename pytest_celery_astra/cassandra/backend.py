"""Celery's Cassandra result backend, waiting faster and aware of the embedded worker.

Storage is Celery's own ``CassandraBackend`` unchanged: same table, same schema,
same encoding. What differs about waiting in ``AsyncResult.get()``:

* Celery polls the table every 0.5 s (``get()`` passes ``interval=0.5``
  explicitly), which puts a 0.5 s floor under every test that waits for a
  result. Here the interval is capped by ``celery_astra_result_poll_interval``.
* Between polls it asks the embedded worker whether it is still alive, so a
  dead worker fails the test with its cause instead of hanging it.
* A ``.get()`` that times out raises Celery's ``TimeoutError`` with why, when the plugin saw it:
  ``The operation timed out. (pytest-celery-astra: <why>)``, from ``AppState.explain_timeout`` (the app
  fixture's ``run/why.py``; this module imports nothing above it).
* A result stored in this process (by the embedded worker) wakes the waiting
  ``.get()`` at once, which then reads the row from Cassandra as Celery would:
  no poll interval between a task's end and the test seeing it. While an
  embedded worker runs the app's tasks, ``.get()`` waits for that wake-up (at
  most one poll interval) before its first read, instead of reading a row that
  cannot be there yet: one query less per round trip.

And two about the driver, neither visible in what is stored or returned:

* Celery's read and write statements (the same CQL, consistency levels and
  values) are prepared once per session instead of parsed by Cassandra on every
  call. Celery's own code still sends them and decodes the rows: the backend
  hands it a view of the session (_SessionView) that answers a read known to
  find no row without sending it, and bounds a read by what is left of
  ``.get()``'s timeout.
* The backend's own Cluster returns rows as plain tuples. The driver's default
  builds a new ``namedtuple`` class for every result, which took a third of its
  event-loop thread's time in a round trip; Celery only unpacks the row.
* The backend's own Cluster does not fetch the schema metadata (unless the
  app's ``cassandra_options`` ask for it): Celery never reads it.
* Writers do not send Celery's ``CREATE TABLE`` (refused as existing: the
  plugin makes the table before any test).
* The app fixture opens the backend's connection in a thread while the worker
  starts (celery_app.connect_backend_in_background), not at the first result.

And one about chords: Cassandra has no native chord join, so Celery runs its
``celery.chord_unlock`` task, first after ``countdown=1`` s and then every
``result_chord_retry_interval`` (1 s), which put a 1 s floor under every chord.
Here both default to CHORD_UNLOCK_INTERVAL; values a chord sets itself are kept.

The app fixture sets ``result_backend`` to this class; nothing changes for code
outside the tests.
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

import celery
from celery import states
from celery.backends.cassandra import CassandraBackend
from celery.exceptions import TimeoutError as CeleryTimeoutError

from pytest_celery_astra.cassandra.app_state import state_of
from pytest_celery_astra.cassandra.target import CassandraTarget

# Celery 5.7 reads a task's row before storing it (to keep a first SUCCESS); earlier releases only write.
# Public: the bench's floor of Celery's own queries per task uses it too.
CELERY_READS_BEFORE_WRITE = tuple(int(part) for part in celery.VERSION[:2]) >= (5, 7)


DEFAULT_POLL_INTERVAL = 0.01
# Seconds before the first, and between further, checks of a chord's header (Celery: 1 s and 1 s).
CHORD_UNLOCK_INTERVAL = 0.01
FINAL_READ_TIMEOUT = 1.0  # the read after a .get() timed out, for its explanation (why.py)




class _Turn(threading.local):
    """What the calling thread's current backend call allows :class:`_SessionView` to change."""

    absent: str | None = None  # a task id provably without a row: Celery's read of it finds none
    limit: float | None = None  # the longest a result read may take (what is left of .get()'s timeout)



class _NoRow:
    """A driver result with no row: what Cassandra answers for a task id that has none."""

    def one(self):
        return None

    def __iter__(self):
        return iter(())

    def __bool__(self):
        return False


class _SessionView:
    """The driver Session as Celery's backend code sees it (its ``_session``), so Celery's own statements and
    decoding run unchanged. Two things differ, for the calling thread only (the backend's ``turn``):

    * Celery's read of a task id the plugin knows has no row is answered with no row, unsent;
    * Celery's read of a result is bounded by what is left of ``.get()``'s timeout (a paused Cassandra
      must not hold ``.get()`` for the driver's default timeout).

    Everything else is the driver's Session itself. A Celery that reads differently (another statement)
    gets Cassandra's answer every time: slower, never wrong."""

    def __init__(self, session, backend: "TestCassandraBackend"):
        self.session = session
        self.backend = backend

    def execute(self, query, parameters=None, *args, **kwargs):
        if query is self.backend._read_stmt and parameters:
            turn = self.backend.turn
            if turn.absent is not None and parameters[0] == turn.absent:
                return _NoRow()
            if turn.limit is not None and not args and "timeout" not in kwargs:
                kwargs["timeout"] = turn.limit
        return self.session.execute(query, parameters, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.session, name)


class TestCassandraBackend(CassandraBackend):
    """Celery's Cassandra backend with a short poll interval and a worker health check."""

    __test__ = False
    # Set by Celery's CassandraBackend.__init__ (Celery has no type information).
    cassandra_options: dict
    _read_stmt: Any
    _write_stmt: Any
    _session: Any

    def __init__(self, *args, port=None, **kwargs):
        super().__init__(*args, port=port, **kwargs)
        self.turn = _Turn()  # what the calling thread's current call allows its _SessionView to change
        # celery 5.3 defaults ``port=9042`` and never reads ``cassandra_port``
        # (its __init__ ignores the setting): a container's mapped port would be ignored.
        self.port = port or self.app.conf.get("cassandra_port") or 9042
        # The driver's Session is thread-safe and the backend guards its own
        # set-up with a lock: one Cluster for the test and the worker thread
        # (Celery otherwise builds one per thread and never shuts them down).
        self.thread_safe = True
        self._tuned_session = None
        # Celery never reads the schema metadata the driver fetches on every connect (~20 ms of parsing
        # system_schema); this Cluster is the backend's own, so the app's own Clusters keep theirs.
        # Its own load-balancing policy, not the one in app.conf.cassandra_options that the app's own
        # Clusters use too (CassandraTarget.own_profiles).
        self.cassandra_options = CassandraTarget.own_profiles(
            {"schema_metadata_enabled": False, **(self.cassandra_options or {})})

    def connect(self) -> None:
        """Make the backend's connection now (Celery makes it at the first store or read); raises as that would."""
        self._get_connection()

    def has_connection(self) -> bool:
        """Whether the backend's driver Session is made."""
        return self._session is not None

    def _get_connection(self, write=False):
        # Celery's writers send its CREATE TABLE on their first write, refused as existing: the plugin made
        # the result table before any app could use it. On a cluster each such statement still costs a
        # round of schema checks, so the connection is made as a reader's (the statements are the same).
        super()._get_connection(write=False)
        if write and getattr(self, "_table_created", True) is False:
            self._table_created = True  # Celery 5.7+: writers then take the lock-free path
        if self._tuned_session is not self._session:
            self._tune_session()

    def _tune_session(self) -> None:
        """Once per session: prepare Celery's read and write statements, and have rows come back as tuples."""
        with self._lock:
            session = self._session
            if session is None or self._tuned_session is session:
                return
            try:
                _rows_as_tuples(self._cluster, session)
                self._read_stmt = _prepared(session, self._read_stmt, parameters=1)
                self._write_stmt = _prepared(session, self._write_stmt, parameters=6)
            except Exception:  # noqa: BLE001 - an optimisation only: Celery's statements still work
                pass
            self._session = self._tuned_session = _SessionView(session, self)

    def _store_result(self, task_id, result, state, traceback=None, request=None, **kwargs):
        table = (self.keyspace, self.table)
        rows = state_of(self.app).rows
        rows.deletes.wait_if_pending(table, task_id)  # the previous test's delete of this very id lands first
        # Celery 5.7 reads the row first to keep a first SUCCESS; when there is provably no row (see
        # ResultRows.only_from_here) that read is answered "no row" without asking Cassandra (_SessionView),
        # and Celery's own code writes its own INSERT.
        self.turn.absent = task_id if CELERY_READS_BEFORE_WRITE and rows.known_absent(table, task_id) else None
        try:
            return super()._store_result(task_id, result, state, traceback=traceback, request=request, **kwargs)
        finally:
            self.turn.absent = None
            rows.written.add(table, task_id)  # the janitor deletes exactly these rows after the test
            rows.stored.stored(task_id)

    def _get_task_meta_for(self, task_id):
        state_of(self.app).rows.deletes.wait_if_pending((self.keyspace, self.table), task_id)
        return super()._get_task_meta_for(task_id)

    def _read_meta(self, task_id, remaining):
        """One read of the task's row, bounded by ``remaining``: (meta, None), or (None, the driver's
        error) when Cassandra did not answer in time."""
        from cassandra import OperationTimedOut, ReadTimeout
        from cassandra.cluster import NoHostAvailable

        self.turn.limit = None if remaining is None else max(remaining, 0.05)
        try:
            return self.get_task_meta(task_id), None
        except (OperationTimedOut, ReadTimeout, NoHostAvailable) as error:
            if remaining is None:
                raise
            return None, error
        finally:
            self.turn.limit = None

    def wait_for(self, task_id, timeout=None, interval=0.5, no_ack=True, on_interval=None):
        interval = min(interval, self.app.conf.get("celery_astra_result_poll_interval") or DEFAULT_POLL_INTERVAL)
        state = state_of(self.app)
        health_check = state.health_check
        deadline = None if timeout is None else time.monotonic() + timeout
        stored = state.rows.stored.watch(task_id)  # before the first read: a store in between still wakes us
        try:
            unanswered = None
            answered = False  # once a read answered, a later one cut short by the deadline is the deadline's
            if state.stores_here and not state.rows.stored.was_stored(task_id):
                # An embedded worker stores this app's results here and will wake us: reading before
                # it has would only find nothing. A result stored elsewhere is read one interval later.
                first = interval if deadline is None else min(interval, max(deadline - time.monotonic(), 0))
                stored.wait(first)
                stored.clear()
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                meta, unanswered = self._read_meta(task_id, remaining)
                answered = answered or unanswered is None
                if meta is not None and meta["status"] in states.READY_STATES:
                    return meta
                if on_interval:
                    on_interval()
                if health_check is not None:
                    health_check()
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    if unanswered is not None and not answered:
                        raise CeleryTimeoutError(
                            f"The operation timed out. (pytest-celery-astra: Cassandra did not answer the result "
                            f"read: {str(unanswered).splitlines()[0][:200]})")
                    # One more read for the explanation: a state stored since the last one (a retry's RETRY row is
                    # written just after the retry is sent) is what the failing test's reader needs to see.
                    latest, _ = self._read_meta(task_id, FINAL_READ_TIMEOUT)
                    if latest is not None and latest.get("status") not in states.READY_STATES:
                        meta = latest
                    raise CeleryTimeoutError(_timed_out(state.explain_timeout, task_id, meta))
                stored.wait(interval if remaining is None else min(interval, remaining))
                stored.clear()  # the next read sees whatever woke us
        finally:
            state.rows.stored.forget(task_id, stored)

    def fallback_chord_unlock(self, header_result, body, countdown=1, **kwargs):
        if countdown == 1:  # Celery's default, passed explicitly by every chord
            countdown = CHORD_UNLOCK_INTERVAL
        if kwargs.get("interval") is None:
            kwargs["interval"] = CHORD_UNLOCK_INTERVAL
        return super().fallback_chord_unlock(header_result, body, countdown=countdown, **kwargs)


def _timed_out(explain, task_id: str, meta: dict | None) -> str:
    """Celery's message for a ``.get()`` that timed out, with why when the plugin saw it (``AppState.explain_timeout``);
    an explainer that fails leaves Celery's message as it is."""
    why = None
    if explain is not None:
        try:
            why = explain(task_id, meta)
        except Exception:  # noqa: BLE001 - the timeout is the error; an explanation is a bonus
            why = None
    return f"The operation timed out. (pytest-celery-astra: {why})" if why else "The operation timed out."


def _rows_as_tuples(cluster, session) -> None:
    """Rows of ``cluster``'s default execution profile (or of a session without profiles) as tuples."""
    from cassandra.cluster import EXEC_PROFILE_DEFAULT
    from cassandra.query import tuple_factory

    from pytest_celery_astra.internals import cluster_uses_profiles

    if cluster_uses_profiles(cluster):
        profiles = cluster.profile_manager.profiles
        profile = copy.copy(profiles[EXEC_PROFILE_DEFAULT])  # the options' profile object is not ours to change
        profile.row_factory = tuple_factory
        profiles[EXEC_PROFILE_DEFAULT] = profile
    else:
        session.row_factory = tuple_factory


def _prepared(session, statement, parameters: int):
    """``statement`` (a SimpleStatement with ``%s`` markers) prepared on ``session``, same consistency."""
    query = getattr(statement, "query_string", None)
    if query is None or query.count("%s") != parameters:
        return statement
    prepared = session.prepare(query.replace("%s", "?"))
    prepared.consistency_level = statement.consistency_level
    return prepared
