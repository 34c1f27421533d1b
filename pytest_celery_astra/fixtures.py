"""The plugin's public fixtures (``celery_astra_*``): what a test asks for. Hooks are in plugin.py; the
machinery behind each fixture is in its domain package."""

from __future__ import annotations

import pytest

from pytest_celery_astra import factories
from pytest_celery_astra.errors import CeleryAstraError
from pytest_celery_astra.run import per_test
from pytest_celery_astra.run.context import RUN_CONTEXT_KEY

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
    from pytest_celery_astra.masking import MaskedUrl

    return MaskedUrl(celery_astra_app.conf.broker_url)


@pytest.fixture
def celery_astra_sent_tasks():
    """Every task published in this process during the test, in order (Celery's before_task_publish):
    SentTask items with .id, .name, .args, .kwargs, .queue, .eta, .countdown; .names and .of(name).
    Works with or without a worker, with any app; starts no service."""
    from pytest_celery_astra.workers.sent_tasks import SentTasks

    recorder = SentTasks().start()
    yield recorder
    recorder.stop()


@pytest.fixture
def celery_astra_services(request: pytest.FixtureRequest, celery_astra_broker_kind):
    """Faults on demand on the run's own containers (under xdist: the xdist worker's own, started for it
    because one of its tests names this fixture; not with reuse): .broker and .cassandra, each with stop(),
    start(), restart(), pause(), unpause(), returning once the change has taken effect. After the test
    every service touched is restored and the workers and Cassandra sessions are checked to have
    recovered; one that cannot be fails the test with one sentence. Skipped with the reason elsewhere."""
    from pytest_celery_astra.containers.faults import FaultError, ServiceHandle, Services
    from pytest_celery_astra.run.recovery import restart_workers_on_old_kombu, wait_until_recovered

    context = request.config.stash[RUN_CONTEXT_KEY]
    if context.worker != "master" and context.settings.xdist_faults == "skip":
        pytest.skip("celery_astra_services faults the run's containers, which every xdist worker shares "
                    "(xdist_faults = skip); run the tests that use it without -n, or with xdist_faults = own")
    if context.settings.reuse_containers:
        pytest.skip("celery_astra_services faults containers kept for reuse (--celery-astra-reuse-containers), "
                    "which other runs on this host may be using; run the tests that use it without reuse")
    if context.worker != "master" and not context.own_containers:
        pytest.skip("celery_astra_services under xdist needs its test to name it (an argument or usefixtures), "
                    "so that the xdist worker starts containers of its own before its first test; "
                    "requested by getfixturevalue() it would fault the containers every xdist worker shares")
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
        wait_until_recovered(request.config, timeout, reconnected=True)

    def backends_connected() -> None:
        """A fault in a run's first test must not meet a backend without its connection: one still being made in
        the background, or one whose background connect failed (a node just started, on a loaded machine);
        a production worker that has stored results has its connection."""
        from pytest_celery_astra.celery_app import wait_for_backend_connection
        from pytest_celery_astra.run import registry

        for app in request.config.stash.get(registry.WIRED_APPS_KEY, []):
            wait_for_backend_connection(app, timeout)

    broker = context.services.get(celery_astra_broker_kind or "") if context.broker.mode == "container" else None
    cassandra = context.services.get("cassandra") if context.cassandra_mode == "container" else None
    services = Services(
        ServiceHandle("broker", broker, timeout) if broker else None,
        ServiceHandle("cassandra", cassandra, timeout, on_back=recovered, before_fault=backends_connected)
        if cassandra else None)
    yield services
    touched = services.touched()
    if not touched:
        return
    try:
        for handle in touched:
            handle.restore()
        if celery_astra_broker_kind == "redis" and any(handle.kind == "broker" for handle in touched):
            restart_workers_on_old_kombu(request.config)
        wait_until_recovered(request.config, timeout, workers=True)
    except FaultError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture
def celery_astra_cleanup(celery_astra_database, request: pytest.FixtureRequest):
    """The per-test Janitor: after the test, the result table and every table registered with
    ``.register(name)`` are emptied. Only tables the plugin created, or in its own keyspace."""
    from pytest_celery_astra.cassandra.janitor import Janitor

    janitor = Janitor(celery_astra_database)
    yield janitor
    context = request.config.stash[RUN_CONTEXT_KEY]
    if context.settings.cleanup and not context.interrupts.interrupted():
        per_test.settle_workers(request)
        per_test.clean(janitor)


@pytest.fixture(autouse=True)
def _celery_astra_per_test(request: pytest.FixtureRequest):
    """After each test that used the plugin: purge the workers' queues and wait until they are idle,
    empty the tables of every database fixture the test used (the default one and those made with
    ``factories.database()``), then check the embedded workers."""
    per_test.before_test(request)
    yield
    per_test.after_test(request)
