"""A Cassandra node with authentication on, as a throw-away container.

Astra runs Cassandra with password authentication and role-based
authorization; the stand-in's node must too. Two kinds of image are handled:

* the project's own image (``localhost/pytest-celery-astra/cassandra:*``),
  whose entrypoint reads ``CASSANDRA_AUTHENTICATOR`` / ``CASSANDRA_AUTHORIZER``;
* the official ``cassandra`` image, which ignores those variables: its
  command is replaced by a shell that edits ``/etc/cassandra/cassandra.yaml``
  and then runs the official entrypoint.

The node counts as ready only once a real CQL query as the superuser succeeds
(the superuser role is created a moment after the native port opens). The
waiting itself uses quiet protocol probes (``cql_probe``), not the driver.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional

from cassandra import AuthenticationFailed, OperationTimedOut
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import EXEC_PROFILE_DEFAULT, Cluster, ExecutionProfile, NoHostAvailable, Session
from cassandra.policies import RoundRobinPolicy

from .cql_probe import native_transport_answers, password_login_works

if TYPE_CHECKING:
    from testcontainers.core.container import DockerContainer

log = logging.getLogger(__name__)

IMAGE_ENV = "CELERY_ASTRA_CASSANDRA_IMAGE"
DEFAULT_IMAGE = "cassandra:5.0"
PROJECT_IMAGE_PREFIX = "localhost/pytest-celery-astra/cassandra"
NATIVE_PORT = 9042
# Cassandra's built-in superuser; a well-known default, not a secret.
SUPERUSER_NAME = "cassandra"
SUPERUSER_PASSWORD = "cassandra"

# Startup flags for a single throw-away node, for images that read JVM_EXTRA_OPTS
# (the official one): no gossip settling, no ring delay, superuser at once.
_FAST_SINGLE_NODE_JVM_OPTS = (
    "-Dcassandra.skip_wait_for_gossip_to_settle=0 "
    "-Dcassandra.ring_delay_ms=0 "
    "-Dcassandra.superuser_setup_delay_ms=0 "
    "-Dcassandra.memtable_row_overhead_computation_step=100"
)

# For the official image: switch auth on in its cassandra.yaml, whichever form
# the setting takes there (`authenticator: X` or `authenticator:\n  class_name: X`),
# by renaming the class on non-comment lines only; then start as usual.
_OFFICIAL_IMAGE_AUTH_SCRIPT = (
    "set -e; "
    "conf=/etc/cassandra/cassandra.yaml; "
    "sed -i"
    " -e '/^[[:space:]]*#/!s/AllowAllAuthenticator/PasswordAuthenticator/'"
    " -e '/^[[:space:]]*#/!s/AllowAllAuthorizer/CassandraAuthorizer/'"
    ' "$conf"; '
    'grep -q "PasswordAuthenticator" "$conf"; '
    'grep -q "CassandraAuthorizer" "$conf"; '
    'if [ -n "${CASSANDRA_EXTRA_YAML:-}" ]; then printf "%s\\n" "$CASSANDRA_EXTRA_YAML" >> "$conf"; fi; '
    "exec docker-entrypoint.sh cassandra -f"
)


@dataclass(frozen=True)
class CassandraNode:
    """Where a running node's native protocol port is reachable from the host."""

    host: str
    port: int
    image: str
    container_id: str = ""


@dataclass(frozen=True)
class NodeIdentity:
    """What Astra's metadata service reports about a node, read from ``system.local``."""

    host_id: str
    data_center: str
    release_version: str


def cassandra_image() -> str:
    """The image to run: ``$CELERY_ASTRA_CASSANDRA_IMAGE`` or the official ``cassandra:5.0``."""
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


def _is_project_image(image: str) -> bool:
    return image.startswith(PROJECT_IMAGE_PREFIX)


# Astra's rules that Cassandra 5 can enforce itself, as guardrails (they bind roles that are not
# superusers, like Astra's tokens): a limit on tables per database (Astra Serverless: 50), and write
# consistency levels Astra refuses.
ASTRA_TABLE_LIMIT = 50
ASTRA_REFUSED_WRITE_CONSISTENCY = ("ONE", "ANY", "LOCAL_ONE")


def astra_guardrails(table_limit: int = ASTRA_TABLE_LIMIT) -> str:
    """cassandra.yaml lines with Astra's limits as Cassandra 5 guardrails."""
    return (f"tables_fail_threshold: {table_limit}\n"
            f"write_consistency_levels_disallowed: [{', '.join(ASTRA_REFUSED_WRITE_CONSISTENCY)}]")


def _auth_container(image: str, extra_yaml: str = "", login: bool = True) -> DockerContainer:
    # Imported here: only this helper needs testcontainers, the stand-in does not.
    from testcontainers.core.container import DockerContainer

    container = DockerContainer(image).with_exposed_ports(NATIVE_PORT)
    container.with_env("MAX_HEAP_SIZE", "512M").with_env("HEAP_NEWSIZE", "128M")
    if extra_yaml:
        container.with_env("CASSANDRA_EXTRA_YAML", extra_yaml)
    if not login:
        if not _is_project_image(image):
            container.with_env("JVM_EXTRA_OPTS", _FAST_SINGLE_NODE_JVM_OPTS)
    elif _is_project_image(image):
        container.with_env("CASSANDRA_AUTHENTICATOR", "PasswordAuthenticator")
        container.with_env("CASSANDRA_AUTHORIZER", "CassandraAuthorizer")
    else:
        container.with_env("JVM_EXTRA_OPTS", _FAST_SINGLE_NODE_JVM_OPTS)
        # A list, not a string: docker-py would shlex-split a string command.
        container.with_kwargs(entrypoint=["bash", "-c"])
        container.with_command([_OFFICIAL_IMAGE_AUTH_SCRIPT])
    return container


def _normalise_host(host: str) -> str:
    # "localhost" may resolve to ::1 first while published ports listen on IPv4.
    return "127.0.0.1" if host in ("localhost", "") else host


def wait_for_login(host: str, port: int, username: str, password: str, timeout: float) -> None:
    """Wait until ``username``/``password`` can log in, probing quietly (no driver logs)."""
    deadline = time.monotonic() + timeout
    while not password_login_works(host, port, username, password):
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{username!r} cannot log in to Cassandra at {host}:{port} after {timeout:.0f} s")
        time.sleep(0.25)


def connect_superuser(
    host: str,
    port: int,
    *,
    username: str = SUPERUSER_NAME,
    password: str = SUPERUSER_PASSWORD,
    timeout: float = 120.0,
) -> tuple[Cluster, Session]:
    """Connect as the superuser, retrying until a real query succeeds or ``timeout`` passes.

    Retries cover the port not being open yet and, with PasswordAuthenticator,
    the superuser role not existing yet (AuthenticationFailed for a few seconds).
    The caller owns the returned cluster and must ``shutdown()`` it.
    """
    deadline = time.monotonic() + timeout
    wait_for_login(host, port, username, password, timeout)
    while True:
        cluster = Cluster(
            [host],
            port=port,
            auth_provider=PlainTextAuthProvider(username, password),
            # Explicit, or the driver warns about contact points without a policy.
            execution_profiles={EXEC_PROFILE_DEFAULT: ExecutionProfile(load_balancing_policy=RoundRobinPolicy())},
            connect_timeout=5,
            control_connection_timeout=5,
        )
        try:
            session = cluster.connect()
            session.execute("SELECT release_version FROM system.local")
            return cluster, session
        except (NoHostAvailable, OperationTimedOut, AuthenticationFailed) as error:
            cluster.shutdown()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"Cassandra at {host}:{port} not ready after {timeout:.0f} s: {error}") from error
            log.debug("Cassandra at %s:%s not ready yet: %s", host, port, error)
            time.sleep(0.5)
        except BaseException:
            cluster.shutdown()
            raise


def read_node_identity(session: Session) -> NodeIdentity:
    """The node's real host id and data centre, as Astra's metadata would report them."""
    row = session.execute("SELECT host_id, data_center, release_version FROM system.local").one()
    return NodeIdentity(host_id=str(row.host_id), data_center=row.data_center, release_version=row.release_version)


def _container_tail(container: DockerContainer, lines: int = 40) -> str:
    try:
        stdout, stderr = container.get_logs()
        text = (stdout or b"").decode(errors="replace") + (stderr or b"").decode(errors="replace")
        return "\n".join(text.splitlines()[-lines:])
    except Exception as error:  # logs are a diagnostic nicety, never the failure itself
        return f"(no logs: {error})"


def _check_running(container: DockerContainer) -> None:
    wrapped = container.get_wrapped_container()  # the docker SDK's object: testcontainers < 4.13 has no reload()
    wrapped.reload()  # status is a cached field of the last inspect
    if wrapped.status not in ("created", "running"):
        raise RuntimeError(f"Cassandra container exited ({wrapped.status}):\n{_container_tail(container)}")


def _wait_until_ready(container: DockerContainer, host: str, port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not native_transport_answers(host, port):
        _check_running(container)
        if time.monotonic() >= deadline:
            raise TimeoutError(f"Cassandra not listening after {timeout:.0f} s:\n{_container_tail(container)}")
        time.sleep(0.25)
    # Listening is not ready: the superuser role appears a moment later.
    while True:
        remaining = deadline - time.monotonic()
        try:
            # Short attempts, so a container that died is noticed between them.
            cluster, _session = connect_superuser(host, port, timeout=min(5.0, max(remaining, 0.0)))
            cluster.shutdown()
            return
        except TimeoutError as error:
            _check_running(container)
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"Cassandra not ready after {timeout:.0f} s:\n{_container_tail(container)}"
                ) from error


@contextlib.contextmanager
def cassandra_container(image: Optional[str] = None, *, startup_timeout: float = 180.0,
                        extra_yaml: str = "", login: bool = True) -> Iterator[CassandraNode]:
    """Run a Cassandra node with PasswordAuthenticator + CassandraAuthorizer; remove it on exit.

    ``login=False``: no authenticator, as a fresh node (and the plugin's own container) has.

    ``extra_yaml`` is appended to its cassandra.yaml (``astra_guardrails()`` for Astra's limits).

    Needs a Docker API for testcontainers (with podman: ``DOCKER_HOST``,
    ``TESTCONTAINERS_RYUK_DISABLED=true``, ``TESTCONTAINERS_CONNECTION_MODE=docker_host``).
    The container is removed however the block ends, startup failures included.
    """
    image = image or cassandra_image()
    container = _auth_container(image, extra_yaml, login)
    try:
        container.start()
        host = _normalise_host(container.get_container_host_ip())
        port = int(container.get_exposed_port(NATIVE_PORT))
        started = time.monotonic()
        _wait_until_ready(container, host, port, startup_timeout)
        log.info("Cassandra (%s) ready at %s:%s in %.1f s", image, host, port, time.monotonic() - started)
        yield CassandraNode(host=host, port=port, image=image, container_id=container.get_wrapped_container().id)
    finally:
        container.stop()
