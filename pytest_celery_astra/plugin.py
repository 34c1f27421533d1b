"""pytest-celery-astra: hooks, options and the default fixtures. The machinery lives elsewhere."""

from __future__ import annotations

import importlib.util
import sys
import warnings

import pytest

from . import factories, interrupts
from .broker import check_broker_url, choose_broker
from .coordination import RunState, dead_runs_left, reap_dead_runs, warn_reaped
from .errors import CeleryAstraError, CleanupError
from .header import describe_run
from .naming import is_xdist_worker, worker_id
from .runcontext import RUN_CONTEXT_KEY, RunContext
from .settings import register_options, settings_from_config

PUBLIC_FIXTURES = frozenset({
    "celery_astra_database", "celery_astra_cassandra", "celery_astra_app", "celery_astra_worker",
    "celery_astra_cleanup", "celery_astra_broker_url", "celery_astra_sent_tasks", "celery_astra_services",
    "celery_astra_worker_process",
})


def pytest_addoption(parser: pytest.Parser) -> None:
    register_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "astra_live: run only against a live Astra DB (--astra); skipped otherwise")
    settings = settings_from_config(config)
    # Settings the project gave (command line, ini file) are checked now; a bad value in the
    # environment waits until a test uses the plugin, so unrelated suites are not affected.
    if settings.astra and _given_by_project(settings, "astra"):
        from .astra import check_astra_settings

        check_astra_settings(settings)
    if settings.app is not None and _given_by_project(settings, "app"):
        _check_app_module(settings.app)
    try:
        if settings.broker_url is not None and _given_by_project(settings, "broker_url"):
            check_broker_url(settings.broker_url)
        if settings.broker != "auto" and _given_by_project(settings, "broker"):
            choose_broker(settings, None)  # without "auto" it probes nothing; refuses url mode without a URL
    except ValueError as error:
        raise pytest.UsageError(f"pytest-celery-astra: {error}.") from None
    if is_xdist_worker(config):
        state, owns_state = RunState.from_workerinput(config.workerinput), False
    else:
        state, owns_state = RunState.create(), True
        # SIGTERM like Ctrl-C once the run has containers to remove; until then signals are untouched.
        interrupts.install(state.has_something_to_clean, state.stop_all)
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_XdistController(state), "celery_astra_xdist")
    config.stash[RUN_CONTEXT_KEY] = RunContext(settings, worker_id(config), state, owns_state)


def _given_by_project(settings, name: str) -> bool:
    return settings.sources[name].startswith(("option ", "ini "))


def _check_app_module(reference: str) -> None:
    module = reference.partition(":")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise pytest.UsageError(
            f"pytest-celery-astra: module {module!r} of --celery-astra-app {reference!r} cannot be found; "
            f"fix the setting or add its directory to pytest's pythonpath ini option.")


class _XdistController:
    """Hands the run's shared state to each xdist worker."""

    def __init__(self, state: RunState):
        self.state = state

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        node.workerinput.update(self.state.to_workerinput())


def pytest_unconfigure(config: pytest.Config) -> None:
    try:
        _remove_what_the_run_made(config)
    finally:
        interrupts.cleanup_finished()


def _remove_what_the_run_made(config: pytest.Config) -> None:
    context = config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None:
        return
    if context.bundle_copy is not None:  # every process made its own
        from .bundle import remove_copy

        remove_copy(context.bundle_copy)
    if context.owns_state:
        # After the last xdist worker finished (or pytest itself, without xdist):
        # remove every container of the run, also after failures, Ctrl-C and SIGTERM;
        # a second Ctrl-C or SIGTERM now is ignored rather than leaving containers half-removed.
        interrupts.shield_cleanup()
    context.stop_starting()  # a start no test waited for gives up; what it made is recorded first
    if not context.owns_state:
        return
    for problem in context.state.stop_all():
        sys.stderr.write(f"pytest-celery-astra: {problem}\n")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Before the header: remove what killed runs on this host left (containers, state directories).

    Only when the temp directory holds a state directory whose owner is provably gone, so a run with
    nothing to reap asks no container engine. Said in the header, or as a warning when it is hidden."""
    context = session.config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None or not context.owns_state or not dead_runs_left(keep=context.state.directory):
        return
    context.reaped = reap_dead_runs(keep=context.state.directory)
    if getattr(session.config.option, "verbose", 0) < 0 or getattr(session.config.option, "no_header", False):
        warn_reaped(context.reaped)


def pytest_report_header(config: pytest.Config) -> list[str]:
    context = config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None:
        return []
    reaped = [f"celery-astra reaped what killed runs left: {'; '.join(context.reaped)}"] if context.reaped else []
    if not context.settings.configured:
        # Dormant: nothing is probed or started until a test requests a plugin fixture.
        return [f"celery-astra: defaults, services start only for tests that use celery_astra_* fixtures "
                f"(run id {context.run_id})", *reaped]
    return [*describe_run(context, _xdist_workers(config)), *reaped]


def _xdist_workers(config: pytest.Config) -> list[str]:
    """The xdist worker ids this run will have, as far as the controller knows them."""
    count = getattr(config.option, "numprocesses", None)
    if is_xdist_worker(config) or not isinstance(count, int) or count <= 0 or getattr(config.option, "dist", "no") == "no":
        return [worker_id(config)]
    return [f"gw{index}" for index in range(count)]


@pytest.hookimpl(hookwrapper=True)
def pytest_assertrepr_compare(config: pytest.Config, op: str, left: object, right: object):
    """A failing comparison with the broker URL shows reprs, which mask the password: pytest's own
    text diff would print the characters (also into ``pytest --debug``'s log, hence a wrapper)."""
    outcome = yield
    from .masking import MaskedUrl

    if isinstance(left, MaskedUrl) or isinstance(right, MaskedUrl):
        outcome.force_result([[f"{left!r} {op} {right!r}", "(pytest-celery-astra: the broker URL's password is masked)"]])


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """A failing test gets the log of every worker process running (the thread worker logs to pytest), and
    one that failed because too few Cassandra replicas were alive, the keyspace's replication."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for worker in item.config.stash.get(factories.RUNNING_WORKERS_KEY, []):
            if hasattr(worker, "log_tail"):
                report.sections.append((f"celery worker process {worker.hostname}", worker.log_tail()))
        if call.excinfo is not None and "cassandra" in type(call.excinfo.value).__module__:
            _explain_unavailable(item.config, report, call.excinfo.value)


def _explain_unavailable(config: pytest.Config, report: pytest.TestReport, error: BaseException) -> None:
    from .replication import unavailable_cause, unavailable_sentence

    unavailable = unavailable_cause(error)
    databases = [db for db in config.stash.get(factories.DATABASES_KEY, {}).values() if db.replication is not None]
    if unavailable is not None and databases:
        report.sections.append(("pytest-celery-astra", unavailable_sentence(
            databases[0].keyspace, databases[0].replication, unavailable)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash[RUN_CONTEXT_KEY].settings.astra:
        return
    skip = pytest.mark.skip(reason="needs a live Astra DB: run with --astra")
    for item in items:
        if item.get_closest_marker("astra_live") is not None:
            item.add_marker(skip)


celery_astra_database = factories.database()
celery_astra_app = factories.app()
celery_astra_worker = factories.worker()
celery_astra_worker_process = factories.worker_process()


@pytest.fixture(scope="session")
def celery_astra_broker_kind(request: pytest.FixtureRequest):
    """The broker this test's app and worker use (session scope): ``"rabbitmq"`` or ``"redis"`` in
    container mode, None otherwise. With --celery-astra-broker-kind rabbitmq,redis every test that uses
    the app or a worker runs once per broker, with ids ``[rabbitmq]`` and ``[redis]``."""
    if hasattr(request, "param"):
        return request.param
    try:
        return request.config.stash[RUN_CONTEXT_KEY].broker.kind
    except CeleryAstraError:
        return None  # the app fixture reports the setting, once, and stops the run


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "celery_astra_broker_kind" not in metafunc.fixturenames:
        return
    kinds = _broker_kinds(metafunc.config)
    if len(kinds) > 1:
        metafunc.parametrize("celery_astra_broker_kind", kinds, indirect=True, ids=kinds, scope="session")


def _broker_kinds(config: pytest.Config) -> tuple[str, ...]:
    """Several brokers only in container mode; resolving ``auto`` probes the engine, once per process."""
    context = config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None or "," not in context.settings.broker_kind:
        return ()
    try:
        return context.broker.kinds
    except CeleryAstraError:
        return ()  # the fixture reports it, with the test that needs it


@pytest.fixture(scope="session")
def celery_astra_settings(request: pytest.FixtureRequest):
    """The resolved settings (session scope): ``.values`` and ``.sources`` by setting name."""
    return request.config.stash[RUN_CONTEXT_KEY].settings


@pytest.fixture(scope="session")
def celery_astra_cassandra(celery_astra_database):
    """A connected cassandra-driver Session bound to the test keyspace (session scope)."""
    return celery_astra_database.session


@pytest.fixture(scope="session")
def celery_astra_broker_url(celery_astra_app) -> str:
    """The broker URL this process's app and worker use (its own vhost / database per xdist worker).
    A str whose repr masks the password (pytest shows a failing test's arguments)."""
    from .masking import MaskedUrl

    return MaskedUrl(celery_astra_app.conf.broker_url)


@pytest.fixture
def celery_astra_sent_tasks():
    """Every task published in this process during the test, in order (Celery's before_task_publish):
    SentTask items with .id, .name, .args, .kwargs, .queue, .eta, .countdown; .names and .of(name).
    Works with or without a worker, with any app; starts no service."""
    from .sent_tasks import SentTasks

    recorder = SentTasks().start()
    yield recorder
    recorder.stop()


@pytest.fixture
def celery_astra_services(request: pytest.FixtureRequest, celery_astra_broker_kind):
    """Faults on demand (container mode, without xdist): .broker and .cassandra, each with stop(),
    start(), restart(), pause(), unpause(), returning once the change has taken effect. After the test
    every service touched is restored and the workers and Cassandra sessions are checked to have
    recovered; one that cannot be fails the test with one sentence. Skipped with the reason elsewhere."""
    from .faults import FaultError, ServiceHandle, Services
    from .recovery import wait_until_recovered

    context = request.config.stash[RUN_CONTEXT_KEY]
    if context.worker != "master":
        pytest.skip("celery_astra_services faults the run's containers, which every xdist worker shares; "
                    "run the tests that use it without -n (e.g. a separate `pytest -n 0 -k faults` step)")
    if context.cassandra_mode != "container" and context.broker.mode != "container":
        pytest.skip("celery_astra_services needs services the plugin started as containers "
                    "(--celery-astra-broker container, no --celery-astra-cassandra-hosts, no --astra)")
    request.getfixturevalue("celery_astra_database")  # Cassandra is up, the sessions connected
    try:
        context.start_services()  # and the broker
    except CeleryAstraError as error:
        pytest.fail(str(error), pytrace=False)
    timeout = context.settings.startup_timeout

    def recovered() -> None:
        wait_until_recovered(request.config, timeout)

    broker = context.services.get(celery_astra_broker_kind or "") if context.broker.mode == "container" else None
    cassandra = context.services.get("cassandra") if context.cassandra_mode == "container" else None
    services = Services(
        ServiceHandle("broker", broker, timeout) if broker else None,
        ServiceHandle("cassandra", cassandra, timeout, on_back=recovered) if cassandra else None)
    yield services
    touched = services.touched()
    if not touched:
        return
    try:
        for handle in touched:
            handle.restore()
        if celery_astra_broker_kind == "redis" and any(handle.kind == "broker" for handle in touched):
            _restart_workers_on_old_kombu(request.config)
        wait_until_recovered(request.config, timeout, workers=True)
    except FaultError as error:
        pytest.fail(str(error), pytrace=False)


def _restart_workers_on_old_kombu(config: pytest.Config) -> None:
    """kombu before 5.4 stops consuming from a Redis that was restarted, a while after the reconnect
    (celery#8091, fixed by kombu#2007 in 5.4.0): the worker answers the recovery check, then goes deaf.
    There, the embedded workers are started afresh once their Redis is back, so later tests are unaffected."""
    import kombu

    if tuple(int(part) for part in kombu.__version__.split(".")[:2] if part.isdigit()) >= (5, 4):
        return
    from .worker import EmbeddedWorker

    for embedded in config.stash.get(factories.RUNNING_WORKERS_KEY, []):
        if isinstance(embedded, EmbeddedWorker):
            embedded.stop()
            embedded.start()


@pytest.fixture
def celery_astra_cleanup(celery_astra_database, request: pytest.FixtureRequest):
    """The per-test Janitor: after the test, the result table and every table registered with
    ``.register(name)`` are emptied. Only tables the plugin created, or in its own keyspace."""
    from .janitor import Janitor

    janitor = Janitor(celery_astra_database)
    yield janitor
    if request.config.stash[RUN_CONTEXT_KEY].settings.cleanup and not interrupts.interrupted():
        _settle_workers(request)
        _clean(janitor)


# Fixtures through which a test reaches the tables itself (or stops Cassandra): such a test waits for
# the previous test's deferred deletes in its set-up, and its own result rows are found by reading.
_DIRECT_DATABASE_FIXTURES = frozenset({
    "celery_astra_database", "celery_astra_cassandra", "celery_astra_cleanup", "celery_astra_services"})


def _reaches_tables(request: pytest.FixtureRequest | pytest.Item) -> bool:
    """Whether the test (or one of its fixtures) statically asks for a database fixture or the session."""
    item = request if isinstance(request, pytest.Item) else request.node
    databases = item.config.stash.get(factories.DATABASES_KEY, {})
    return any(name in _DIRECT_DATABASE_FIXTURES or name in databases for name in item.fixturenames)


def _rows_all_from_here(request: pytest.FixtureRequest | pytest.Item) -> bool:
    """Every result row this test made was stored by this process's backend (so the janitor knows their
    task ids): no worker process runs, and the test did not reach the tables itself."""
    from .process_worker import ProcessWorker

    config = request.config
    workers = config.stash.get(factories.RUNNING_WORKERS_KEY, [])
    return not any(isinstance(worker, ProcessWorker) for worker in workers) and not _reaches_tables(request)


_FOREIGN_ROWS_KEPT_KEY = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):
    """During the test itself, tell the backend when every result row in its tables was stored by this
    process since they were created: a task id it has not stored has no row (result_rows.known_absent).
    With cleanup on, the janitor deletes other writers' rows after their test; with cleanup off they stay,
    so after one such test the backend reads first again until the end of the run."""
    from .standby import only_requested_workers_consume

    with only_requested_workers_consume(item, list(item.config.stash.get(factories.RUNNING_WORKERS_KEY, []))):
        yield from _call_with_rows_known(item)


def _call_with_rows_known(item: pytest.Item):
    context = item.config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None or not item.config.stash.get(factories.DATABASES_KEY, {}):
        yield
        return
    only_here = _rows_all_from_here(item)
    if not context.settings.cleanup:
        if not only_here:
            item.config.stash[_FOREIGN_ROWS_KEPT_KEY] = True
        only_here = only_here and not item.config.stash.get(_FOREIGN_ROWS_KEPT_KEY, False)
    from .result_rows import ROWS_ONLY_FROM_HERE

    # Set or cleared for this test, then restored: a pytest run inside a test (pytester, in-process)
    # shares this module with the outer one.
    outer = ROWS_ONLY_FROM_HERE.is_set()
    _set_event(ROWS_ONLY_FROM_HERE, only_here)
    try:
        yield
    finally:
        _set_event(ROWS_ONLY_FROM_HERE, outer)


def _set_event(event, value: bool) -> None:
    if value:
        event.set()
    else:
        event.clear()


@pytest.fixture(autouse=True)
def _celery_astra_per_test(request: pytest.FixtureRequest):
    """After each test that used the plugin: purge the workers' queues and wait until they are idle,
    empty the tables of every database fixture the test used (the default one and those made with
    ``factories.database()``), then check the embedded workers."""
    for worker in request.config.stash.get(factories.RUNNING_WORKERS_KEY, []):
        gone = getattr(worker, "gone", lambda: None)()
        if gone and getattr(worker, "fixturename", None) in request.fixturenames:
            pytest.fail(gone, pytrace=False)
    databases = request.config.stash.get(factories.DATABASES_KEY, {})
    if databases and _reaches_tables(request):
        from .result_rows import DELETES

        for database in list(databases.values()):
            DELETES.wait((database.keyspace, database.result_table))  # the last test's deferred deletes
    yield
    if interrupts.interrupted():
        return  # Ctrl-C / SIGTERM: the run is being removed; settling workers or emptying tables only delays it
    names = request.fixturenames
    databases = factories.databases_used_by(request.config, names)
    if not databases and PUBLIC_FIXTURES.isdisjoint(names):
        return
    if request.config.stash[RUN_CONTEXT_KEY].settings.cleanup:
        from .janitor import Janitor

        _settle_workers(request)
        deferred = _rows_all_from_here(request)
        for name, database in databases.items():
            # celery_astra_cleanup, when the test asked for it, already cleaned (with its registered tables).
            skip = name == "celery_astra_database" and "celery_astra_cleanup" in names
            if not skip and database.session is not None:
                _clean(Janitor(database), deferred=deferred)
    for embedded in request.config.stash.get(factories.RUNNING_WORKERS_KEY, []):
        embedded.check_unreported()


def _clean(janitor, deferred: bool = False) -> None:
    """Empty the tables; a failure the plugin can name (a node down: CleanupError) is its sentence alone."""
    try:
        janitor.clean(deferred=deferred)
    except CleanupError as error:
        pytest.fail(str(error), pytrace=False)


_SETTLED_KEY = pytest.StashKey[bool]()


def _settle_workers(request: pytest.FixtureRequest) -> None:
    """Once per test, before any cleanup: no task of this test may run (and write) during the next one."""
    if request.node.stash.get(_SETTLED_KEY, False):
        return
    request.node.stash[_SETTLED_KEY] = True
    workers = request.config.stash.get(factories.RUNNING_WORKERS_KEY, [])
    if not workers:
        return
    from .worker import EmbeddedWorker, settle_all

    timeout = request.config.stash[RUN_CONTEXT_KEY].settings.worker_timeout
    embedded_workers = [worker for worker in workers if isinstance(worker, EmbeddedWorker)]
    busy = settle_all(embedded_workers, timeout)
    busy += [worker for worker in workers if worker not in embedded_workers and not worker.settle(timeout)]
    for embedded in busy:
        warnings.warn(pytest.PytestWarning(
            f"pytest-celery-astra: a task was still running on {embedded.hostname} {timeout:g} s after the "
            f"test; what it writes may land in the next test (raise --celery-astra-worker-timeout)."))
