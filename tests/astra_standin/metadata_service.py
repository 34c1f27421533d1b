"""Astra's metadata service: ``GET /metadata`` over mutual TLS.

The driver calls it once, inside ``Cluster.__init__``, with the bundle's client
certificate, and reads ``contact_info``: the local DC, the contact points
(host ids, which become TLS SNI names) and the SNI proxy's ``host:port``.
The document mirrors what Astra returns.
"""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any, Sequence

from .event_loop import BackgroundLoop
from .tls_server import MutualTlsServer

METADATA_PATH = "/metadata"
# A request head bigger than this is not the driver's urlopen call.
_MAX_REQUEST_HEAD = 16 * 1024
_REQUEST_TIMEOUT = 10.0


def metadata_document(local_dc: str, host_ids: Sequence[str], sni_proxy_address: str) -> dict[str, Any]:
    """The JSON body of ``/metadata`` in Astra's shape."""
    return {
        "version": 1,
        "region": local_dc,
        "contact_info": {
            "type": "sni_proxy",
            "local_dc": local_dc,
            "contact_points": list(host_ids),
            "sni_proxy_address": sni_proxy_address,
        },
    }


def _response(status: str, body: bytes, content_type: str = "application/json") -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n"
        "Connection: close\r\n"
        "\r\n"
    )
    return head.encode("ascii") + body


class MetadataService(MutualTlsServer):
    """An HTTPS server answering ``GET /metadata`` to certificate holders only.

    One request per connection (``Connection: close``), which is all urllib's
    ``urlopen`` — the driver's client — ever sends.
    """

    def __init__(
        self,
        loop: BackgroundLoop,
        ssl_context: ssl.SSLContext,
        document: dict[str, Any],
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(loop, ssl_context, host)
        self._body = json.dumps(document).encode("utf-8")
        self.requests_served = 0
        # An HTTP status line to answer instead of the document, as Astra's metadata service does
        # for a hibernated ("503 Service Unavailable") or terminated database; None serves normally.
        self.failure: str | None = None

    @property
    def url(self) -> str:
        """The URL the driver derives from config.json's host and port."""
        return f"https://{self.host}:{self.port}{METADATA_PATH}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _REQUEST_TIMEOUT)
        except asyncio.LimitOverrunError:
            writer.write(_response("431 Request Header Fields Too Large", b"", "text/plain"))
            await writer.drain()
            return
        if len(head) > _MAX_REQUEST_HEAD:
            return
        writer.write(self._answer(head.split(b"\r\n", 1)[0]))
        await writer.drain()

    def _answer(self, request_line: bytes) -> bytes:
        parts = request_line.decode("latin-1").split()
        if len(parts) != 3:
            return _response("400 Bad Request", b"", "text/plain")
        method, target, _version = parts
        if target.split("?", 1)[0] != METADATA_PATH:
            return _response("404 Not Found", b"", "text/plain")
        if method != "GET":
            return _response("405 Method Not Allowed", b"", "text/plain")
        self.requests_served += 1
        if self.failure is not None:
            return _response(self.failure, b'{"errors":[{"message":"database is hibernated"}]}')
        return _response("200 OK", self._body)
