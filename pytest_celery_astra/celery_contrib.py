"""``celery.contrib.pytest``'s fixtures and marker, backed by this plugin's broker, Cassandra, worker and cleanup.

Opt in with one line (the fixture names belong to Celery's own plugin, so this is off by default)::

    [pytest]
    addopts = -p pytest_celery_astra.celery_contrib

A suite written for Celery's fixtures then runs unchanged on a real broker and Cassandra. What differs from
Celery's plugin, on purpose:

* ``broker_url`` and ``result_backend`` are the plugin's (the test broker, Cassandra); every other setting of
  ``celery_config``, ``celery_parameters`` and the ``celery`` marker is applied as Celery applies it.
* One app and one worker per session (per xdist worker): ``celery_app`` and ``celery_worker`` are
  ``celery_session_app`` and ``celery_session_worker``, and everything a test changes in ``app.conf`` (directly
  or through the marker) and every task it registers is undone after it. No broker connection, Cassandra
  Cluster or worker start per test.
* The worker's pool is ``threads`` (``celery_worker_pool``): it answers ``inspect()`` and ``control`` while a
  task runs (Celery's ``solo`` cannot). Its node name is Celery's (``gen<pid>@<host>``) unless
  ``celery_worker_parameters`` sets ``hostname``.
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_celery_astra import factories
from pytest_celery_astra.errors import ConfigurationError
from pytest_celery_astra.internals import set_up_app_logging
from pytest_celery_astra.run.context import RUN_CONTEXT_KEY

# celery_worker_parameters this layer honours (the rest of start_worker's arguments would be ignored silently).
WORKER_PARAMETERS = frozenset({
    "hostname", "concurrency", "queues", "perform_ping_check", "ping_task_timeout", "shutdown_timeout", "loglevel",
    "logfile", "without_heartbeat", "pool",
})
CELERYS_PLUGIN = "celery.contrib.pytest"
# The pools a worker in a thread of the test process can run (Celery's own integration suite sets prefork).
THREAD_POOLS = ("solo", "threads")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "celery(**overrides): override celery configuration for a test case")
    if any(getattr(plugin, "__name__", None) == CELERYS_PLUGIN for plugin in config.pluginmanager.get_plugins()):
        raise pytest.UsageError(
            "pytest-celery-astra: celery.contrib.pytest and pytest_celery_astra.celery_contrib are both active and "
            "define the same fixtures; remove one (`-p pytest_celery_astra.celery_contrib` replaces Celery's).")


@pytest.fixture(scope="session")
def use_celery_app_trap() -> bool:
    """Celery's app trap (an error whenever the current or default app is used): off, as in Celery."""
    return False


@pytest.fixture(scope="session")
def celery_enable_logging() -> bool:
    """Whether the test app sets up logging: off, as in Celery."""
    return False


@pytest.fixture(scope="session")
def celery_includes() -> tuple:
    """Modules the worker imports before it starts (task modules, signal handlers): none by default."""
    return ()


@pytest.fixture(scope="session")
def celery_class_tasks() -> list:
    """Task classes registered with the app before the worker starts: none by default."""
    return []


@pytest.fixture(scope="session")
def celery_worker_pool() -> str:
    """The worker's pool: ``threads`` (answers remote control while a task runs); ``solo`` also works."""
    return "threads"


@pytest.fixture(scope="session")
def celery_config() -> dict:
    """Settings of the test app (override it); ``broker_url`` and ``result_backend`` are the plugin's."""
    return {}


@pytest.fixture(scope="session")
def celery_parameters() -> dict:
    """Keyword arguments of the test app's ``Celery(...)`` (override it)."""
    return {}


@pytest.fixture(scope="session")
def celery_worker_parameters() -> dict:
    """Worker parameters (override it): hostname, concurrency, queues, perform_ping_check, ping_task_timeout,
    shutdown_timeout."""
    return {}


@pytest.fixture(scope="session")
def celery_session_app(request: pytest.FixtureRequest, celery_config, celery_parameters, celery_enable_logging,
                       use_celery_app_trap, celery_astra_broker_kind):
    """Celery's test app (session scope), wired to the test broker and the Cassandra result backend."""
    from celery.contrib.testing.app import TestApp, setup_default_app

    def make_app():
        return TestApp(set_as_current=False, enable_logging=celery_enable_logging, config=dict(celery_config),
                       **celery_parameters)

    wiring = factories.wired_app(request, make_app, None, "celery_astra_database", celery_astra_broker_kind,
                                 own_queue=False)
    app = next(wiring)
    with setup_default_app(app, use_trap=use_celery_app_trap):
        if not use_celery_app_trap:
            app.set_default()
            app.set_current()
        request.config.stash[_APP_KEY] = app
        _take_baseline(request.config, app)
        try:
            yield app
        finally:
            del request.config.stash[_APP_KEY]
            next(wiring, None)  # close its backend and broker pools


@pytest.fixture(scope="session")
def _celery_contrib_worker_parameters(celery_worker_pool, celery_worker_parameters) -> dict:
    """``celery_worker_parameters`` with the pool, checked before any service starts: one sentence at once."""
    parameters = dict(celery_worker_parameters)
    unknown = sorted(set(parameters) - WORKER_PARAMETERS)
    if unknown:
        raise ConfigurationError(
            f"pytest-celery-astra: celery_worker_parameters {unknown} are not supported by "
            f"pytest_celery_astra.celery_contrib (supported: {', '.join(sorted(WORKER_PARAMETERS))}).")
    parameters.setdefault("pool", celery_worker_pool)
    if parameters["pool"] not in THREAD_POOLS:
        raise ConfigurationError(
            f"pytest-celery-astra: celery_worker_pool {parameters['pool']!r} cannot run in the worker of "
            f"pytest_celery_astra.celery_contrib (a thread of the test process); set it to 'solo' or 'threads', or "
            f"run the real `celery worker` (prefork) with the celery_astra_worker_process fixture.")
    return parameters


@pytest.fixture(scope="session")
def celery_session_worker(request: pytest.FixtureRequest, _celery_contrib_worker_parameters, celery_session_app,
                          celery_includes, celery_class_tasks):
    """A Celery worker for the test app (session scope) in a thread of this process: Celery's
    ``WorkController``, so ``.reload()``, ``.hostname`` and ``.app`` work as with Celery's fixture."""
    from celery.utils.nodenames import anon_nodename

    from pytest_celery_astra.workers.thread import EmbeddedWorker

    parameters = _celery_contrib_worker_parameters
    pool = parameters["pool"]
    if "loglevel" in parameters or "logfile" in parameters:
        # As Celery's start_worker (setup_app_for_worker): the app's logging at that level, into that file.
        set_up_app_logging(celery_session_app, parameters.get("loglevel", "WARNING"), parameters.get("logfile"))
    for module in celery_includes:
        celery_session_app.loader.import_task_module(module)
    for class_task in celery_class_tasks:
        celery_session_app.register_task(class_task)
    settings = request.config.stash[RUN_CONTEXT_KEY].settings
    ping = parameters.get("perform_ping_check", True)
    if ping:
        import celery.contrib.testing.tasks  # noqa: F401 - registers celery.ping with the app
    embedded = EmbeddedWorker(
        celery_session_app, hostname=parameters.get("hostname") or anon_nodename(),
        pool=pool, concurrency=parameters.get("concurrency", 1),
        loglevel=parameters.get("loglevel", "WARNING"), logfile=parameters.get("logfile"),
        without_heartbeat=parameters.get("without_heartbeat", True),
        queues=tuple(parameters.get("queues") or ()), start_timeout=settings.worker_timeout,
        stop_timeout=parameters.get("shutdown_timeout", settings.worker_timeout), make_default=False,
        in_flight=request.config.stash[RUN_CONTEXT_KEY].in_flight)
    for worker in factories.running_worker(request, embedded, "celery_session_app"):
        if ping:
            from celery.contrib.testing.tasks import ping as ping_task
            from celery.result import allow_join_result

            with allow_join_result():
                assert ping_task.delay().get(timeout=parameters.get("ping_task_timeout", 10.0)) == "pong"
        _take_baseline(request.config, celery_session_app)  # with the worker's includes, class tasks, ping
        yield worker.controller


@pytest.fixture
def celery_app(request: pytest.FixtureRequest, celery_session_app):
    """The test app for one test: the session app with this test's ``celery`` marker applied; whatever the
    test changes in its configuration or registers on it is undone afterwards."""
    mark = request.node.get_closest_marker("celery")
    if mark:
        celery_session_app.conf.update(mark.kwargs)
    return celery_session_app


@pytest.fixture
def celery_worker(celery_session_worker, celery_app):
    """The worker running ``celery_app``'s tasks (the session worker), knowing every task registered so far:
    Celery's plugin starts a worker per test, after the test's fixtures registered theirs."""
    if celery_session_worker.consumer is not None:
        celery_session_worker.consumer.update_strategies()
    return celery_session_worker


@pytest.fixture
def depends_on_current_app(celery_app):
    """Makes the test app the current app."""
    celery_app.set_current()


_APP_KEY = pytest.StashKey[Any]()


@pytest.fixture(autouse=True)
def _celery_contrib_app_per_test(request: pytest.FixtureRequest):
    """Undo what a test changed on the session app: its configuration and the tasks it registered."""
    yield
    app = request.config.stash.get(_APP_KEY, None)
    if app is not None:
        _restore(app, *request.config.stash[_BASELINE_KEY])


_BASELINE_KEY = pytest.StashKey[tuple]()


def _take_baseline(config: pytest.Config, app) -> None:
    """What every test starts from: the app's settings and tasks as its fixtures left them."""
    config.stash[_BASELINE_KEY] = (dict(app.conf.changes), frozenset(app.tasks))


def _restore(app, changes: dict, tasks: frozenset) -> None:
    conf = app.conf
    routes_before = conf.changes.get("task_routes")
    for key in [key for key in conf.changes if key not in changes]:
        del conf.changes[key]
    conf.changes.update(changes)
    for name in [name for name in app.tasks if name not in tasks]:
        app.tasks.pop(name, None)
    if conf.changes.get("task_routes") != routes_before:
        # Celery reads the routes once, into a router it keeps: the next test routes by the restored ones,
        # as a fresh app of Celery's plugin would.
        from pytest_celery_astra.internals import forget_router

        forget_router(app)
