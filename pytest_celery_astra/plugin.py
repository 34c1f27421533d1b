"""pytest-celery-astra: hooks, options and the default fixtures. The machinery lives elsewhere."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest

from . import factories
from .broker import choose_broker
from .coordination import RunState
from .engine import probe_engine
from .masking import mask_url
from .naming import is_xdist_worker, worker_id
from .runcontext import RUN_CONTEXT_KEY, RunContext
from .settings import register_options, settings_from_config

PUBLIC_FIXTURES = frozenset({
    "celery_astra_database", "celery_astra_cassandra", "celery_astra_app", "celery_astra_worker",
    "celery_astra_cleanup", "celery_astra_broker_url",
})


def pytest_addoption(parser: pytest.Parser) -> None:
    register_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "astra_live: run only against a live Astra DB (--astra); skipped otherwise")
    settings = settings_from_config(config)
    if settings.astra:
        from .astra import check_astra_settings

        check_astra_settings(settings)
    if settings.app is not None:
        _check_app_module(settings.app)
    engine = probe_engine() if settings.broker == "auto" and settings.broker_url is None else None
    try:
        broker = choose_broker(settings, engine)
    except ValueError as error:
        raise pytest.UsageError(f"pytest-celery-astra: {error}.") from None
    if is_xdist_worker(config):
        state, owns_state = RunState.from_workerinput(config.workerinput), False
    else:
        state, owns_state = RunState.create(), True
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_XdistController(state), "celery_astra_xdist")
    config.stash[RUN_CONTEXT_KEY] = RunContext(settings, worker_id(config), state, owns_state, broker, engine)


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
    context = config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None or not context.owns_state:
        return
    # After the last xdist worker finished (or pytest itself, without xdist):
    # remove every container of the run, also after failures and Ctrl-C.
    for problem in context.state.stop_all():
        sys.stderr.write(f"pytest-celery-astra: {problem}\n")


def pytest_report_header(config: pytest.Config) -> list[str]:
    context = config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None:
        return []
    settings = context.settings
    broker = context.broker
    if broker.mode == "container":
        image = settings.rabbitmq_image if broker.kind == "rabbitmq" else settings.redis_image
        source = settings.sources["rabbitmq_image" if broker.kind == "rabbitmq" else "redis_image"]
        broker_line = f"container {broker.kind} (image {image}, {source})"
    elif broker.mode == "url":
        broker_line = f"url {mask_url(str(settings.broker_url))}"
    else:
        broker_line = "memory (kombu in-process transport)"
    if context.cassandra_mode == "astra":
        cassandra_line = (f"Astra DB bundle {settings.astra_bundle} ({settings.sources['astra_bundle']}), "
                          f"keyspace {settings.astra_keyspace}, table {context.result_table()}")
    elif context.cassandra_mode == "hosts":
        cassandra_line = (f"hosts {settings.describe('cassandra_hosts')} port {settings.cassandra_port}, "
                          f"keyspace {context.keyspace()}")
    else:
        cassandra_line = (f"container (image {settings.describe('cassandra_image')}), "
                          f"keyspace {context.keyspace()} ({settings.sources['keyspace']})")
    return [
        f"celery-astra broker: {broker_line} [{broker.reason}]",
        f"celery-astra cassandra: {cassandra_line}",
        f"celery-astra worker: pool {settings.describe('worker_pool')}, app {settings.describe('app')}, "
        f"cleanup {settings.describe('cleanup')}, reuse containers {settings.describe('reuse_containers')}, "
        f"run id {context.run_id}",
    ]


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
    """The broker URL this process's app and worker use (its own vhost / database per xdist worker)."""
    return celery_astra_app.conf.broker_url


@pytest.fixture
def celery_astra_cleanup(celery_astra_database, request: pytest.FixtureRequest):
    """The per-test Janitor: after the test, the result table and every table registered with
    ``.register(name)`` are emptied. Only tables the plugin created, or in its own keyspace."""
    from .janitor import Janitor

    janitor = Janitor(celery_astra_database)
    yield janitor
    if request.config.stash[RUN_CONTEXT_KEY].settings.cleanup:
        janitor.clean()


@pytest.fixture(autouse=True)
def _celery_astra_per_test(request: pytest.FixtureRequest):
    """Cleanup and worker health for tests that use the plugin's fixtures; nothing for others."""
    if PUBLIC_FIXTURES.isdisjoint(request.fixturenames):
        yield
        return
    if request.config.stash[RUN_CONTEXT_KEY].settings.cleanup:
        request.getfixturevalue("celery_astra_cleanup")
    yield
    for embedded in request.config.stash.get(factories.RUNNING_WORKERS_KEY, []):
        embedded.check_unreported()
