"""Quiet, driver-free probes of a Cassandra node's native port.

Waiting with the driver means one ``Cluster`` per attempt, and each failed
attempt logs a warning and an error with tracebacks. These probes speak just
enough protocol v4 (unframed, uncompressed) to answer two questions:
does the node answer at all, and does a username/password log in.
"""

from __future__ import annotations

import socket
import struct

from pytest_celery_astra.containers.cql_probe import read_exactly, string

from .cql_frames import FRAME_HEADER, OPCODE_SUPPORTED

_VERSION = 0x04
_OPCODE_STARTUP = 0x01
_OPCODE_READY = 0x02
_OPCODE_AUTHENTICATE = 0x03
_OPCODE_OPTIONS = 0x05
_OPCODE_AUTH_RESPONSE = 0x0F
_OPCODE_AUTH_SUCCESS = 0x10


def _frame(opcode: int, body: bytes = b"") -> bytes:
    return FRAME_HEADER.pack(_VERSION, 0, 0, opcode, len(body)) + body


def _exchange(sock: socket.socket, opcode: int, body: bytes = b"") -> int:
    """Send one request; return the response's opcode (its body is discarded)."""
    sock.sendall(_frame(opcode, body))
    header = read_exactly(sock, FRAME_HEADER.size)
    length = FRAME_HEADER.unpack(header)[4]
    read_exactly(sock, length)
    return FRAME_HEADER.unpack(header)[3]


def native_transport_answers(host: str, port: int, timeout: float = 2.0) -> bool:
    """True once the node answers ``OPTIONS`` with ``SUPPORTED``.

    An accepted TCP connection alone proves nothing: port forwarders accept
    before the node listens.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            return _exchange(sock, _OPCODE_OPTIONS) == OPCODE_SUPPORTED
    except OSError:
        return False


def password_login_works(host: str, port: int, username: str, password: str, timeout: float = 5.0) -> bool:
    """True if ``username``/``password`` log in (SASL PLAIN, as PlainTextAuthProvider does)."""
    startup = struct.pack(">H", 1) + string("CQL_VERSION") + string("3.0.0")
    token = b"\x00" + username.encode("utf-8") + b"\x00" + password.encode("utf-8")
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            answer = _exchange(sock, _OPCODE_STARTUP, startup)
            if answer == _OPCODE_READY:
                return True  # the node does not authenticate at all
            if answer != _OPCODE_AUTHENTICATE:
                return False
            return _exchange(sock, _OPCODE_AUTH_RESPONSE, struct.pack(">i", len(token)) + token) == _OPCODE_AUTH_SUCCESS
    except OSError:
        return False
