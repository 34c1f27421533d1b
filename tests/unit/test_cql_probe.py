"""cql_probe.probe_cql, the readiness probe of a new Cassandra container, against a scripted CQL v4 server.

The real node answers it in tests/services/test_images.py (wait_until_ready on the plugin's image)."""

import struct

import pytest

from pytest_celery_astra.containers.cql_probe import QUERY, probe_cql
from tests.local_servers import serve_one_connection


def response(opcode: int, body: bytes, flags: int = 0, stream: int = 1) -> bytes:
    return struct.pack(">BBhBi", 0x84, flags, stream, opcode, len(body)) + body


def error_body(code: int, message: str) -> bytes:
    return struct.pack(">iH", code, len(message)) + message.encode()


READY = response(0x02, b"")
ROWS = response(0x08, struct.pack(">i", 2) + b"\x00" * 12, stream=2)


def scripted_server(answers: list[bytes], received: list[bytes]):
    """Answer each frame the client sends with the next of ``answers``; keep what was received."""

    def handle(connection):
        for answer in answers:
            header = connection.recv(9)
            (length,) = struct.unpack(">i", header[5:9])
            body = connection.recv(length) if length else b""
            received.append(header + body)
            connection.sendall(answer)

    return serve_one_connection(handle)


def test_a_node_that_answers_the_query_with_rows_passes():
    received: list[bytes] = []
    probe_cql("127.0.0.1", scripted_server([READY, ROWS], received))
    startup, query = received
    assert startup[:5] == b"\x04\x00\x00\x01\x01" and b"CQL_VERSION" in startup
    assert query[4] == 0x07 and QUERY.encode() in query
    assert query.endswith(b"\x00\x01\x00")  # consistency ONE, no flags


def test_warnings_before_the_result_are_skipped():
    warnings = struct.pack(">H", 1) + struct.pack(">H", 4) + b"slow"
    answer = response(0x08, warnings + struct.pack(">i", 2), flags=0x08, stream=2)
    probe_cql("127.0.0.1", scripted_server([READY, answer], []))


def test_an_error_answer_is_the_nodes_sentence():
    refusal = response(0x00, error_body(0x1000, "Cannot achieve consistency level ONE"), stream=2)
    with pytest.raises(ConnectionError, match="0x1000: Cannot achieve consistency level ONE"):
        probe_cql("127.0.0.1", scripted_server([READY, refusal], []))


def test_a_node_that_asks_for_credentials_is_not_ready_for_this_probe():
    authenticate = response(0x03, struct.pack(">H", 5) + b"Plain")
    with pytest.raises(ConnectionError, match="authentication"):
        probe_cql("127.0.0.1", scripted_server([authenticate], []))


def test_a_connection_closed_mid_answer_is_not_ready():
    with pytest.raises(ConnectionError):
        probe_cql("127.0.0.1", scripted_server([READY[:5]], []))


def test_another_protocol_version_is_not_ready():
    with pytest.raises(ConnectionError, match="not a CQL v4 response"):
        probe_cql("127.0.0.1", scripted_server([b"\x85" + READY[1:]], []))
