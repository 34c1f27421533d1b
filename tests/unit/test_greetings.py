"""The protocol greetings that tell a container is up (services.GREETINGS), against tiny local servers."""

import socket

import pytest

from pytest_celery_astra.containers.services import GREETINGS
from tests.local_servers import serve_one_connection


def serve_once(answer: bytes):
    """A server on a free port that reads the client's hello and sends ``answer`` (b"" = just close)."""

    def handle(connection):
        connection.recv(64)
        if answer:
            connection.sendall(answer)

    return serve_one_connection(handle)


ANSWERS = {
    "rabbitmq": b"\x01\x00\x00\x00\x00\x01\xf4\x00\x0a\x00\x0a",   # a method frame: Connection.Start
    "redis": b"+PONG\r\n",                                        # 7 bytes: must not wait for more
    "cassandra": b"\x84\x00\x00\x00\x06\x00\x00\x00\x10",          # SUPPORTED
}


@pytest.mark.parametrize("service", sorted(ANSWERS))
def test_the_service_answer_passes(service):
    GREETINGS[service]("127.0.0.1", serve_once(ANSWERS[service]))


@pytest.mark.parametrize("service", sorted(ANSWERS))
def test_a_forwarder_that_accepts_and_closes_does_not_pass(service):
    # Rootless podman's port forwarder accepts connections before the service listens, then closes them.
    with pytest.raises(ConnectionError):
        GREETINGS[service]("127.0.0.1", serve_once(b""))


def test_another_protocol_does_not_pass():
    with pytest.raises(ConnectionError):
        GREETINGS["cassandra"]("127.0.0.1", serve_once(b"HTTP/1.1 400 Bad Request\r\n\r\n"))


def test_while_a_service_boots_its_probe_modules_are_imported_once(monkeypatch):
    """services._poll_greeting: a greeting that fails (nothing listens yet) imports what the real probe
    needs, once, serially; an import that fails (an extra not installed) is left to the probe."""
    import time

    from pytest_celery_astra.containers import services
    from pytest_celery_astra.containers.services import ContainerSpec, _poll_greeting

    imported = []
    monkeypatch.setattr(services, "import_serially", lambda *names: imported.append(names))
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]   # bound, not listening: refused
    spec = ContainerSpec(name="cassandra", image="i", port=9042)
    _poll_greeting(spec, "127.0.0.1", port, deadline=time.monotonic() + 0.3,
                   container_alive=lambda: True, cancelled=None)
    closed.close()
    assert imported == [("cassandra.cluster", "celery.backends.cassandra")]

    def no_redis(*names):
        imported.append(names)
        raise ImportError("no redis")

    monkeypatch.setattr(services, "import_serially", no_redis)
    import_once = services._probe_module_importer("redis")
    import_once()      # no exception: the probe reports a missing extra
    import_once()      # tried once per start only
    assert imported[1:] == [("kombu", "kombu.transport.redis")]
