"""Fixture factories: the plugin's default fixtures are instances of these.

A second keyspace, app or worker in a user's conftest is one line::

    from pytest_celery_astra import factories
    billing_database = factories.database(keyspace_prefix="billing")
    billing_app = factories.app("billing.tasks:app", database_fixture="billing_database")
    billing_worker = factories.worker(app_fixture="billing_app", queues=("invoices",))
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Callable, NoReturn

import pytest

from pytest_celery_astra.brokers.choice import check_broker_answers, worker_broker_url
from pytest_celery_astra.cassandra.app_state import AppState, attach, restore, state_of
from pytest_celery_astra.cassandra.database import TestDatabase
from pytest_celery_astra.celery_app import (
    close_backend,
    close_broker_pools,
    configure_app,
    connect_backend_in_background,
    load_app,
)
from pytest_celery_astra.containers.coordination import warn_reaped
from pytest_celery_astra.errors import CeleryAstraError, ConfigurationError
from pytest_celery_astra.masking import MaskedUrl
from pytest_celery_astra.run.context import RUN_CONTEXT_KEY, RunContext
from pytest_celery_astra.run.registry import (
    DATABASES_KEY,
    RUNNING_WORKERS_KEY,
    USES_DATABASE_KEY,
    WIRED_APPS_KEY,
    uses_database,
)
from pytest_celery_astra.run.why import Explainer
from pytest_celery_astra.workers.wiring import Wiring

if TYPE_CHECKING:
    from celery import Celery


def _context(request: pytest.FixtureRequest) -> RunContext:
    return request.config.stash[RUN_CONTEXT_KEY]


def _fail_setup(request: pytest.FixtureRequest, error: Exception) -> NoReturn:
    """One clear sentence instead of a traceback from deep inside a driver, and once per run:
    a session fixture that cannot be set up would fail every later test the same way."""
    request.session.shouldfail = "pytest-celery-astra: stopping the run after the set-up error above"
    raise pytest.fail.Exception(str(error), pytrace=False) from None


def _documented(doc: str, **fixture_kwargs) -> Callable[[Callable], Callable]:
    """``pytest.fixture`` for a factory-made function, with its docstring set first:
    pytest 8.4+ wraps the function, and a ``__doc__`` set afterwards never reaches ``--fixtures``."""
    def decorate(function: Callable) -> Callable:
        function.__doc__ = doc
        return pytest.fixture(**fixture_kwargs)(function)
    return decorate


def _teardown_step(what: str, step: Callable[[], object]) -> None:
    """Run one teardown step; a failure is reported but does not stop the others."""
    try:
        step()
    except Exception as error:
        warnings.warn(pytest.PytestWarning(f"pytest-celery-astra: {what} failed during teardown: {error}"))


def database(keyspace_prefix: str | None = None) -> Callable:
    """Build a session fixture giving a :class:`TestDatabase` (connected, keyspace and result table ready).

    ``keyspace_prefix`` names a second keyspace in the same Cassandra; the
    xdist worker id is appended, as for the default one.
    """

    @_documented(
        "A TestDatabase (session scope): a connected cassandra-driver Session (.session), the test "
        "keyspace (.keyspace) and Celery's result table (.result_table), created with Celery's schema "
        "before any test runs; .create_table() makes tables the plugin owns and empties after every test.",
        scope="session")
    def database_fixture(request: pytest.FixtureRequest):
        context = _context(request)
        lease = None
        try:
            context.preflight()
            context.start_services(("cassandra",))  # the broker may go on booting meanwhile
            lease = context.keyspace_lease(keyspace_prefix)
            placement = context.placement
            db = TestDatabase(
                context.cassandra_target(), lease.keyspace if lease else placement.keyspace(keyspace_prefix),
                placement.result_table(keyspace_prefix), context.run_id, context.worker,
                context.settings.read_consistency, context.settings.write_consistency, lease=lease,
                replication=context.settings.replication, replication_source=context.settings.sources["replication"],
                single_node=context.cassandra_mode == "container", rows=context.rows)
            db.connect(context.settings.startup_timeout, retry=context.cassandra_mode == "container")
        except CeleryAstraError as error:
            if lease is not None:
                lease.release(clean=False)
            _fail_setup(request, error)
        try:
            if context.keeps_cluster_keyspaces:
                db.take_cluster_lease(context.placement.lease_registry(keyspace_prefix),
                                      lambda slot: context.placement.kept_keyspace(slot, keyspace_prefix))
            db.prepare_keyspace()  # checks the Astra keyspace first
            warn_reaped(_reap_leftovers(context, db))
            if context.cassandra_mode == "astra":
                from pytest_celery_astra.astra.preflight import check_table_budget

                workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
                check_table_budget(db.cluster, context.run_id, workers, context.settings.astra_table_limit)
                if workers > 1:  # app tables are shared by the workers: the last one drops them
                    from pytest_celery_astra.cassandra.shared_tables import TableUsers

                    context.state.ensure_directory()
                    db.table_users = TableUsers(context.state.directory, context.worker)
            db.create_result_table()
        except CeleryAstraError as error:
            db.return_lease(clean=False)
            db.shutdown()
            _fail_setup(request, error)
        except BaseException:
            db.return_lease(clean=False)
            db.shutdown()
            raise
        databases = request.config.stash.setdefault(DATABASES_KEY, {})
        databases[request.fixturename] = db
        uses_database(request, request.fixturename)
        db.reached = False  # the plugin's own set-up requests above are not a test's (see TestDatabase.reached)
        yield db
        databases.pop(request.fixturename, None)
        _teardown_step("finishing the last test's result-row deletes", lambda: _forget_result_rows(db))
        if context.cassandra_mode == "astra":
            _teardown_step("dropping the run's Astra tables", db.drop_created_tables)
        elif db.lease is not None:  # a kept container's keyspace: left clean for the next run (leases.py)
            interrupted = context.interrupts.interrupted()
            _teardown_step(f"returning keyspace {db.keyspace}", lambda: db.return_lease(clean=not interrupted))
        elif context.shares_cassandra:  # an existing cluster, or a kept container other runs will use
            _teardown_step(f"dropping keyspace {db.keyspace}", db.drop_keyspace)
        _teardown_step("closing the Cassandra session", db.shutdown)

    return database_fixture


def _forget_result_rows(db: TestDatabase) -> None:
    db.rows.forget((db.keyspace, db.result_table))


def _reap_leftovers(context: RunContext, db: TestDatabase) -> list[str]:
    """Keyspaces (or Astra tables) of killed runs on this host; with --celery-astra-drop-stale (or
    --astra-drop-stale) also those of other runs older than 2 hours, from any host but a live run here."""
    include_old = context.settings.drop_stale or context.settings.astra_drop_stale
    if context.settings.astra:
        from pytest_celery_astra.astra.preflight import stale_tables

        tables = stale_tables(db.cluster, db.keyspace, context.run_id, include_old)
        for table in tables:
            db.schema_change(f"DROP TABLE IF EXISTS {db.keyspace}.{table}")
        return [f"table {db.keyspace}.{table}" for table in tables]
    return db.reap_dead_keyspaces(include_old) if context.shares_cassandra else []


def app(reference: str | None = None, database_fixture: str = "celery_astra_database") -> Callable:
    """Build a session fixture giving a Celery app wired to the test broker and Cassandra.

    ``reference`` is ``module:attribute`` of the user's app (like ``tasks:app``);
    by default the ``app`` setting, or a fresh app when that is unset.
    """

    @_documented(
        "The Celery app (session scope) wired to the test broker and to the Cassandra result backend "
        "(keyspace, table, consistency, auth); the user's app when --celery-astra-app names one, its "
        "other settings kept.", scope="session")
    def app_fixture(request: pytest.FixtureRequest, celery_astra_broker_kind):
        app_reference = reference or _context(request).settings.app
        yield from wired_app(request, lambda: load_app(app_reference), app_reference, database_fixture,
                             celery_astra_broker_kind, own_queue=request.fixturename != "celery_astra_app")

    return app_fixture


def wired_app(request: pytest.FixtureRequest, make_app: Callable[[], Celery], reference: str | None,
              database_fixture: str, broker_kind: str | None, own_queue: bool):
    """Generator behind every app fixture: ``make_app()`` wired to the test broker (of ``broker_kind``) and
    to the Cassandra of ``database_fixture``; yields the app, then closes its backend and broker pools.
    ``reference`` (module:attribute) is how a worker process imports the same app; ``own_queue`` gives
    the app a default queue of its own (named after the fixture) when it uses Celery's "celery"."""
    context = _context(request)
    try:
        # Checked before any container starts: a wrong app path or broker URL costs no start-up.
        context.preflight()
        celery_app = make_app()
        if context.broker.mode == "url":
            url, transport_options = worker_broker_url(context.broker, context.settings, None, context.placement)
            check_broker_answers(url, transport_options)
    except (CeleryAstraError, ImportError) as error:
        _fail_setup(request, error)
    except ValueError as error:
        _fail_setup(request, ConfigurationError(f"pytest-celery-astra: {error}."))
    db: TestDatabase = request.getfixturevalue(database_fixture)
    try:
        services = context.start_services()
        if context.broker.mode != "url":
            url, transport_options = worker_broker_url(
                context.broker, context.settings, services.get(broker_kind or ""), context.placement, broker_kind,
                context.vhost_preparations)
    except CeleryAstraError as error:
        _fail_setup(request, error)
    uses_database(request, database_fixture)
    if own_queue and celery_app.conf.task_default_queue == "celery":
        # A second app shares the broker's vhost with the default one: on the same "celery" queue,
        # each worker would receive the other app's tasks (and drop them as unregistered).
        celery_app.conf.task_default_queue = request.fixturename
    configure_app(
        celery_app, url, transport_options, db.target.celery_settings(), db.keyspace, db.result_table,
        context.settings.read_consistency, context.settings.write_consistency,
        context.settings.result_poll_interval)
    # The run's state for this app (its ledger, why a .get() timed out, the wiring a worker process needs):
    # restored after, for a pytest run inside a test wires the same app again.
    state = AppState(rows=context.rows, explain_timeout=Explainer(request.config, celery_app), wiring=Wiring(
        app=reference, broker_url=MaskedUrl(url), transport_options=transport_options,
        target=db.target,
        keyspace=db.keyspace, table=db.result_table, read_consistency=context.settings.read_consistency,
        write_consistency=context.settings.write_consistency, poll_interval=context.settings.result_poll_interval,
        default_queue=celery_app.conf.task_default_queue, broker_mode=context.broker.mode))
    before = attach(celery_app, state)
    context.journal.connect()  # the test's tasks, for a .get() that times out and a failing test's report
    wired = request.config.stash.setdefault(WIRED_APPS_KEY, [])
    wired.append(celery_app)
    connect_backend_in_background(celery_app)
    yield celery_app
    wired.remove(celery_app)
    try:
        _teardown_step("closing the result backend's Cassandra connection", lambda: close_backend(celery_app))
        _teardown_step("closing the broker connection pool", lambda: close_broker_pools(celery_app))
    finally:
        restore(celery_app, before)


def worker(app_fixture: str = "celery_astra_app", queues: tuple[str, ...] | None = None, *,
           wake_interval: float | None = None) -> Callable:
    """Build a session fixture running an embedded worker for an app fixture.

    The worker consumes the app's default queue plus ``queues`` (by default the
    ``queues`` setting). A dead worker fails the test that notices it.
    ``wake_interval`` (seconds, default ``workers.thread.WAKE_INTERVAL``) is how often its event loop
    turns with nothing to read; a stop, settle or cancel wakes it at once regardless.
    """

    @_documented(
        "An EmbeddedWorker (session scope): a Celery worker in a thread of this process running the "
        "app's tasks; a worker that dies fails the test with its cause.", scope="session")
    def worker_fixture(request: pytest.FixtureRequest, celery_astra_broker_kind):
        from pytest_celery_astra.workers.thread import WAKE_INTERVAL, EmbeddedWorker

        context = _context(request)
        settings = context.settings
        if settings.worker_kind == "process":  # the same tests, against `celery worker` processes
            yield from _run_process_worker(request, app_fixture, queues)
            return
        celery_app = request.getfixturevalue(app_fixture)
        embedded = EmbeddedWorker(
            celery_app, hostname=context.placement.node_name(app_fixture), pool=settings.worker_pool,
            concurrency=settings.worker_concurrency, queues=settings.queues if queues is None else queues,
            start_timeout=settings.worker_timeout, stop_timeout=settings.worker_timeout,
            make_default=app_fixture == "celery_astra_app", in_flight=context.in_flight,
            wake_interval=WAKE_INTERVAL if wake_interval is None else wake_interval)
        yield from running_worker(request, embedded, app_fixture)

    return worker_fixture


def running_worker(request: pytest.FixtureRequest, embedded, app_fixture: str):
    """Generator behind every worker fixture, thread or process: start ``embedded`` (a set-up error is one
    sentence), make the per-test settle and cleanup see it, yield it, stop it."""
    embedded.fixturename = request.fixturename
    try:
        embedded.start()
    except CeleryAstraError as error:
        _fail_setup(request, error)
    uses_database(request, request.config.stash[USES_DATABASE_KEY].get(app_fixture))
    request.config.stash.setdefault(RUNNING_WORKERS_KEY, []).append(embedded)
    try:
        yield embedded
    finally:
        request.config.stash[RUNNING_WORKERS_KEY].remove(embedded)
        embedded.stop()


def worker_process(app_fixture: str = "celery_astra_app", queues: tuple[str, ...] | None = None,
                   pool: str | None = None, concurrency: int | None = None) -> Callable:
    """Build a session fixture running ``celery worker`` in a subprocess for an app fixture: prefork
    by default (``pool``, ``concurrency``: by default the worker_process_* settings)."""

    @_documented(
        "A ProcessWorker (session scope): the real `celery worker` command in a subprocess (prefork by "
        "default), running the app wired to this process's broker vhost and keyspace; ready once it answers "
        "a ping to its node name; its log is attached to failing tests; never left running.", scope="session")
    def worker_process_fixture(request: pytest.FixtureRequest, celery_astra_broker_kind):
        yield from _run_process_worker(request, app_fixture, queues, pool, concurrency)

    return worker_process_fixture


def _run_process_worker(request: pytest.FixtureRequest, app_fixture: str, queues, pool=None, concurrency=None):
    from pytest_celery_astra.workers.process import ProcessWorker

    context = _context(request)
    settings = context.settings
    celery_app = request.getfixturevalue(app_fixture)
    wiring = state_of(celery_app).wiring
    assert isinstance(wiring, Wiring)  # every app fixture wires its app
    if wiring.broker_mode == "memory":
        _fail_setup(request, ConfigurationError(
            "pytest-celery-astra: a worker process cannot reach the in-process memory broker; use "
            "--celery-astra-broker container (or url) with the process worker."))
    if wiring.app is None:
        _fail_setup(request, ConfigurationError(
            "pytest-celery-astra: a worker process imports your app by name; set --celery-astra-app "
            "(ini celery_astra_app) to its module:attribute."))
    process = ProcessWorker(
        celery_app, wiring, hostname=context.unique_node_name(context.placement.node_name(app_fixture, "process")),
        pool=pool or settings.worker_process_pool, concurrency=concurrency or settings.worker_process_concurrency,
        queues=settings.queues if queues is None else queues, start_timeout=max(settings.worker_timeout, 60.0),
        stop_timeout=settings.worker_timeout, directory_parent=_state_directory(context))
    yield from running_worker(request, process, app_fixture)


def _state_directory(context: RunContext):
    """The run's state directory (removed at the run's end, reaped after a kill), made if need be."""
    context.state.ensure_directory()
    return context.state.directory
