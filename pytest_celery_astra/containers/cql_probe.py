"""One CQL query over a plain socket: the readiness probe of a Cassandra container the plugin started.

Native protocol v4 (every Cassandra since 2.2): STARTUP, then ``SELECT release_version FROM
system.local`` at consistency ONE, each answered before the next is sent. It is the real work the
driver's probe did (a Cluster connect, its control connection, peers and schema queries, then the
query: 150-230 ms on a node that has just come up, on two cores), in ~2 ms and no driver thread.
"""

from __future__ import annotations

import socket
import struct

_VERSION = 0x04  # request frames; responses carry 0x84
_OPCODES = {"ERROR": 0x00, "STARTUP": 0x01, "READY": 0x02, "AUTHENTICATE": 0x03, "QUERY": 0x07, "RESULT": 0x08}
_CONSISTENCY_ONE = 0x0001
_ROWS = 0x0002
_TRACING, _WARNING = 0x02, 0x08  # response header flags that put something before the body
_HEADER = struct.Struct(">BBhBi")  # version, flags, stream, opcode, body length
QUERY = "SELECT release_version FROM system.local"


def string(text: str) -> bytes:
    data = text.encode()
    return struct.pack(">H", len(data)) + data


def _frame(stream: int, opcode: str, body: bytes) -> bytes:
    return _HEADER.pack(_VERSION, 0, stream, _OPCODES[opcode], len(body)) + body


def startup_frame() -> bytes:
    return _frame(1, "STARTUP", struct.pack(">H", 1) + string("CQL_VERSION") + string("3.0.0"))


def query_frame(query: str = QUERY) -> bytes:
    data = query.encode()
    return _frame(2, "QUERY", struct.pack(">i", len(data)) + data + struct.pack(">HB", _CONSISTENCY_ONE, 0))


def read_exactly(connection: socket.socket, size: int) -> bytes:
    """``size`` bytes from ``connection``; ``ConnectionError`` if it closes first."""
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the node closed the connection mid-frame")
        data += chunk
    return data


def _response(connection: socket.socket) -> tuple[int, bytes]:
    """The opcode and body of the next response, past a tracing id and warnings when flagged."""
    version, flags, _stream, opcode, length = _HEADER.unpack(read_exactly(connection, _HEADER.size))
    if version != 0x80 | _VERSION:
        raise ConnectionError(f"not a CQL v4 response (version byte {version:#x})")
    body = read_exactly(connection, length)
    if flags & _TRACING:
        body = body[16:]
    if flags & _WARNING:
        (count,) = struct.unpack(">H", body[:2])
        body = body[2:]
        for _ in range(count):
            (size,) = struct.unpack(">H", body[:2])
            body = body[2 + size:]
    return opcode, body


def _error_text(body: bytes) -> str:
    code, length = struct.unpack(">iH", body[:6])
    return f"error {code:#06x}: {body[6:6 + length].decode(errors='replace')}"


def probe_cql(host: str, port: int, timeout: float = 5.0) -> None:
    """Raise ``ConnectionError`` unless the node at ``host:port`` answers the query with rows."""
    with socket.create_connection((host, port), timeout=timeout) as connection:
        connection.sendall(startup_frame())
        opcode, body = _response(connection)
        if opcode == _OPCODES["AUTHENTICATE"]:
            raise ConnectionError("the node asks for authentication: no query without credentials")
        if opcode != _OPCODES["READY"]:
            raise ConnectionError(_error_text(body) if opcode == _OPCODES["ERROR"] else f"opcode {opcode:#x}")
        connection.sendall(query_frame())
        opcode, body = _response(connection)
        if opcode == _OPCODES["ERROR"]:
            raise ConnectionError(_error_text(body))
        if opcode != _OPCODES["RESULT"] or struct.unpack(">i", body[:4])[0] != _ROWS:
            raise ConnectionError(f"unexpected answer to {QUERY!r} (opcode {opcode:#x})")
