"""The test keyspace and result table: :class:`TestDatabase` connects to a
:class:`~pytest_celery_astra.cassandra.target.CassandraTarget`, prepares the keyspace (its own, a leased
kept one, or Astra's) and Celery's result table before any test runs, makes the tables the plugin owns
(marked: ``marks.py``), runs schema changes until the nodes agree, and remembers which tables the plugin
created, so cleanup never touches others.
"""

from __future__ import annotations

import datetime
import time
from typing import TYPE_CHECKING, Any, Callable

from pytest_celery_astra.cassandra.leases import KeyspaceLease
from pytest_celery_astra.cassandra.marks import (
    OWNER_TABLE,
    is_stale,
    lease_fingerprint,
    mark_owner,
    parse_mark,
    result_table_ddl,
    statement_digest,
    table_mark,
    with_mark,
)
from pytest_celery_astra.cassandra.replication import Replication
from pytest_celery_astra.cassandra.result_rows import ResultRows
from pytest_celery_astra.cassandra.target import (
    CassandraTarget,
    astra_front_door_message,
    consistency_level,
    first_line,
    quiet_driver_logs,
)
from pytest_celery_astra.errors import DatabaseSetupError, TableNotOwnedError

if TYPE_CHECKING:
    from pytest_celery_astra.cassandra.shared_tables import TableUsers

# Seconds a schema change waits for every live node to agree (the driver's default is 10 s; on a 3-node
# cluster one statement took up to 5.8 s under a -n 4 start).
SCHEMA_AGREEMENT_WAIT = 30
# Keyspaces the plugin never cleans, whatever a test registers.
SYSTEM_KEYSPACES = frozenset({
    "system", "system_auth", "system_schema", "system_distributed", "system_traces",
    "system_views", "system_virtual_schema", "data_endpoint_auth", "datastax_sla",
})


class TestDatabase:
    """A connected session with the test keyspace and result table ready.

    Local mode: the plugin creates the keyspace (replicated as the ``replication``
    setting resolves for the cluster: one replica on a container of this run) and
    owns everything in it. Astra mode: the keyspace must exist; the plugin owns only
    the tables it created, which carry its mark.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, target: CassandraTarget, keyspace: str, result_table: str, run_id: str, worker: str,
                 read_consistency: str = "LOCAL_QUORUM", write_consistency: str = "LOCAL_QUORUM",
                 lease: KeyspaceLease | None = None, replication: str = "auto",
                 replication_source: str = "default", single_node: bool = True, rows: ResultRows | None = None):
        self.target = target
        self.keyspace = keyspace
        self.result_table = result_table
        self.run_id = run_id
        self.worker = worker
        self.read_consistency = read_consistency
        self.write_consistency = write_consistency
        self.owns_keyspace = not target.is_astra
        # The ``replication`` setting (text, and where it came from), resolved once connected.
        self.replication_setting = (replication, replication_source)
        self.single_node = single_node  # a container of this run: one node, whatever the setting says
        self.replication: Replication | None = None
        self.created_tables: set[str] = set()
        self.made_tables: set[str] = set()  # those this run's CREATE made: dropped at the end (Astra)
        # Tables emptied after every test, besides the result table: made with create_table(),
        # or registered once with register_table().
        self.cleaned_tables: list[str] = []
        # Partitions deleted per table since its last TRUNCATE (see janitor.py).
        self.tombstones: dict[str, int] = {}
        self.prepared_deletes: dict = {}
        # A kept container's keyspace held by this process (leases.py); ``adopted`` when its previous
        # holder left it clean, so no DDL was needed.
        self.lease = lease
        self.adopted = False
        # In a leased keyspace: the create_table() tables its last holder left (digest of their statement,
        # tombstones), until this run asks for them; and the digest of each table this run asked for, which
        # stays for the next holder.
        self.kept_tables: dict[str, tuple[str, int]] = {}
        self.table_digests: dict[str, str] = {}
        # Astra mode under xdist: the run-wide record of which workers use each app table (shared_tables.py).
        self.table_users: TableUsers | None = None
        # cassandra-driver's Cluster and Session (the driver has no type information).
        self.cluster: Any = None
        self.session: Any = None
        # A request went through self.session since the plugin last emptied the tables (see _note_request).
        self.reached = False
        # The run's ledger of result rows (result_rows.py): the backend's writes, the janitor's deletes.
        self.rows = rows if rows is not None else ResultRows()

    def __repr__(self) -> str:
        return f"TestDatabase({self.target.describe()}, keyspace={self.keyspace!r}, table={self.result_table!r})"

    def connect(self, timeout: float, retry: bool = True) -> None:
        """Connect, retrying until ``timeout`` when ``retry`` (a fresh container may still be starting).

        Without ``retry`` (an existing cluster, Astra DB) the first refusal is the answer: a
        refused or unresolvable address is not a slow start, and waiting would only hide it.
        """
        from cassandra import AuthenticationFailed, UnresolvableContactPoints
        from cassandra.cluster import NoHostAvailable

        deadline = time.monotonic() + timeout
        while True:
            try:
                cluster = self._new_cluster()
            except UnresolvableContactPoints:
                raise DatabaseSetupError(
                    f"pytest-celery-astra: no Cassandra contact point of {self.target.describe()} resolves to "
                    f"an address; fix --celery-astra-cassandra-hosts.") from None
            try:
                with quiet_driver_logs():
                    self.session = cluster.connect()
                self.cluster = cluster
                self.session.add_request_init_listener(self._note_request)
                return
            except NoHostAvailable as error:
                cluster.shutdown()
                auth_errors = [e for e in error.errors.values() if isinstance(e, AuthenticationFailed)]
                if auth_errors:
                    raise DatabaseSetupError(self.target.login_refused_message()) from None
                if not retry:
                    raise DatabaseSetupError(self.target.unreachable_message(error)) from None
                if time.monotonic() > deadline:
                    raise DatabaseSetupError(
                        f"pytest-celery-astra: Cassandra at {self.target.describe()} did not answer within "
                        f"{timeout:g} s ({first_line(error)}); check --celery-astra-cassandra-hosts and "
                        f"--celery-astra-cassandra-port, or raise --celery-astra-startup-timeout.") from None
                time.sleep(0.5)
            except Exception:
                cluster.shutdown()
                raise

    def _new_cluster(self):
        """A Cluster; the cloud path already talks to Astra's metadata service here."""
        try:
            # The driver logs its metadata-fetch failures with a traceback; the error below says it in one line.
            with quiet_driver_logs():
                return self.target.cluster(consistency=self.read_consistency, connect_timeout=5,
                                           control_connection_timeout=5,
                                           max_schema_agreement_wait=SCHEMA_AGREEMENT_WAIT)
        except Exception as error:
            if not self.target.is_astra:
                raise
            # The driver says "unable to connect to the metadata service" whatever happened: say what did.
            raise DatabaseSetupError(astra_front_door_message(error)) from None

    def prepare(self) -> None:
        """Create (or check) the keyspace, then Celery's result table in it."""
        self.prepare_keyspace()
        self.create_result_table()

    def create_result_table(self) -> None:
        if self.adopted:  # a leased keyspace left clean: the table is there, empty, with Celery's schema
            self.created_tables.add(self.result_table)
            return
        self.create_table(self.result_table, result_table_ddl)

    def prepare_keyspace(self) -> None:
        """Create this run's keyspace (or take the leased one as it is, when left clean), or check that
        the Astra keyspace exists; use it."""
        if self.owns_keyspace:
            if not self._adopt_leased_keyspace():
                self._create_own_keyspace()
        elif self.keyspace not in self.cluster.metadata.keyspaces:
            raise DatabaseSetupError(
                f"pytest-celery-astra: keyspace {self.keyspace!r} does not exist in this Astra DB database and "
                f"Astra does not allow creating keyspaces through CQL; create it in the Astra console or fix "
                f"--astra-keyspace (ASTRA_DB_KEYSPACE).")
        self.session.set_keyspace(self.keyspace)

    def reap_dead_keyspaces(self, include_old: bool = False) -> list[str]:
        """Drop the plugin's keyspaces whose creating process, on this host, is gone (a killed run);
        with ``include_old`` also those of another run created more than STALE_AFTER ago (a run that
        crashed on another host, where its process cannot be looked at).

        Only keyspaces holding the plugin's owner table with its mark qualify; a live run's keyspace
        on this host, or anyone else's keyspace, is never touched.
        """
        dropped = []
        now = datetime.datetime.now(datetime.timezone.utc)
        for name, keyspace in list(self.cluster.metadata.keyspaces.items()):
            owner_table = keyspace.tables.get(OWNER_TABLE)
            mark = parse_mark(owner_table.options.get("comment")) if owner_table is not None else None
            if name == self.keyspace or mark is None or mark["run"] == self.run_id or "lease" in mark:
                continue  # a leased keyspace is reset by its next holder (leases.py), never reaped
            owner = mark_owner(mark)
            if owner is not None and owner.is_provably_gone():
                why = owner.describe()
            elif include_old and is_stale(mark, now) and (owner is None or not owner.is_alive_here()):
                why = f"created {mark['created']}, run {mark['run']}"
            else:
                continue
            self.schema_change(f"DROP KEYSPACE IF EXISTS {name}")
            dropped.append(f"keyspace {name} ({why})")
        return dropped

    def take_cluster_lease(self, registry: str, kept_keyspace: Callable[[int], str]) -> None:
        """``keep_keyspaces`` on an existing cluster: lease a kept keyspace cluster-wide (cluster_leases.py)
        instead of making one named by the run id; when every slot is held, keep the run's own. The lease
        table (in keyspace ``registry``) is made once per cluster (the only schema changes of a repeat run:
        none); ``kept_keyspace`` names a slot's keyspace (both from ``RunContext.placement``)."""
        import os
        import socket

        from pytest_celery_astra.cassandra.cluster_leases import CqlSlots, acquire
        from pytest_celery_astra.host import file_lock

        replication = self.resolve_replication().cql()
        if not self._has_table(registry, "slots"):
            from pytest_celery_astra.cassandra.leases import lease_dir

            directory = lease_dir()
            directory.mkdir(mode=0o700, exist_ok=True)
            # One process of this host at a time: concurrent CREATE TABLE IF NOT EXISTS may make two tables.
            with file_lock(directory / f"registry-{registry}.lock"):
                self.cluster.refresh_schema_metadata(max_schema_agreement_wait=SCHEMA_AGREEMENT_WAIT)
                if not self._has_table(registry, "slots"):
                    self.schema_change(f"CREATE KEYSPACE IF NOT EXISTS {registry} WITH replication = {replication}")
                    self.schema_change(CqlSlots.TABLE_CQL.format(keyspace=registry))
        holder = f"{self.run_id}/{self.worker}/{socket.gethostname()}/{os.getpid()}"
        slots = CqlSlots(self.session, registry, consistency_level(self.write_consistency))
        lease = acquire(slots, lease_fingerprint(self.result_table, replication),
                        kept_keyspace, holder)
        if lease is not None:
            self.lease, self.keyspace = lease, lease.keyspace

    def _has_table(self, keyspace: str, table: str) -> bool:
        existing = self.cluster.metadata.keyspaces.get(keyspace)
        return existing is not None and table in existing.tables

    def _adopt_leased_keyspace(self) -> bool:
        """Use the leased keyspace as its previous holder left it, when that was clean and it holds
        exactly the owner table, the result table and the create_table() tables it said it left."""
        if self.lease is None or not self.lease.left.clean:
            return False
        left = self.lease.left
        existing = self.cluster.metadata.keyspaces.get(self.keyspace)
        if existing is None or set(existing.tables) != {OWNER_TABLE, self.result_table, *left.tables} \
                or existing.views or existing.user_types:
            return False
        self.adopted = True
        self.tombstones[self.result_table] = left.tombstones
        self.kept_tables = dict(left.tables)
        return True

    def return_lease(self, clean: bool) -> None:
        """End of a run in a leased keyspace: leave it clean for the next holder — drop the tables the run
        added but through create_table(), TRUNCATE the result table and the create_table() ones if they still
        have rows — and give the slot back with the create_table() statements' digests (this run's, and the
        last holder's for tables no test of this run declared).
        Not ``clean`` (an interrupted run), or when that fails, the next holder recreates the keyspace."""
        lease, self.lease = self.lease, None
        if lease is None:
            return
        if not clean:
            lease.release(clean=False)
            return
        try:
            kinds = ("tables", "views", "types", "functions", "aggregates")
            futures = {kind: self.session.execute_async(
                f"SELECT {kind[:-1]}_name FROM system_schema.{kind} WHERE keyspace_name = %s", (self.keyspace,))
                for kind in kinds}
            found = {kind: [row[0] for row in futures[kind].result()] for kind in kinds}
            if any(found[kind] for kind in ("views", "types", "functions", "aggregates")):
                lease.release(clean=False)  # rarely made in a test keyspace: the next holder starts afresh
                return
            # create_table() tables: this run's, and the last holder's that no test of this run declared
            # (under xdist another worker's tests may have): both stay, emptied, for the next holder.
            digests = {**{table: kept[0] for table, kept in self.kept_tables.items()}, **self.table_digests}
            kept = [table for table in found["tables"] if table in digests]
            for table in found["tables"]:
                if table not in (OWNER_TABLE, self.result_table, *kept):
                    self.schema_change(f"DROP TABLE IF EXISTS {self.keyspace}.{table}")
            emptied = [self.result_table, *kept]
            first_rows = [self.session.execute_async(f"SELECT * FROM {self.keyspace}.{table} LIMIT 1", timeout=60)
                          for table in emptied]
            for table, rows in zip(emptied, first_rows):
                if rows.result().one() is not None:  # cleanup off, or the last test's cleanup failed
                    self.session.execute(f"TRUNCATE {self.keyspace}.{table}", timeout=60)
                    self.tombstones[table] = 0
        except BaseException:
            lease.release(clean=False)
            raise
        lease.release(clean=self.result_table in found["tables"], tombstones=self.tombstones.get(self.result_table, 0),
                      tables={table: (digests[table], self.tombstones.get(
                          table, self.kept_tables.get(table, ("", 0))[1])) for table in kept})

    def _create_own_keyspace(self) -> None:
        existing = self.cluster.metadata.keyspaces.get(self.keyspace)
        if existing is not None:
            # A leased keyspace with no table at all: its holder was killed between CREATE KEYSPACE and the
            # owner table.
            if OWNER_TABLE not in existing.tables and not (self.lease is not None and not existing.tables):
                raise DatabaseSetupError(
                    f"pytest-celery-astra: keyspace {self.keyspace!r} already exists and was not created by this "
                    f"plugin, so it will not be used or cleaned; set --celery-astra-keyspace to another prefix.")
            # Left by an earlier run (a reused container, or a crash): start afresh.
            self.schema_change(f"DROP KEYSPACE {self.keyspace}")
        replication = self.resolve_replication()
        self.schema_change(f"CREATE KEYSPACE {self.keyspace} WITH replication = {replication.cql()}")
        mark = table_mark(self.run_id, self.worker) + (f" lease={self.lease.slot}" if self.lease else "")
        self.schema_change(
            f"CREATE TABLE {self.keyspace}.{OWNER_TABLE} (run_id text PRIMARY KEY) WITH comment = '{mark}'")

    def resolve_replication(self) -> Replication:
        """The keyspace's replication for this cluster (``replication`` setting); a replication no QUORUM
        could be met with is refused in one sentence before anything is created."""
        from pytest_celery_astra.cassandra.replication import resolve

        value, source = self.replication_setting
        data_centers = [host.datacenter for host in self.cluster.metadata.all_hosts()]
        try:
            self.replication = resolve(value, source, self.single_node, data_centers)
        except ValueError as error:
            raise DatabaseSetupError(str(error)) from None
        return self.replication

    def _agree_after_all(self) -> bool:
        """The driver reports "not agreed" also when its control connection was on a node that went down
        during the wait: once it has reconnected to another node, wait for agreement again."""
        from cassandra import DriverException

        deadline = time.monotonic() + SCHEMA_AGREEMENT_WAIT
        try:  # raises unless every live node agrees within the wait (or the connection is down)
            self._through_control_connection(lambda: self.cluster.refresh_keyspace_metadata(
                self.keyspace, max_schema_agreement_wait=max(deadline - time.monotonic(), 0.1)), deadline)
        except DriverException:
            return False
        return True

    @staticmethod
    def _through_control_connection(call, deadline: float) -> None:
        """``call`` (a metadata request on the driver's control connection), again every 0.2 s until
        ``deadline`` while it raises: the connection moves to another node when its own goes down."""
        from cassandra import DriverException

        while True:
            try:
                return call()
            except DriverException:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def schema_change(self, statement: str) -> None:
        """Run a DDL statement and wait until every live node agrees on the schema: a node that answers a
        later query with the old schema fails it (``table ... does not exist``)."""
        result = self.session.execute(statement, timeout=60)
        if not result.response_future.is_schema_agreed and not self._agree_after_all():
            first_words = " ".join(statement.split()[:4])
            raise DatabaseSetupError(
                f"pytest-celery-astra: the Cassandra nodes did not agree on the schema within "
                f"{SCHEMA_AGREEMENT_WAIT} s after `{first_words} ...`; a node is overloaded or cannot reach "
                f"the others (nodetool describecluster lists the schema versions).")

    def create_table(self, table: str, ddl_for=None, cql: str | None = None) -> None:
        """Create ``table`` in the test keyspace; it is the plugin's own and is emptied after every test.

        ``cql`` is your ``CREATE TABLE`` statement (unqualified names land in the test keyspace);
        ``ddl_for(keyspace, table, mark)`` returns one instead. Call it once, from a session fixture.
        """
        from cassandra import AlreadyExists, InvalidRequest, Unauthorized

        mark = table_mark(self.run_id, self.worker)
        statement = with_mark(cql, mark) if cql is not None else ddl_for(self.keyspace, table, mark)
        if table != self.result_table:
            digest = statement_digest(cql if cql is not None else ddl_for(self.keyspace, table, ""))
            self.table_digests[table] = digest
            kept = self.kept_tables.pop(table, None)
            if kept is not None and kept[0] == digest:  # left empty by the leased keyspace's last holder
                self.tombstones[table] = kept[1]
                self._register_created(table)
                return
            if kept is not None:  # the same name, another statement
                self.schema_change(f"DROP TABLE IF EXISTS {self.keyspace}.{table}")
        try:
            try:
                self.schema_change(statement)
            except Unauthorized as error:
                raise DatabaseSetupError(self._not_allowed_message(table, error)) from None
            except InvalidRequest as error:
                if "guardrail tables" not in str(error).lower():
                    raise
                raise DatabaseSetupError(
                    f"pytest-celery-astra: the database refused table {self.keyspace}.{table}: it is at its limit "
                    f"of tables ({first_line(error)}); drop tables (tables of crashed runs: --astra-drop-stale) or "
                    f"run fewer xdist workers.") from None
            self.made_tables.add(table)
            self._check_mark_kept(table, mark, user_comment=cql is not None and mark not in statement)
        except AlreadyExists:
            found = parse_mark(self.table_comment(table))
            if found is None:
                raise DatabaseSetupError(
                    f"pytest-celery-astra: table {self.keyspace}.{table} already exists and was not created by "
                    f"this plugin, so it will not be used or cleaned; choose another name"
                    f"{' (--celery-astra-table)' if table == self.result_table else ''}.") from None
            if found["run"] != self.run_id:  # left by an earlier run: start empty
                self.session.execute(f"TRUNCATE {self.keyspace}.{table}", timeout=60)
        self._register_created(table)

    def _register_created(self, table: str) -> None:
        self.created_tables.add(table)
        if self.table_users is not None and table != self.result_table:
            self.table_users.add(table)
        if table != self.result_table and table not in self.cleaned_tables:
            self.cleaned_tables.append(table)

    def _not_allowed_message(self, table: str, error: BaseException) -> str:
        if self.target.is_astra:
            who = "the Astra token's role" if self.target.username == "token" else "the Astra client id's role"
            fix = ("use a token whose role may create and drop tables in this keyspace (in the Astra console, "
                   "e.g. Database Administrator scoped to the database); a read/write role cannot")
        else:
            who = f"role {self.target.username!r}" if self.target.username else "the anonymous role"
            fix = "grant it CREATE and DROP on the keyspace, or log in with another role"
        return (f"pytest-celery-astra: {who} may not create table {self.keyspace}.{table} "
                f"({first_line(error)}); {fix}.")

    def register_table(self, table: str) -> str:
        """Empty ``table`` after every test from now on: for a table your app creates itself in the
        test keyspace. Refused (:class:`TableNotOwnedError`) for tables outside the plugin's keyspace."""
        name = self.owned_table(table)
        if name != self.result_table and name not in self.cleaned_tables:
            self.cleaned_tables.append(name)
        return name

    def _note_request(self, response_future, *args) -> None:
        """Every request through this Session (the one tests get): from now on the tables may hold rows
        this process's backend did not store, so the backend reads before it writes again (observed
        where the request is made, whichever way the test got the Session)."""
        self.reached = True
        self.rows.only_from_here.clear()

    def owned_table(self, table: str) -> str:
        """The name of ``table`` (``name`` or ``keyspace.name``) if the plugin may empty it.

        Raises :class:`TableNotOwnedError` unless the plugin created the table, or it lives in the
        keyspace the plugin created.
        """
        keyspace, _, name = table.rpartition(".")
        keyspace = keyspace or self.keyspace
        if keyspace in SYSTEM_KEYSPACES or keyspace != self.keyspace:
            raise TableNotOwnedError(
                f"pytest-celery-astra: refusing to clean {keyspace}.{name}: only tables in the test keyspace "
                f"{self.keyspace!r} are cleaned.")
        if not self._owned(name):
            raise TableNotOwnedError(
                f"pytest-celery-astra: refusing to clean {keyspace}.{name}: the plugin did not create it "
                f"(create it with celery_astra_database.create_table(...) to have it cleaned).")
        return name

    def _owned(self, name: str) -> bool:
        if name == OWNER_TABLE:
            return False
        if name in self.created_tables:
            return True
        if self.owns_keyspace:
            self.refresh_table_metadata(name)
            return name in self.cluster.metadata.keyspaces[self.keyspace].tables
        # A shared (Astra) keyspace: only tables marked by this very run.
        mark = parse_mark(self.table_comment(name))
        return mark is not None and mark["run"] == self.run_id

    def refresh_table_metadata(self, table: str, timeout: float = SCHEMA_AGREEMENT_WAIT) -> None:
        """The driver's metadata of ``table``, read afresh through its control connection, which is
        reconnecting to another node for a moment when the node it was on has just gone down."""
        self._through_control_connection(lambda: self.cluster.refresh_table_metadata(self.keyspace, table),
                                         time.monotonic() + timeout)

    def table_comment(self, table: str) -> str | None:
        self.refresh_table_metadata(table)
        metadata = self.cluster.metadata.keyspaces[self.keyspace].tables.get(table)
        return None if metadata is None else metadata.options.get("comment")

    def drop_created_tables(self) -> None:
        """Astra mode, end of run: drop exactly the tables this run's CREATE made (by this record, not
        by the mark, which a server could lose), and any other table marked with this run."""
        for table in sorted(self.created_tables | self.made_tables):
            if self.table_users is not None and table != self.result_table and not self.table_users.release(table):
                continue  # another xdist worker of this run still uses it: the last one drops it
            if table not in self.made_tables:
                mark = parse_mark(self.table_comment(table))
                if mark is None or mark["run"] != self.run_id:
                    continue
            self.schema_change(f"DROP TABLE IF EXISTS {self.keyspace}.{table}")
        self.created_tables.clear()
        self.made_tables.clear()

    def _check_mark_kept(self, table: str, mark: str, user_comment: bool) -> None:
        """Read the comment back: a server that silently dropped it (Astra ignores table options it does
        not support) would leave every table unmarked, so no later run could tell it was a leftover."""
        if user_comment:  # the user's CREATE sets its own comment; the plugin tracks the table instead
            return
        found = self.table_comment(table)
        if found != mark:
            self.schema_change(f"DROP TABLE IF EXISTS {self.keyspace}.{table}")
            self.made_tables.discard(table)
            raise DatabaseSetupError(
                f"pytest-celery-astra: the server did not keep the comment of table {self.keyspace}.{table} "
                f"(found {found!r}), which marks it as this plugin's; without it no later run could tell "
                f"a leftover table from yours, so the table was dropped and the run stops.")

    def drop_keyspace(self) -> None:
        """Existing cluster, end of run: drop the keyspace this run created (and only that)."""
        existing = self.cluster.metadata.keyspaces.get(self.keyspace)
        if existing is not None and OWNER_TABLE in existing.tables:
            self.schema_change(f"DROP KEYSPACE IF EXISTS {self.keyspace}")

    def shutdown(self) -> None:
        if self.cluster is not None:
            self.cluster.shutdown()
            self.cluster = self.session = None
