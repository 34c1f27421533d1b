"""Astra's SNI proxy: one TLS port in front of every node of the database.

The driver opens every CQL connection to the same ``sni_proxy_address`` and
names the node it wants in the TLS SNI extension (the node's host id). The
proxy terminates TLS (requiring the bundle's client certificate), picks the
node by that name and relays bytes to its native port in plain TCP.
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Mapping, Optional

from . import cql_frames
from .event_loop import BackgroundLoop
from .tls_server import MutualTlsServer, close_writer

_CHUNK = 64 * 1024
_UPSTREAM_CONNECT_TIMEOUT = 10.0
# Attribute under which the SNI callback leaves the requested name on the SSLObject.
_SNI_ATTRIBUTE = "_astra_standin_sni"


class SniProxy(MutualTlsServer):
    """Route TLS connections by SNI name to ``routes[name] = (host, port)``.

    ``product_type``: value to add as ``PRODUCT_TYPE`` to each connection's
    first ``SUPPORTED`` frame, as Astra does; ``None`` relays the node verbatim.
    """

    def __init__(
        self,
        loop: BackgroundLoop,
        ssl_context: ssl.SSLContext,
        routes: Mapping[str, tuple[str, int]],
        product_type: Optional[str] = cql_frames.ASTRA_PRODUCT_TYPE,
        host: str = "127.0.0.1",
    ) -> None:
        # Host ids are UUIDs; the driver sends str(uuid) (lower case), but TLS
        # names are case-insensitive, so match them that way.
        self._routes = {name.lower(): target for name, target in routes.items()}
        self._product_type = product_type
        # Unknown names fail the handshake itself: the client sees an
        # "unrecognized name" alert and no node is ever contacted.
        ssl_context.sni_callback = self._on_sni
        super().__init__(loop, ssl_context, host)

    @property
    def address(self) -> str:
        """``host:port``, the form the metadata service advertises."""
        return f"{self.host}:{self.port}"

    def _on_sni(self, ssl_object: ssl.SSLObject, server_name: Optional[str], _ctx: ssl.SSLContext) -> Optional[int]:
        if server_name is None or server_name.lower() not in self._routes:
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
        setattr(ssl_object, _SNI_ATTRIBUTE, server_name.lower())
        return None

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ssl_object = writer.get_extra_info("ssl_object")
        target = self._routes.get(getattr(ssl_object, _SNI_ATTRIBUTE, None) or "")
        if target is None:
            return  # belt and braces: the SNI callback already refused it
        node_reader, node_writer = await asyncio.wait_for(
            asyncio.open_connection(*target), _UPSTREAM_CONNECT_TIMEOUT
        )
        to_node = asyncio.create_task(_relay(reader, node_writer))
        to_client = asyncio.create_task(self._relay_from_node(node_reader, writer))
        try:
            # CQL has no half-close: once either side is done, the connection is.
            await asyncio.wait({to_node, to_client}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (to_node, to_client):
                task.cancel()
            await asyncio.gather(to_node, to_client, return_exceptions=True)
            await close_writer(node_writer, graceful=False)

    async def _relay_from_node(self, node_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._product_type is not None:
            await self._relay_first_frame(node_reader, writer)
        await _relay(node_reader, writer)

    async def _relay_first_frame(self, node_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._product_type is not None
        try:
            header = await node_reader.readexactly(cql_frames.FRAME_HEADER.size)
        except asyncio.IncompleteReadError as error:
            writer.write(error.partial)  # not a CQL frame: relay what came
            return
        if not cql_frames.is_plain_supported_header(header):
            writer.write(header)
            return
        body = await node_reader.readexactly(cql_frames.body_length(header))
        writer.write(cql_frames.with_astra_product_type(header, body, self._product_type))
        await writer.drain()


async def _relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy bytes until EOF or error, honouring the writer's flow control."""
    try:
        while True:
            data = await reader.read(_CHUNK)
            if not data:
                return
            writer.write(data)
            await writer.drain()
    except (OSError, asyncio.IncompleteReadError):
        return
