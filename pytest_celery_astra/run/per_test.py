"""Around each test: what the plugin does before and after it, and what it knows during it.

Before: a test whose worker process died is told in one sentence; a test that reaches the tables itself
waits for the previous test's deferred deletes. During: whether every result row comes from this
process (``ResultRows.only_from_here``). After: the workers settle (no task of this test runs
during the next), the tables of every database fixture the test used are emptied, the workers are checked.
"""

from __future__ import annotations

import warnings

import pytest

from pytest_celery_astra.errors import CleanupError
from pytest_celery_astra.run import registry
from pytest_celery_astra.run.context import RUN_CONTEXT_KEY

PUBLIC_FIXTURES = frozenset({
    "celery_astra_database", "celery_astra_cassandra", "celery_astra_app", "celery_astra_worker",
    "celery_astra_cleanup", "celery_astra_broker_url", "celery_astra_sent_tasks", "celery_astra_services",
    "celery_astra_worker_process",
})


def before_test(request: pytest.FixtureRequest) -> None:
    """A worker process this test asks for that died earlier fails it in one sentence; a test that reaches
    the tables itself waits for the last test's deferred deletes."""
    for worker in request.config.stash.get(registry.RUNNING_WORKERS_KEY, []):
        gone = worker.gone()
        if gone and worker.fixturename in request.fixturenames:
            pytest.fail(gone, pytrace=False)
    databases = request.config.stash.get(registry.DATABASES_KEY, {})
    if databases and reaches_tables(request):
        for database in list(databases.values()):
            database.rows.deletes.wait((database.keyspace, database.result_table))  # the last test's deferred deletes


def after_test(request: pytest.FixtureRequest) -> None:
    """Settle the workers, empty the tables of the databases this test used, check the workers."""
    if request.config.stash[RUN_CONTEXT_KEY].interrupts.interrupted():
        return  # Ctrl-C / SIGTERM: the run is being removed; settling workers or emptying tables only delays it
    names = request.fixturenames
    databases = registry.databases_used_by(request.config, names)
    if not databases and PUBLIC_FIXTURES.isdisjoint(names):
        return
    if request.config.stash[RUN_CONTEXT_KEY].settings.cleanup:
        from pytest_celery_astra.cassandra.janitor import Janitor

        settle_workers(request)
        deferred = rows_all_from_here(request)
        for name, database in databases.items():
            # celery_astra_cleanup, when the test asked for it, already cleaned (with its registered tables).
            skip = name == "celery_astra_database" and "celery_astra_cleanup" in names
            if not skip and database.session is not None:
                clean(Janitor(database), deferred=deferred)
            database.reached = False  # emptied: what the test (and the janitor) sent through it is gone
    for embedded in request.config.stash.get(registry.RUNNING_WORKERS_KEY, []):
        embedded.check_unreported()


# Fixtures through which a test reaches the tables itself (or stops Cassandra): such a test waits for
# the previous test's deferred deletes in its set-up, and its own result rows are found by reading.
_DIRECT_DATABASE_FIXTURES = frozenset({
    "celery_astra_database", "celery_astra_cassandra", "celery_astra_cleanup", "celery_astra_services"})


def reaches_tables(request: pytest.FixtureRequest | pytest.Function) -> bool:
    """Whether the test (or one of its fixtures) asks for a database fixture or the session: by name before
    it runs, and afterwards also those it got at run time (``request.getfixturevalue``)."""
    databases = request.config.stash.get(registry.DATABASES_KEY, {})
    names = request.fixturenames
    return any(name in _DIRECT_DATABASE_FIXTURES or name in databases for name in names)


def rows_all_from_here(request: pytest.FixtureRequest | pytest.Function) -> bool:
    """Every result row this test made was stored by this process's backend (so the janitor knows their
    task ids): no worker process runs, the test did not ask for the tables, and no request went through
    the Session tests get (observed by the database itself, however the test reached it)."""
    config = request.config
    workers = config.stash.get(registry.RUNNING_WORKERS_KEY, [])
    databases = config.stash.get(registry.DATABASES_KEY, {}).values()
    return (all(worker.in_this_process for worker in workers) and not reaches_tables(request)
            and not any(database.reached for database in databases))


_FOREIGN_ROWS_KEPT_KEY = pytest.StashKey[bool]()



def call_with_rows_known(item: pytest.Function):
    context = item.config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None or not item.config.stash.get(registry.DATABASES_KEY, {}):
        yield
        return
    only_here = rows_all_from_here(item)
    if not context.settings.cleanup:
        if not only_here:
            item.config.stash[_FOREIGN_ROWS_KEPT_KEY] = True
        only_here = only_here and not item.config.stash.get(_FOREIGN_ROWS_KEPT_KEY, False)
    only_from_here = context.rows.only_from_here
    _set_event(only_from_here, only_here)
    try:
        yield
    finally:
        only_from_here.clear()
        if not context.settings.cleanup and not rows_all_from_here(item):
            item.config.stash[_FOREIGN_ROWS_KEPT_KEY] = True  # the test reached the tables during its call


def _set_event(event, value: bool) -> None:
    if value:
        event.set()
    else:
        event.clear()



def clean(janitor, deferred: bool = False) -> None:
    """Empty the tables; a failure the plugin can name (a node down: CleanupError) is its sentence alone."""
    try:
        janitor.clean(deferred=deferred)
    except CleanupError as error:
        pytest.fail(str(error), pytrace=False)


_SETTLED_KEY = pytest.StashKey[bool]()


def settle_in_order(threads: list, processes: list, settle_threads, timeout: float) -> list:
    """The worker threads (``settle_threads``: workers/thread.py's settle_all), then the worker processes; then, when
    a test had both, the threads once more: while the processes settled, a thread may have taken what their last
    tasks sent on (a chain's next link, published by a prefork child) and would run it during the next test.
    Returns the workers still busy."""
    busy = settle_threads()
    busy += [worker for worker in processes if not worker.settle(timeout)]
    if threads and processes and not busy:
        busy = [worker for worker in threads if not worker.settle(timeout)]
    return busy


def settle_workers(request: pytest.FixtureRequest) -> None:
    """Once per test, before any cleanup: no task of this test may run (and write) during the next one."""
    if request.node.stash.get(_SETTLED_KEY, False):
        return
    request.node.stash[_SETTLED_KEY] = True
    workers = request.config.stash.get(registry.RUNNING_WORKERS_KEY, [])
    if not workers:
        return
    from pytest_celery_astra.workers.thread import settle_all

    context = request.config.stash[RUN_CONTEXT_KEY]
    timeout = context.settings.worker_timeout
    embedded_workers = [worker for worker in workers if worker.in_this_process]
    busy = settle_in_order(embedded_workers, [worker for worker in workers if worker not in embedded_workers],
                           lambda: settle_all(embedded_workers, timeout, context.in_flight), timeout)
    for embedded in busy:
        warnings.warn(pytest.PytestWarning(
            f"pytest-celery-astra: a task was still running on {embedded.hostname} {timeout:g} s after the "
            f"test; what it writes may land in the next test (raise --celery-astra-worker-timeout)."))
