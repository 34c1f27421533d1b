"""Is there a container engine? Asked through the Docker API, as testcontainers will."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from urllib.parse import urlparse

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class EngineProbe:
    answers: bool
    docker_host: str
    detail: str


def probe_engine(timeout: float = 2.0) -> EngineProbe:
    """Send ``GET /_ping`` to ``DOCKER_HOST`` (Docker or podman's API socket).

    Cheap (a few ms) and without the docker SDK, so it can run at configure time
    to decide the broker mode and to give a clear message when nothing answers.
    """
    docker_host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    parsed = urlparse(docker_host)
    try:
        if parsed.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            try:
                sock.connect(parsed.path)
            except OSError:
                sock.close()  # no ResourceWarning for a socket that never connected
                raise
        elif parsed.scheme in ("tcp", "http", "https"):
            sock = socket.create_connection((parsed.hostname, parsed.port or 2375), timeout=timeout)
        else:
            return EngineProbe(False, docker_host, f"DOCKER_HOST scheme {parsed.scheme!r} is not supported")
        with sock:
            if parsed.scheme == "https":
                return EngineProbe(True, docker_host, "TLS endpoint accepts connections")
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(64)
    except OSError as error:
        return EngineProbe(False, docker_host, f"{error.__class__.__name__}: {error.strerror or error}")
    if reply.startswith(b"HTTP/1.") and b" 200 " in reply[:16]:
        return EngineProbe(True, docker_host, "answers /_ping")
    return EngineProbe(False, docker_host, f"unexpected reply {reply[:32]!r}")


def no_engine_message(probe: EngineProbe, what: str, alternative: str) -> str:
    return (
        f"pytest-celery-astra: no container engine answers at {probe.docker_host} ({probe.detail}), "
        f"so {what} cannot start; start Docker (or podman's API socket, see scripts/container-engine) "
        f"and set DOCKER_HOST, or set {alternative}."
    )
