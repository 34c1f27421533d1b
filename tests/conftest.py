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


@pytest.fixture
def shared_cassandra(session_cassandra, monkeypatch):
    """The pytest runs this test starts use the session's Cassandra node instead of starting a container each.

    For tests about something other than the Cassandra container (its start, faults, interruptions, reaping, reuse):
    the runs are in the plugin's contact-points mode, as on a team's shared cluster — a keyspace per run, with the run
    id in its name, dropped at the run's end. After the test, the node holds no keyspace but its system ones: every
    run cleaned up after itself."""
    from cassandra.cluster import Cluster

    node = session_cassandra
    monkeypatch.setenv("CELERY_ASTRA_CASSANDRA_HOSTS", node.host)
    monkeypatch.setenv("CELERY_ASTRA_CASSANDRA_PORT", str(node.port))
    yield node
    cluster = Cluster([node.host], port=node.port)
    try:
        session = cluster.connect()
        left = sorted(row.keyspace_name for row in session.execute("SELECT keyspace_name FROM system_schema.keyspaces")
                      if not row.keyspace_name.startswith("system"))
        for name in left:   # the next test starts from an empty node, whatever this one asserted
            session.execute(f"DROP KEYSPACE IF EXISTS {name}", timeout=60)
    finally:
        cluster.shutdown()
    assert left == [], f"the runs of this test left keyspaces in the shared Cassandra: {left}"
