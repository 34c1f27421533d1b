"""The containers the plugin runs: what to start, how to know it is ready, how to stop it.

A :class:`ContainerSpec` says what to run; :func:`start_container` starts it with
testcontainers and waits until the service does real work (an AMQP connection,
a Redis PING, a CQL query), or fails with the container's log attached.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import socket
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from pytest_celery_astra.containers.cql_probe import probe_cql
from pytest_celery_astra.containers.engine import (
    docker_api_version,
    docker_client,
    import_container_sdk,
    import_serially,
    list_containers,
    remove_container_plainly,
)
from pytest_celery_astra.errors import ServiceStartError
from pytest_celery_astra.host import Owner, file_lock

LABEL = "io.github.pytest-celery-astra"
LABEL_CONFIG_HASH = LABEL + ".config-hash"
LABEL_RUN_ID = LABEL + ".run-id"
LABEL_SERVICE = LABEL + ".service"
LABEL_REUSE = LABEL + ".reuse"
LABEL_OWNER_HOST = LABEL + ".owner-host"
LABEL_OWNER_PID = LABEL + ".owner-pid"
LABEL_OWNER_STARTED = LABEL + ".owner-started"
LOG_TAIL_LINES = 40

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    """What to run for one service, which port the tests talk to, and (kept RabbitMQ only) the port of
    its management HTTP API, which makes and deletes a run's vhosts in ~15 ms instead of ~1 s of
    ``rabbitmqctl``."""

    name: str
    image: str
    port: int
    env: tuple[tuple[str, str], ...] = ()
    command: tuple[str, ...] | None = None
    admin_port: int | None = None

    @property
    def config_hash(self) -> str:
        """Identifies a configuration, so a reused container is only reused when it matches."""
        payload = json.dumps(dataclasses.asdict(self), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class RunningService:
    """Where a started container answers. JSON-friendly, shared with xdist workers."""

    name: str
    image: str
    container_id: str
    host: str
    port: int
    seconds_to_ready: float
    reused: bool = False
    admin_port: int | None = None  # host port of the management HTTP API (kept RabbitMQ), else None
    vhosts: tuple[str, ...] = ()  # RabbitMQ vhosts made for the run's xdist workers when it started


def rabbitmq_spec(image: str, admin_api: bool = False) -> ContainerSpec:
    """RabbitMQ; with ``admin_api`` (kept containers: every run makes and deletes its vhosts there) also its
    management plugin, whose HTTP API does that without booting an Erlang VM per ``rabbitmqctl`` call."""
    if not admin_api:
        return ContainerSpec("rabbitmq", image, 5672)
    return ContainerSpec("rabbitmq", image, 5672, env=(("RABBITMQ_ENABLED_PLUGINS", "rabbitmq_management"),),
                         admin_port=15672)


def redis_spec(image: str) -> ContainerSpec:
    return ContainerSpec("redis", image, 6379)


def cassandra_spec(image: str) -> ContainerSpec:
    # The official image and ours both honour these: a small heap, and a single
    # node that skips the gossip settle wait and estimates the memtable row
    # overhead from 100 rows instead of 100,000 (2.1 s of each start on 2 cores),
    # and that does not wait 2 s at shutdown to announce it to peers it has none
    # of (a restart fault: stop 5.0 s -> 3.0 s).
    return ContainerSpec(
        "cassandra", image, 9042,
        env=(
            ("MAX_HEAP_SIZE", "512M"),
            ("HEAP_NEWSIZE", "128M"),
            ("CASSANDRA_NUM_TOKENS", "1"),
            ("JVM_OPTS", "-Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.initial_token=0 "
                         "-Dcassandra.memtable_row_overhead_computation_step=100 -Dcassandra.shutdown_announce_in_ms=0"),
        ),
    )


def start_container(spec: ContainerSpec, timeout: float, run_id: str, keep: bool = False,
                    owner: Owner | None = None,
                    on_created: Callable[[str], None] = lambda container_id: None,
                    cancelled: threading.Event | None = None) -> RunningService:
    """Start ``spec`` and wait until its service answers; remove it again on any failure.

    ``on_created`` gets the container id before the readiness wait, so that an interrupt during
    the wait still finds it; ``owner`` (the pytest process that removes it) goes into its labels,
    so that a later run can remove it if that process was killed. Once ``cancelled`` is set (the run
    is interrupted: RunContext.cancel_starts) the start gives up at once and its container is removed,
    instead of keeping a Ctrl-C'd pytest alive for seconds.
    """
    import_container_sdk()
    from testcontainers.core.container import DockerContainer

    labels = {LABEL: "1", LABEL_SERVICE: spec.name, LABEL_CONFIG_HASH: spec.config_hash, LABEL_RUN_ID: run_id}
    if owner is not None:
        labels.update({LABEL_OWNER_HOST: owner.host, LABEL_OWNER_PID: str(owner.pid),
                       LABEL_OWNER_STARTED: owner.started})
    if keep:
        labels[LABEL_REUSE] = "1"
    # The API version from /_ping: the docker SDK would otherwise ask GET /version (0.4-0.5 s on podman).
    container = DockerContainer(spec.image, labels=labels,
                                docker_client_kw={"version": docker_api_version() or "auto"})
    container.with_exposed_ports(spec.port, *([spec.admin_port] if spec.admin_port else []))
    for name, value in spec.env:
        container.with_env(name, value)
    if spec.command:
        container.with_command(list(spec.command))
    started = time.monotonic()
    try:
        _create_and_start(container, spec.name, cancelled)
    except ServiceStartError:  # interrupted before its turn came: nothing was created
        raise
    except Exception as error:
        _remove_quietly(container)
        raise ServiceStartError(
            f"pytest-celery-astra: the {spec.name} container (image {spec.image}) could not be created: "
            f"{_first_line(error)}; if the image cannot be pulled here, build it with scripts/build-images "
            f"and set CELERY_ASTRA_{spec.name.upper()}_IMAGE."
        ) from None
    try:
        on_created(container.get_wrapped_container().id)
        host = container.get_container_host_ip()
        port = int(container.get_exposed_port(spec.port))
        admin_port = int(container.get_exposed_port(spec.admin_port)) if spec.admin_port else None
        wait_until_ready(spec, host, port, timeout, container_alive=lambda: _is_running(container),
                         cancelled=cancelled)
    except BaseException as error:
        # After an interrupt nobody reads the log: the container goes at once.
        logs = "" if _is_set(cancelled) else container_log_tail(container)
        _remove_quietly(container)
        if isinstance(error, ServiceStartError) and logs:
            raise ServiceStartError(f"{error}\n--- last {LOG_TAIL_LINES} lines of the {spec.name} "
                                    f"container's log ---\n{logs}") from None
        raise
    return RunningService(
        name=spec.name, image=spec.image, container_id=container.get_wrapped_container().id,
        host=host, port=port, seconds_to_ready=round(time.monotonic() - started, 2), admin_port=admin_port,
    )


# podman picks a free host port for each published port when a container starts; two starts at the same
# moment can pick the same one: the second fails ("address already in use") and its cleanup breaks the
# first one's forwarding (seen in CI: Cassandra then never answered). Starts by this plugin, on this
# host, therefore take turns (a few hundred ms each; the readiness waits still run side by side).
def create_lock_path() -> Path:
    """The host-wide lock file starts take turns on, in the temp directory as it is now (not at import)."""
    return Path(tempfile.gettempdir()) / "pytest-celery-astra.create.lock"


def _create_and_start(container, service: str, cancelled: threading.Event | None) -> None:
    with file_lock(create_lock_path()):
        check_not_cancelled(service, cancelled)  # once it is this start's turn: the lock may have taken a while
        with _without_the_reaper():
            container.start()


@contextmanager
def _without_the_reaper() -> Iterator[None]:
    """testcontainers' reaper (Ryuk, on by default with Docker) removes a process's containers once that
    process exits. The run's containers outlive the process that starts them: under xdist it is whichever
    worker needed them first, and xdist ends a worker as soon as it has no tests left, while the others
    still use them; kept containers (reuse) must outlive the run. So the plugin starts them without the
    reaper and removes them itself: at the end of the run, after Ctrl-C and SIGTERM, and a killed run's
    at the next run's start (coordination.py)."""
    from testcontainers.core.config import testcontainers_config

    before = testcontainers_config.ryuk_disabled
    testcontainers_config.ryuk_disabled = True
    try:
        yield
    finally:
        testcontainers_config.ryuk_disabled = before


def _is_set(cancelled: threading.Event | None) -> bool:
    return cancelled is not None and cancelled.is_set()


def check_not_cancelled(service: str, cancelled: threading.Event | None) -> None:
    """Raise once the run is interrupted (``cancelled`` set): a start then goes no further."""
    if _is_set(cancelled):
        raise ServiceStartError(f"pytest-celery-astra: the start of {service} was interrupted.")


def wait_until_ready(
    spec: ContainerSpec, host: str, port: int, timeout: float,
    container_alive: Callable[[], bool] = lambda: True,
    probe: Callable[[str, int], None] | None = None,
    cancelled: threading.Event | None = None,
) -> None:
    """Retry the real thing (or ``probe``) until it works, the container dies, or ``timeout`` passes.

    Without ``probe``, the service's greeting is polled first, every 50 ms: a failed driver or kombu
    connection per 250 ms would take CPU from the booting service (two cores), and the greeting also
    tells sooner that it is up; then the real thing is retried, which normally works at once."""
    deadline = time.monotonic() + timeout
    import_probe_modules = _probe_module_importer(spec.name)
    if probe is None and spec.name in GREETINGS:
        _poll_greeting(spec, host, port, deadline, container_alive, cancelled, import_probe_modules)
    if probe is None and not _is_set(cancelled):
        import_probe_modules()  # serially, if the greeting answered at once
    probe = probe or READINESS_PROBES[spec.name]
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        check_not_cancelled(spec.name, cancelled)
        try:
            probe(host, port)
            return
        except Exception as error:  # the service is not up yet: every failure means "retry"
            last_error = error
        if not container_alive():
            raise ServiceStartError(
                f"pytest-celery-astra: the {spec.name} container (image {spec.image}) exited while starting.")
        time.sleep(0.25)
    raise ServiceStartError(
        f"pytest-celery-astra: {spec.name} at {host}:{port} did not answer within {timeout:g} s "
        f"(last error: {_first_line(last_error)}); raise --celery-astra-startup-timeout if the machine is slow.")


def _poll_greeting(spec: ContainerSpec, host: str, port: int, deadline: float,
                   container_alive: Callable[[], bool], cancelled: threading.Event | None,
                   import_probe_modules: Callable[[], None] | None = None) -> None:
    """Until the greeting answers, the container dies (then every 0.5 s), or the deadline; the caller's
    real probe reports what went wrong."""
    greet = GREETINGS[spec.name]
    if import_probe_modules is None:
        import_probe_modules = _probe_module_importer(spec.name)
    checked_alive = time.monotonic()
    while time.monotonic() < deadline and not _is_set(cancelled):
        try:
            greet(host, port)
            return
        except Exception:  # not up yet: meanwhile, import what the real probe needs (once)
            import_probe_modules()
        if time.monotonic() - checked_alive > 0.5:
            if not container_alive():
                return
            checked_alive = time.monotonic()
        time.sleep(0.05)


# What each real probe (for Cassandra: the database fixture right after it) imports: imported while
# the service boots, off the path to the first test (the driver and Celery's backend: ~0.2 s).
PROBE_MODULES: dict[str, tuple[str, ...]] = {
    "rabbitmq": ("kombu", "kombu.transport.pyamqp"),
    "redis": ("kombu", "kombu.transport.redis"),
    "cassandra": ("cassandra.cluster", "celery.backends.cassandra"),
}


def _probe_module_importer(service: str) -> Callable[[], None]:
    """Imports ``service``'s probe modules on its first call only: one start's polls try once (a later
    start tries again, which costs nothing once they are in ``sys.modules``)."""
    tried = False

    def import_once() -> None:
        nonlocal tried
        if not tried:
            tried = True
            _import_probe_modules(service)

    return import_once


def _import_probe_modules(service: str) -> None:
    try:
        import_serially(*PROBE_MODULES.get(service, ()))
    except Exception:  # noqa: BLE001 - e.g. redis not installed: the probe itself says so
        pass


def _probe_amqp(host: str, port: int) -> None:
    from kombu import Connection

    with Connection(f"amqp://guest:guest@{host}:{port}//", connect_timeout=2) as connection:
        connection.connect()


def _probe_redis(host: str, port: int) -> None:
    from kombu import Connection

    with Connection(f"redis://{host}:{port}/0", connect_timeout=2) as connection:
        connection.connect()
        connection.default_channel.client.ping()


def _greeting(host: str, port: int, hello: bytes, expect) -> None:
    """Send ``hello``; raise unless the first bytes of the answer satisfy ``expect``."""
    with socket.create_connection((host, port), timeout=2) as connection:
        connection.sendall(hello)
        answer = b""
        while len(answer) < 9 and not expect(answer):
            chunk = connection.recv(64)
            if not chunk:
                break
            answer += chunk
    if not expect(answer):
        raise ConnectionError(f"unexpected greeting {answer[:9]!r}")


def _greet_amqp(host: str, port: int) -> None:
    # AMQP 0-9-1 protocol header; the broker answers with a method frame (type 1): Connection.Start.
    _greeting(host, port, b"AMQP\x00\x00\x09\x01", lambda answer: answer[:1] == b"\x01")


def _greet_redis(host: str, port: int) -> None:
    _greeting(host, port, b"PING\r\n", lambda answer: answer.startswith(b"+PONG"))


def _greet_cql(host: str, port: int) -> None:
    # A native-protocol v4 OPTIONS frame (stream 0, no body); Cassandra answers SUPPORTED (opcode 6)
    # once its native transport is up, which it starts last.
    _greeting(host, port, b"\x04\x00\x00\x00\x05\x00\x00\x00\x00",
              lambda answer: len(answer) >= 9 and answer[0] == 0x84 and answer[4] == 0x06)


# What each service says before it does real work: cheap enough to poll often (reuse.py checks a kept
# container with it alone; a new one is polled with it first, then probed by real work once).
GREETINGS: dict[str, Callable[[str, int], None]] = {
    "rabbitmq": _greet_amqp, "redis": _greet_redis, "cassandra": _greet_cql,
}


READINESS_PROBES: dict[str, Callable[[str, int], None]] = {
    "rabbitmq": _probe_amqp,
    "redis": _probe_redis,
    "cassandra": probe_cql,  # STARTUP and a query on a plain socket (cql_probe.py), not a driver Cluster
}


def remove_container(container_id: str) -> None:
    """Remove a container by id (SIGKILL, no grace period: test data is disposable); one plain API
    request, the docker SDK only where that cannot be made."""
    if remove_container_plainly(container_id):
        return
    client = docker_client()
    import docker

    try:
        client.containers.get(container_id).remove(force=True, v=True)
    except docker.errors.NotFound:
        pass
    finally:
        client.close()


def owned_containers() -> list[tuple[str, str, Owner]]:
    """(id, service, owner) of the plugin's containers that name an owner and are not kept for reuse."""
    found = []
    for container in list_containers([LABEL]):
        labels = container.labels
        owner = Owner.parse(labels.get(LABEL_OWNER_HOST), labels.get(LABEL_OWNER_PID),
                            labels.get(LABEL_OWNER_STARTED))
        if owner is not None and labels.get(LABEL_REUSE) != "1":
            found.append((container.id, labels.get(LABEL_SERVICE, "?"), owner))
    return found


def exec_in_container(container_id: str, command: list[str]) -> str:
    """Run a command in a container; raise with its output when it fails."""
    client = docker_client()
    try:
        result = client.containers.get(container_id).exec_run(command)
    finally:
        client.close()
    output = result.output.decode(errors="replace")
    if result.exit_code != 0:
        raise ServiceStartError(f"pytest-celery-astra: {' '.join(command)} failed in the container: {output.strip()}")
    return output


def container_log_tail(container) -> str:
    try:
        stdout, stderr = container.get_logs()
    except Exception as error:
        return f"(logs unavailable: {_first_line(error)})"
    lines = (stdout + stderr).decode(errors="replace").splitlines()
    return "\n".join(lines[-LOG_TAIL_LINES:])


def _is_running(container) -> bool:
    try:
        container.get_wrapped_container().reload()
        return container.get_wrapped_container().status in ("created", "running")
    except Exception:
        return False


def _remove_quietly(container) -> None:
    try:
        container.stop()
    except Exception as error:
        logger.warning("pytest-celery-astra: could not remove a container: %s", _first_line(error))


def _first_line(error: object) -> str:
    text = str(error).strip() or error.__class__.__name__
    return text.splitlines()[0][:300]
