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
    api_version: str | None = None  # the engine's ``Api-Version`` header, from the same /_ping


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
            reply = _read_head(sock)
    except OSError as error:
        return EngineProbe(False, docker_host, f"{error.__class__.__name__}: {error.strerror or error}")
    if reply.startswith(b"HTTP/1.") and b" 200 " in reply[:16]:
        return EngineProbe(True, docker_host, "answers /_ping", _api_version(reply))
    return EngineProbe(False, docker_host, f"unexpected reply {reply[:32]!r}")


def _read_head(sock: socket.socket) -> bytes:
    """The reply up to the end of its headers (a few hundred bytes)."""
    reply = b""
    while b"\r\n\r\n" not in reply and len(reply) < 8192:
        chunk = sock.recv(1024)
        if not chunk:
            break
        reply += chunk
    return reply


def _api_version(reply: bytes) -> str | None:
    for line in reply.split(b"\r\n\r\n")[0].split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"api-version":
            version = value.strip().decode("ascii", "replace")
            return version if version.replace(".", "").isdigit() else None
    return None


_API_VERSIONS: dict[str, str | None] = {}


def docker_api_version() -> str | None:
    """The Docker API version of ``DOCKER_HOST``, once per process, from ``/_ping`` (a few ms).

    The docker SDK otherwise asks ``GET /version`` for every client it makes: 0.4-0.5 s each on podman."""
    docker_host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    if docker_host not in _API_VERSIONS:
        probe = probe_engine()
        if not probe.answers:
            return None  # not remembered: the engine may come up later
        _API_VERSIONS[docker_host] = probe.api_version
    return _API_VERSIONS[docker_host]


def docker_client():
    """A docker SDK client for ``DOCKER_HOST`` without the SDK's version round trip when /_ping named it."""
    import docker

    return docker.from_env(version=docker_api_version() or "auto")


def no_engine_message(probe: EngineProbe, what: str, alternative: str) -> str:
    return (
        f"pytest-celery-astra: no container engine answers at {probe.docker_host} ({probe.detail}), "
        f"so {what} cannot start; start Docker (or podman's API socket, see scripts/container-engine) "
        f"and set DOCKER_HOST, or set {alternative}."
    )
