"""Opt-in container reuse: keep containers after a run, pick them up on the next one.

Kept containers carry the hash of their configuration. A kept container whose
hash matches the wanted one, and which answers, is reused; one whose hash does
not match is removed, so a changed image or setting never runs stale services.
"""

from __future__ import annotations

import logging
import socket
import time

from .engine import docker_client
from .services import (
    LABEL_CONFIG_HASH, LABEL_REUSE, LABEL_SERVICE, ContainerSpec, RunningService, wait_until_ready,
)

logger = logging.getLogger(__name__)
REUSED_READY_TIMEOUT = 10.0


def find_reusable(spec: ContainerSpec, timeout: float) -> RunningService | None:
    """A kept, matching, answering container for ``spec``, or None; removes mismatching or stopped ones."""
    client = docker_client()
    try:
        kept = client.containers.list(all=True, filters={"label": [f"{LABEL_REUSE}=1", f"{LABEL_SERVICE}={spec.name}"]})
        found = None
        for container in kept:
            matches = container.labels.get(LABEL_CONFIG_HASH) == spec.config_hash
            if matches and container.status == "running":
                # Another run may be using (or still starting) this one: never remove it.
                if found is None:
                    found = _answering(container, spec)
                continue
            logger.info("pytest-celery-astra: removing kept %s container %s (configuration changed or stopped)",
                        spec.name, container.short_id)
            container.remove(force=True, v=True)
        return found
    finally:
        client.close()


def _answering(container, spec: ContainerSpec) -> RunningService | None:
    started = time.monotonic()
    ports = container.attrs["NetworkSettings"]["Ports"]
    bindings = ports.get(f"{spec.port}/tcp") or []
    if not bindings:
        return None
    admin_bindings = (ports.get(f"{spec.admin_port}/tcp") or []) if spec.admin_port else []
    host = bindings[0].get("HostIp") or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    port = int(bindings[0]["HostPort"])
    # A kept container was ready once: its protocol's greeting is proof enough that it still answers
    # (~1 ms, where a driver Cluster for one CQL query takes ~0.25 s). It may also be one another run
    # is still starting: then this waits, as for a new container.
    try:
        wait_until_ready(spec, host, port, REUSED_READY_TIMEOUT, probe=GREETINGS[spec.name])
    except Exception:
        return None
    return RunningService(
        name=spec.name, image=spec.image, container_id=container.id, host=host, port=port,
        seconds_to_ready=round(time.monotonic() - started, 2), reused=True,
        admin_port=int(admin_bindings[0]["HostPort"]) if admin_bindings else None,
    )


def _greeting(host: str, port: int, hello: bytes, expect) -> None:
    """Send ``hello``; raise unless the first bytes of the answer satisfy ``expect``."""
    with socket.create_connection((host, port), timeout=2) as connection:
        connection.sendall(hello)
        answer = b""
        while len(answer) < 9:
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
              lambda answer: len(answer) >= 5 and answer[0] == 0x84 and answer[4] == 0x06)


GREETINGS = {"rabbitmq": _greet_amqp, "redis": _greet_redis, "cassandra": _greet_cql}
