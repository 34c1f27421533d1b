"""The engine probe reads the Docker API version from /_ping, so docker SDK clients skip GET /version."""

import socket
import threading

from pytest_celery_astra import engine


def serve_once(path, reply: bytes):
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)

    def answer():
        connection, _ = server.accept()
        with connection:
            connection.recv(1024)
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


def test_a_malformed_version_is_ignored():
    assert engine._api_version(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41; rm -rf\r\n\r\n") is None
    assert engine._api_version(b"HTTP/1.1 200 OK\r\napi-version:  1.47 \r\n\r\n") == "1.47"
