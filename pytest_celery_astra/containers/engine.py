"""The one client of the container engine: which requests go where, and why.

testcontainers creates the containers (``services.start_container``). What changes a container made by
another process (a kept one, or one the xdist controller started: testcontainers cannot take a container
it did not create) — stop, start, pause, exec, a removal the plain request could not make — goes through
the docker SDK, testcontainers' own dependency, made by :func:`docker_client` here with the API version
pinned. Four read-or-remove requests that run before or after any container work are plain HTTP on
``DOCKER_HOST`` (:func:`_api_request`, here only), each for a gain measured on podman 4 (2 cores):

* ``GET /_ping`` (:func:`probe_engine`): ~1 ms. It decides the broker mode at configure time and gives the
  API version, so no SDK client asks ``GET /version`` (``docker.from_env()`` without it: 576 ms, with
  it: 238 ms including the import).
* ``GET /containers/json`` (:func:`list_containers`): ~2 ms, for a run on kept containers and the reaper
  of killed runs, which otherwise import docker + testcontainers (453 ms in a fresh process) and list.
* ``DELETE /containers/{id}`` (:func:`remove_container_plainly`): on the way out of an interrupted run,
  without that import.

TLS and ssh endpoints are left to the SDK, which speaks them.

One cache is kept per process, not per run: the API version each ``DOCKER_HOST`` answered with
(:func:`docker_api_version`). It is a fact about the engine, not something a run decides or learns from
its tests, so two runs in one process may share it; it is private to this module (no other module reads
or writes it), keyed by the endpoint, and an engine that does not answer is not remembered. Putting it
on the run would mean handing the run to every SDK client made in ``services.py`` and ``faults.py``.
"""

from __future__ import annotations

import http.client
import importlib
import json
import os
import socket
import threading
from dataclasses import dataclass, field
from urllib.parse import quote, urlparse

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"


@dataclass(frozen=True)
class EngineProbe:
    answers: bool
    docker_host: str
    detail: str
    api_version: str | None = None  # the engine's ``Api-Version`` header, from the same /_ping


def probe_engine(timeout: float = 2.0) -> EngineProbe:
    """Send ``GET /_ping`` to ``DOCKER_HOST`` (Docker or podman's API socket).

    Cheap (about a millisecond) and without the docker SDK, so it can run at configure time
    to decide the broker mode and to give a clear message when nothing answers.
    """
    docker_host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    parsed = urlparse(docker_host)
    if parsed.scheme not in ("unix", "tcp", "http", "https"):
        return EngineProbe(False, docker_host, f"DOCKER_HOST scheme {parsed.scheme!r} is not supported")
    try:
        if parsed.scheme == "https" or _tls_configured():  # plain HTTP is not spoken there: a connection is the answer
            socket.create_connection((parsed.hostname, parsed.port or 2376), timeout=timeout).close()
            return EngineProbe(True, docker_host, "TLS endpoint accepts connections")
        answer = _api_request("GET", "/_ping", timeout)
    except OSError as error:
        return EngineProbe(False, docker_host, f"{error.__class__.__name__}: {error.strerror or error}")
    except http.client.HTTPException as error:
        return EngineProbe(False, docker_host, f"unexpected reply ({error.__class__.__name__})")
    assert answer is not None  # a plain unix or tcp endpoint
    status, headers, _ = answer
    if status == 200:
        return EngineProbe(True, docker_host, "answers /_ping", _api_version(headers.get("Api-Version")))
    return EngineProbe(False, docker_host, f"unexpected reply (HTTP {status})")


def _tls_configured() -> bool:
    """Docker's TLS settings: a ``tcp://`` DOCKER_HOST then speaks TLS (the docker SDK reads the same)."""
    return bool(os.environ.get("DOCKER_TLS_VERIFY") or os.environ.get("DOCKER_CERT_PATH"))


def _api_version(header: str | None) -> str | None:
    """The ``Api-Version`` header's value when it is a version number (it goes into the SDK's URLs)."""
    version = (header or "").strip()
    return version if version and version.replace(".", "").isdigit() else None


# By DOCKER_HOST: see the module's docstring for why this cache is per process.
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


_IMPORT_LOCK = threading.Lock()


def import_serially(*modules: str) -> None:
    """Import ``modules`` holding one process-wide lock.

    Containers start in threads, and two threads importing overlapping modules for the first time at
    once can meet Python 3.9's import deadlock detection (``_DeadlockError`` in ``docker.auth``, seen in
    CI): every import those threads make goes through here."""
    with _IMPORT_LOCK:
        for name in modules:
            importlib.import_module(name)


def import_container_sdk() -> None:
    """Import the docker SDK and testcontainers (:func:`import_serially`).

    Only when a container is created, removed or exec'd: a run on kept containers never pays it."""
    import_serially("docker", "testcontainers.core.container")


def docker_client():
    """A docker SDK client for ``DOCKER_HOST`` without the SDK's version round trip when /_ping named it."""
    import_container_sdk()
    import docker

    return docker.from_env(version=docker_api_version() or "auto")


@dataclass(frozen=True)
class ListedContainer:
    """What the engine's container list says of one container."""

    id: str
    labels: dict = field(default_factory=dict)
    running: bool = False
    # container port -> [(host address, host port)], for published TCP ports
    ports: dict = field(default_factory=dict)

    def published(self, port: int) -> tuple[str, int] | None:
        """Where ``port`` is published, as an address to connect to (a wildcard address is 127.0.0.1)."""
        bindings = self.ports.get(port) or []
        if not bindings:
            return None
        ipv4 = [binding for binding in bindings if ":" not in binding[0]]
        host, host_port = (ipv4 or bindings)[0]
        return ("127.0.0.1" if host in ("", "0.0.0.0", "::") else host), host_port

    @classmethod
    def from_sdk(cls, container) -> "ListedContainer":
        """From a docker SDK ``Container`` (whose ``attrs`` are the inspect answer)."""
        ports: dict = {}
        for key, bindings in ((container.attrs.get("NetworkSettings") or {}).get("Ports") or {}).items():
            number, _, protocol = key.partition("/")
            if protocol == "tcp" and bindings:
                ports[int(number)] = [(b.get("HostIp") or "", int(b["HostPort"])) for b in bindings if b.get("HostPort")]
        return cls(id=container.id, labels=dict(container.labels or {}), running=container.status == "running",
                   ports=ports)

    @classmethod
    def from_list_entry(cls, entry: dict) -> "ListedContainer":
        """From one entry of ``GET /containers/json`` (Docker's, or podman's compatible API)."""
        ports: dict = {}
        for binding in entry.get("Ports") or []:
            if binding.get("Type", "tcp") == "tcp" and binding.get("PublicPort"):
                ports.setdefault(int(binding["PrivatePort"]), []).append(
                    (binding.get("IP") or "", int(binding["PublicPort"])))
        return cls(id=entry["Id"], labels=dict(entry.get("Labels") or {}),
                   running=str(entry.get("State", "")).lower() == "running", ports=ports)


def list_containers(labels: list[str], timeout: float = 10.0) -> list[ListedContainer]:
    """The containers, in any state, carrying every one of ``labels`` (``key`` or ``key=value``).

    One ``GET /containers/json`` over ``DOCKER_HOST`` (a unix or plain TCP socket); through the docker
    SDK when that is not possible (TLS, ssh) or the plain request fails."""
    try:
        entries = _api_get_json("/containers/json?all=1&filters=" + quote(json.dumps({"label": labels})), timeout)
    except (OSError, ValueError, KeyError, http.client.HTTPException):
        entries = None
    if isinstance(entries, list):
        try:
            return [ListedContainer.from_list_entry(entry) for entry in entries]
        except (KeyError, TypeError, ValueError):
            pass
    client = docker_client()
    try:
        return [ListedContainer.from_sdk(c) for c in client.containers.list(all=True, filters={"label": labels})]
    finally:
        client.close()


class _UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.socket_path)
        except OSError:
            sock.close()
            raise
        self.sock = sock


def _api_request(method: str, path: str, timeout: float) -> tuple[int, http.client.HTTPMessage, bytes] | None:
    """``method path`` on the engine's API: (status, headers, body); None for an endpoint this does not
    speak (TLS, ssh). The module's only plain request (see its docstring for each one's gain)."""
    parsed = urlparse(os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST)
    if parsed.scheme == "unix":
        connection: http.client.HTTPConnection = _UnixHTTPConnection(parsed.path, timeout)
    elif parsed.scheme in ("tcp", "http") and not _tls_configured():
        connection = http.client.HTTPConnection(parsed.hostname or "localhost", parsed.port or 2375, timeout=timeout)
    else:
        return None
    try:
        connection.request(method, path, headers={"Host": "docker"})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def _api_get_json(path: str, timeout: float):
    """``GET path`` of the engine's API as JSON; None for an endpoint this does not speak (TLS, ssh)."""
    answer = _api_request("GET", path, timeout)
    if answer is None or answer[0] != 200:
        return None
    return json.loads(answer[2])


def remove_container_plainly(container_id: str, timeout: float = 30.0) -> bool:
    """``DELETE /containers/{id}?force=1&v=1`` (SIGKILL, its anonymous volumes too) without the docker SDK,
    whose import takes 0.1-0.7 s — on the way out of an interrupted run, too. True when the container is
    gone (also when it already was); False when the caller should use the SDK (TLS, ssh, an error)."""
    try:
        answer = _api_request("DELETE", f"/containers/{quote(container_id)}?force=1&v=1", timeout)
    except (OSError, http.client.HTTPException):
        return False
    return answer is not None and answer[0] in (200, 204, 404)


def no_engine_message(probe: EngineProbe, what: str, alternative: str) -> str:
    return (
        f"pytest-celery-astra: no container engine answers at {probe.docker_host} ({probe.detail}), "
        f"so {what} cannot start; start Docker (or podman's API socket, see scripts/container-engine) "
        f"and set DOCKER_HOST, or set {alternative}."
    )
