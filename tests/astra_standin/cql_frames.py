"""Just enough of the CQL native protocol to look like Astra to the driver.

Astra answers the driver's first request on every connection, ``OPTIONS``,
with a ``SUPPORTED`` map that includes ``PRODUCT_TYPE: DATASTAX_APOLLO``.
cassandra-driver reads that entry to set ``cluster.metadata.dbaas`` and then
makes ``LOCAL_QUORUM`` the default consistency of every session
(``Cluster._set_default_dbaas_consistency``). A plain Cassandra node does not
send it, so the SNI proxy adds it to that one frame.

Only the legacy frame layout (protocol v3+) matters here: the exchange before
``STARTUP`` is never wrapped in v5 segments, and ``SUPPORTED`` is never compressed.
"""

from __future__ import annotations

import struct

# version, flags, stream id, opcode, body length (protocol v3 and later)
FRAME_HEADER = struct.Struct(">BBhBI")
OPCODE_SUPPORTED = 0x06
FLAG_COMPRESSION = 0x01
RESPONSE_BIT = 0x80
PRODUCT_TYPE_KEY = "PRODUCT_TYPE"
ASTRA_PRODUCT_TYPE = "DATASTAX_APOLLO"
# SUPPORTED bodies are a few hundred bytes; anything huge is not one worth parsing.
MAX_SUPPORTED_BODY = 64 * 1024


def is_plain_supported_header(header: bytes) -> bool:
    """True for a v3+ uncompressed SUPPORTED response header we can rewrite."""
    version, flags, _stream, opcode, length = FRAME_HEADER.unpack(header)
    return (
        version & RESPONSE_BIT != 0
        and version & 0x7F >= 3
        and opcode == OPCODE_SUPPORTED
        and not flags & FLAG_COMPRESSION
        and length <= MAX_SUPPORTED_BODY
    )


def body_length(header: bytes) -> int:
    """The body length announced by a frame header."""
    return FRAME_HEADER.unpack(header)[4]


def _read_short(data: bytes, offset: int) -> tuple[int, int]:
    return struct.unpack_from(">H", data, offset)[0], offset + 2


def _read_string(data: bytes, offset: int) -> tuple[str, int]:
    length, offset = _read_short(data, offset)
    end = offset + length
    if end > len(data):
        raise ValueError("truncated [string]")
    return data[offset:end].decode("utf-8"), end


def decode_string_multimap(body: bytes) -> dict[str, list[str]]:
    """Decode a protocol ``[string multimap]`` (the whole SUPPORTED body)."""
    count, offset = _read_short(body, 0)
    result: dict[str, list[str]] = {}
    for _ in range(count):
        key, offset = _read_string(body, offset)
        values_count, offset = _read_short(body, offset)
        values = []
        for _ in range(values_count):
            value, offset = _read_string(body, offset)
            values.append(value)
        result[key] = values
    if offset != len(body):
        raise ValueError("trailing bytes after [string multimap]")
    return result


def _encode_string(value: str) -> bytes:
    raw = value.encode("utf-8")
    return struct.pack(">H", len(raw)) + raw


def encode_string_multimap(mapping: dict[str, list[str]]) -> bytes:
    """Encode a protocol ``[string multimap]``."""
    parts = [struct.pack(">H", len(mapping))]
    for key, values in mapping.items():
        parts.append(_encode_string(key))
        parts.append(struct.pack(">H", len(values)))
        parts.extend(_encode_string(value) for value in values)
    return b"".join(parts)


def with_astra_product_type(header: bytes, body: bytes, product_type: str = ASTRA_PRODUCT_TYPE) -> bytes:
    """Return the SUPPORTED frame with ``PRODUCT_TYPE`` added (unchanged if present or unparsable)."""
    try:
        options = decode_string_multimap(body)
    except (ValueError, struct.error, UnicodeDecodeError):
        return header + body  # not ours to judge: pass the node's answer through
    if PRODUCT_TYPE_KEY in options:
        return header + body
    options[PRODUCT_TYPE_KEY] = [product_type]
    new_body = encode_string_multimap(options)
    version, flags, stream, opcode, _length = FRAME_HEADER.unpack(header)
    return FRAME_HEADER.pack(version, flags, stream, opcode, len(new_body)) + new_body
