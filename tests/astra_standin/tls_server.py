"""A mutual-TLS TCP server on the background loop, with tracked connections.

Connections are accepted as plain TCP and upgraded with ``StreamWriter.start_tls``
inside the per-connection task. That keeps the TLS handshake inside a task the
server knows about, so :meth:`close` can cancel every connection — handshakes
in progress included — and no socket outlives the server. (Python < 3.11 has
no ``StreamWriter.start_tls``; there the listener does the handshake itself,
and a handshake in flight at close is bounded by ``HANDSHAKE_TIMEOUT`` instead.)
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Optional

from .event_loop import BackgroundLoop

# A client that connects and never finishes its handshake must not hold a slot forever.
HANDSHAKE_TIMEOUT = 10.0
_UPGRADE_IN_TASK = hasattr(asyncio.StreamWriter, "start_tls")
# Closing a TLS stream waits for the peer's close_notify; never wait long for it.
CLOSE_TIMEOUT = 2.0


async def close_writer(writer: asyncio.StreamWriter, graceful: bool) -> None:
    """Close a stream: politely when the exchange is over, abruptly on shutdown."""
    if not graceful:
        writer.transport.abort()
        return
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)
    except (OSError, asyncio.TimeoutError):
        writer.transport.abort()


class MutualTlsServer:
    """Base class: listen on 127.0.0.1, demand client certificates, serve connections.

    Subclasses implement :meth:`serve`, which runs once the handshake succeeded.
    """

    def __init__(self, loop: BackgroundLoop, ssl_context: ssl.SSLContext, host: str = "127.0.0.1") -> None:
        self._loop = loop
        self._ssl_context = ssl_context
        self._host = host
        self._server: Optional[asyncio.AbstractServer] = None
        self._connections: set[asyncio.Task[None]] = set()
        self._closing = False
        self.port: int = 0

    @property
    def host(self) -> str:
        """The address the server listens on."""
        return self._host

    def start(self) -> None:
        """Bind an ephemeral port and start accepting."""
        self._loop.run(self._start())

    async def _start(self) -> None:
        if _UPGRADE_IN_TASK:
            server = await asyncio.start_server(self._accept, self._host, 0)
        else:
            server = await asyncio.start_server(
                self._accept, self._host, 0, ssl=self._ssl_context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT
            )
        self._server = server
        self.port = server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        # Until the handshake completes there is no TLS session to close politely
        # (and asyncio never reports a half-made TLS stream as closed): abort it.
        handshake_done = not _UPGRADE_IN_TASK
        try:
            try:
                if not handshake_done:
                    await writer.start_tls(self._ssl_context, ssl_handshake_timeout=HANDSHAKE_TIMEOUT)
            except (OSError, asyncio.TimeoutError):
                # No certificate, a foreign one, an unknown SNI name, or a
                # client that gave up: the handshake is the gate, nothing to serve.
                return
            handshake_done = True
            await self.serve(reader, writer)
        except asyncio.CancelledError:
            pass  # the server is closing; the finally clause releases the socket
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError):
            pass  # a peer went away mid-exchange: routine for a network server
        finally:
            await close_writer(writer, graceful=handshake_done and not self._closing)
            self._connections.discard(task)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Serve one authenticated TLS connection."""
        raise NotImplementedError

    @property
    def connection_count(self) -> int:
        """Connections currently open (tests use it to see that none leak)."""
        return len(self._connections)

    def close(self) -> None:
        """Stop listening and drop every open connection."""
        if self._server is None:
            return
        self._loop.run(self._close())

    async def _close(self) -> None:
        self._closing = True
        assert self._server is not None
        self._server.close()
        tasks = list(self._connections)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        self._server = None
