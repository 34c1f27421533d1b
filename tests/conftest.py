"""Shared helpers for the project's own tests."""

import os
import re
import shutil

import pytest

REAL_SERVICE_ENV = ("DOCKER_HOST", "TESTCONTAINERS_RYUK_DISABLED", "TESTCONTAINERS_CONNECTION_MODE")
# What pytest-xdist puts in an xdist worker's environment. When this suite itself runs under xdist
# (scripts/test-all), the pytest runs it starts must not inherit them: they would believe they are xdist workers
# (the plugin's worker id falls back to PYTEST_XDIST_WORKER) without being one.
XDIST_ENV = ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID")


@pytest.fixture(scope="session", autouse=True)
def _inner_runs_are_not_xdist_workers():
    saved = {name: os.environ.pop(name) for name in XDIST_ENV if name in os.environ}
    yield
    os.environ.update(saved)


@pytest.fixture(scope="session")
def container_engine():
    """Fail (never skip) when no container engine answers: CI must run the integration tests."""
    from pytest_celery_astra.containers.engine import probe_engine

    probe = probe_engine()
    if not probe.answers:
        pytest.fail(f"no container engine answers at {probe.docker_host} ({probe.detail}); "
                    f"run scripts/container-engine (see README)", pytrace=False)
    return probe


def image(service: str) -> str:
    """The image the plugin would use for ``service`` (env override, else the official one)."""
    from pytest_celery_astra.settings import SETTINGS_BY_NAME

    setting = SETTINGS_BY_NAME[f"{service}_image"]
    return os.environ.get(setting.env_var, setting.default)


def without_short_summary(output: str) -> str:
    """``output`` without pytest's "short test summary info" section.

    That section repeats each error's message, in full when pytest runs on CI (env ``CI`` or
    ``BUILD_NUMBER`` set) and cut to the terminal width elsewhere; counting a sentence "once" means once
    in the report proper, whatever the machine.
    """
    kept, skipping = [], False
    for line in output.splitlines():
        if re.match(r"^=+ short test summary info =+$", line):
            skipping = True
        elif skipping and re.match(r"^(=|!)+ .* (=|!)+$", line):
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def podman_or_docker() -> str:
    return shutil.which("podman") or shutil.which("docker") or "docker"


@pytest.fixture(scope="session")
def session_cassandra(container_engine):
    """One Cassandra node (no login, like the plugin's own container) for this pytest process — one per xdist
    worker of the suite — started on first use, removed at the end."""
    from tests.astra_standin import cassandra_container

    with cassandra_container(login=False) as node:
        yield node


@pytest.fixture(scope="session")
def session_cassandra_cql(session_cassandra):
    """One driver Session on the session's Cassandra node, for shared_cassandra's check after each test (a Cluster
    per test would cost its connect, ~0.3 s of CPU, every time)."""
    from cassandra.cluster import Cluster

    # No schema or token metadata: the inner runs' every CREATE and DROP would make it read the schema again.
    cluster = Cluster([session_cassandra.host], port=session_cassandra.port, schema_metadata_enabled=False,
                      token_metadata_enabled=False)
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


@pytest.fixture
def shared_cassandra(session_cassandra, session_cassandra_cql, monkeypatch):
    """The pytest runs this test starts use the session's Cassandra node instead of starting a container each.

    For tests about something other than the Cassandra container (its start, faults, interruptions, reaping, reuse):
    the runs are in the plugin's contact-points mode, as on a team's shared cluster — a keyspace per run, with the run
    id in its name, dropped at the run's end. After the test, the node holds no keyspace but its system ones: every
    run cleaned up after itself."""
    node = session_cassandra
    monkeypatch.setenv("CELERY_ASTRA_CASSANDRA_HOSTS", node.host)
    monkeypatch.setenv("CELERY_ASTRA_CASSANDRA_PORT", str(node.port))
    yield node
    session = session_cassandra_cql
    left = sorted(row.keyspace_name for row in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")
                  if not row.keyspace_name.startswith("system"))
    for name in left:   # the next test starts from an empty node, whatever this one asserted
        session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)
    assert left == [], f"the runs of this test left keyspaces in the shared Cassandra: {left}"


SUITE_TAG = "suite-brokers"
SUITE_BROKERS_USED = "suite-brokers.used"   # in the session's basetemp: it used them, so it removes them


def _suite_brokers():
    """The images (tags of the configured ones) and the plugin's container specs of the suite's kept brokers."""
    from pytest_celery_astra.containers.services import rabbitmq_spec, redis_spec

    images = {}
    for service in ("rabbitmq", "redis"):
        source = image(service)
        name = source.rpartition(":")[0] if ":" in source.rsplit("/", 1)[-1] else source
        images[service] = f"{name}:{SUITE_TAG}"
    return images, (rabbitmq_spec(images["rabbitmq"], admin_api=True), redis_spec(images["redis"]))


@pytest.fixture(scope="session")
def session_brokers(container_engine, tmp_path_factory, worker_id):
    """One RabbitMQ (with its management API) and one Redis for the whole suite, every xdist worker of it included:
    kept containers of the plugin's reuse mode, run from a tag of the configured image (``...:suite-brokers``) so
    that only the suite's own runs pick them up. The first xdist worker to need them starts them (under a file
    lock); the suite's last process removes them (``pytest_sessionfinish`` below). Returns the images."""
    import fcntl

    from pytest_celery_astra.containers.engine import docker_client
    from pytest_celery_astra.containers.reuse import find_reusable
    from pytest_celery_astra.containers.services import start_container

    images, specs = _suite_brokers()
    shared = tmp_path_factory.getbasetemp()
    shared = shared.parent if worker_id != "master" else shared   # xdist: the controller's, above popen-gwN
    with open(shared / "suite-brokers.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        client = docker_client()
        try:
            for service, tagged in images.items():
                client.images.get(image(service)).tag(*tagged.rsplit(":", 1))
        finally:
            client.close()
        for spec in specs:
            if find_reusable(spec, timeout=60) is None:
                start_container(spec, timeout=120, run_id="suite", keep=True)
        (shared / SUITE_BROKERS_USED).touch()   # this session removes them at its end (pytest_sessionfinish)
    return images


def pytest_sessionfinish(session):
    """The suite's last process (xdist's controller, or the only one) removes the suite's kept brokers, if this
    session used them: another pytest session of the project that ends meanwhile (scripts/test-cluster's, which runs
    beside the lowest session in CI) must not take them from under it."""
    if hasattr(session.config, "workerinput"):
        return
    if not (session.config._tmp_path_factory.getbasetemp() / SUITE_BROKERS_USED).exists():
        return
    from pytest_celery_astra.containers.engine import docker_client, list_containers, probe_engine
    from pytest_celery_astra.containers.services import LABEL_CONFIG_HASH, LABEL_REUSE, remove_container

    if not os.environ.get("DOCKER_HOST") or not probe_engine().answers:
        return
    images, specs = _suite_brokers()
    found = [left for left in list_containers([f"{LABEL_REUSE}=1"])
             if left.labels.get(LABEL_CONFIG_HASH) in {spec.config_hash for spec in specs}]
    for left in found:
        remove_container(left.id)
    if found:
        import docker

        client = docker_client()
        try:
            for tagged in images.values():
                client.images.remove(tagged)   # the tag only: the image keeps its own name
        except docker.errors.APIError:
            pass
        finally:
            client.close()


@pytest.fixture
def shared_brokers(session_brokers, monkeypatch):
    """The pytest runs this test starts use the session's RabbitMQ and Redis instead of starting their own: in the
    plugin's reuse mode, as two CI jobs on one machine would — each run in a virtual host (RabbitMQ) or under a key
    prefix (Redis) that carries its run id, deleted at its end (``session_brokers``).

    For tests about something other than the broker containers (their start, faults, interruptions, reaping): a
    broker container start is ~5 s of CPU, the most expensive part of a short run."""
    monkeypatch.setenv("CELERY_ASTRA_REUSE_CONTAINERS", "1")
    monkeypatch.setenv("CELERY_ASTRA_RABBITMQ_IMAGE", session_brokers["rabbitmq"])
    monkeypatch.setenv("CELERY_ASTRA_REDIS_IMAGE", session_brokers["redis"])
    return session_brokers
