"""The engine probe reads the Docker API version from /_ping, so docker SDK clients skip GET /version;
kept containers are listed with one plain request, the docker SDK only as the fallback."""

import socket
import threading

import pytest

from pytest_celery_astra.containers import engine


def serve_once(path, reply: bytes, requests=None):
    """A fake engine on a unix socket: one answer; the request line goes to ``requests`` when given."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer():
        connection, _ = server.accept()
        with connection:
            request = connection.recv(4096)
            if requests is not None:
                requests.append(request.split(b"\r\n")[0].decode())
            for start in range(0, len(reply), 7):   # in small pieces: the probe reads until the headers end
                connection.sendall(reply[start:start + 7])
        server.close()

    threading.Thread(target=answer, daemon=True).start()


def test_the_api_version_comes_from_the_ping_headers(tmp_path, monkeypatch):
    path = tmp_path / "engine.sock"
    serve_once(path, b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nServer: Libpod/4.3.1 (linux)\r\n\r\nOK")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    probe = engine.probe_engine()
    assert probe.answers and probe.api_version == "1.41"


def test_an_engine_without_the_header_leaves_the_version_to_the_sdk(tmp_path, monkeypatch):
    path = tmp_path / "engine.sock"
    serve_once(path, b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nOK")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    monkeypatch.setattr(engine, "_API_VERSIONS", {})
    assert engine.probe_engine().api_version is None


def test_a_malformed_version_is_ignored(tmp_path, monkeypatch):
    assert engine._api_version("1.41; rm -rf") is None and engine._api_version(None) is None
    path = tmp_path / "engine.sock"
    serve_once(path, b"HTTP/1.1 200 OK\r\napi-version:  1.47 \r\nContent-Length: 2\r\n\r\nOK")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    assert engine.probe_engine().api_version == "1.47"          # header names are case-insensitive


def test_what_does_not_answer_like_an_engine_is_said(tmp_path, monkeypatch):
    path = tmp_path / "engine.sock"
    serve_once(path, b"SSH-2.0-OpenSSH_9.2\r\n")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    probe = engine.probe_engine()
    assert not probe.answers and probe.detail.startswith("unexpected reply")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/none.sock")
    assert not engine.probe_engine().answers
    monkeypatch.setenv("DOCKER_HOST", "npipe:////./pipe/docker_engine")
    assert "not supported" in engine.probe_engine().detail


def serve_http(path, status: str, body: bytes, requests: list):
    """One HTTP/1.1 answer, chunked as Docker's engine sends its lists; the request line is kept."""
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + 50]), body[i:i + 50]) for i in range(0, len(body), 50))
    serve_once(path, f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
               .encode() + chunks + b"0\r\n\r\n", requests)


DOCKER_LIST = b'''[{"Id": "abc123", "State": "running", "Labels": {"io.github.pytest-celery-astra.reuse": "1"},
  "Ports": [{"IP": "0.0.0.0", "PrivatePort": 5672, "PublicPort": 32768, "Type": "tcp"},
            {"IP": "::", "PrivatePort": 5672, "PublicPort": 32768, "Type": "tcp"},
            {"PrivatePort": 4369, "Type": "tcp"},
            {"IP": "0.0.0.0", "PrivatePort": 5353, "PublicPort": 40000, "Type": "udp"}]},
 {"Id": "def456", "State": "exited", "Labels": null, "Ports": []}]'''


def test_containers_are_listed_without_the_docker_sdk(tmp_path, monkeypatch):
    path = tmp_path / "engine.sock"
    requests = []
    serve_http(path, "200 OK", DOCKER_LIST, requests)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    monkeypatch.setattr(engine, "docker_client", lambda: pytest.fail("the docker SDK was used"))
    running, exited = engine.list_containers(["io.github.pytest-celery-astra.reuse=1", "a=b c"])
    # The label filter goes to the engine, URL-encoded, as the docker SDK would send it.
    assert requests[0].startswith("GET /containers/json?all=1&filters=")
    assert "a%3Db%20c" in requests[0] and " " not in requests[0].split(" ")[1]
    assert running.id == "abc123" and running.running and running.labels == {"io.github.pytest-celery-astra.reuse": "1"}
    assert running.published(5672) == ("127.0.0.1", 32768)
    assert running.published(4369) is None and running.published(5353) is None  # unpublished; udp
    assert not exited.running and exited.labels == {} and exited.published(5672) is None


def test_podman_lists_ports_without_an_address():
    listed = engine.ListedContainer.from_list_entry(
        {"Id": "x", "State": "running", "Ports": [{"PrivatePort": 9042, "PublicPort": 43145, "Type": "tcp"}]})
    assert listed.published(9042) == ("127.0.0.1", 43145)
    bound = engine.ListedContainer.from_list_entry(
        {"Id": "y", "State": "running", "Ports": [{"IP": "10.0.0.5", "PrivatePort": 9042, "PublicPort": 1, "Type": "tcp"}]})
    assert bound.published(9042) == ("10.0.0.5", 1)


def test_an_engine_error_falls_back_to_the_docker_sdk(tmp_path, monkeypatch):
    path = tmp_path / "engine.sock"
    serve_http(path, "500 Internal Server Error", b'{"message": "boom"}', [])
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")

    class Container:
        id = "sdk1"
        labels = {"k": "v"}
        status = "running"
        attrs = {"NetworkSettings": {"Ports": {"9042/tcp": [{"HostIp": "0.0.0.0", "HostPort": "5000"}],
                                               "7000/tcp": None}}}

    class Client:
        class containers:  # noqa: N801 - shaped like the SDK's
            @staticmethod
            def list(all, filters):
                assert all and filters == {"label": ["k=v"]}
                return [Container()]

        closed = False

        def close(self):
            Client.closed = True

    monkeypatch.setattr(engine, "docker_client", Client)
    (listed,) = engine.list_containers(["k=v"])
    assert listed == engine.ListedContainer(id="sdk1", labels={"k": "v"}, running=True, ports={9042: [("0.0.0.0", 5000)]})
    assert listed.published(9042) == ("127.0.0.1", 5000) and Client.closed


def test_a_tls_engine_is_left_to_the_docker_sdk(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "ssh://user@host")
    assert engine._api_get_json("/containers/json", 1.0) is None


def test_a_tcp_engine_with_docker_tls_settings_is_left_to_the_docker_sdk(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    monkeypatch.setenv("DOCKER_TLS_VERIFY", "1")
    assert engine._api_get_json("/containers/json", 1.0) is None  # no plain HTTP request to a TLS port


def test_a_tls_tcp_engine_that_accepts_connections_answers(monkeypatch):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    monkeypatch.setenv("DOCKER_HOST", f"tcp://127.0.0.1:{server.getsockname()[1]}")
    monkeypatch.setenv("DOCKER_CERT_PATH", "/nonexistent")
    try:
        probe = engine.probe_engine()
    finally:
        server.close()
    assert probe.answers and probe.detail == "TLS endpoint accepts connections"


@pytest.mark.parametrize("status, gone", [("204 No Content", True), ("404 Not Found", True),
                                          ("409 Conflict", False), ("500 Internal Server Error", False)])
def test_a_container_is_removed_with_one_plain_request(tmp_path, monkeypatch, status, gone):
    """engine.remove_container_plainly: no docker SDK import on the way out of a run; gone also when it
    already was (404); anything else is left to the SDK, which says what went wrong."""
    path = tmp_path / "engine.sock"
    requests = []
    serve_once(path, f"HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n".encode(), requests)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    assert engine.remove_container_plainly("abc123") is gone
    assert requests == ["DELETE /containers/abc123?force=1&v=1 HTTP/1.1"]


def test_removal_without_an_answering_engine_or_over_tls_is_left_to_the_docker_sdk(tmp_path, monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path / 'nothing.sock'}")
    assert engine.remove_container_plainly("abc123") is False
    monkeypatch.setenv("DOCKER_HOST", "ssh://user@host")
    assert engine.remove_container_plainly("abc123") is False
