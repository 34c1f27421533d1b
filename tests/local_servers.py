"""Tiny local TCP servers for unit tests of the plugin's protocol probes."""

from __future__ import annotations

import socket
import threading
from typing import Callable


def serve_one_connection(handle: Callable[[socket.socket], None]) -> int:
    """Listen on a free port of 127.0.0.1, give the first connection to ``handle`` (in a thread), then
    close both; return the port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def accept():
        connection, _ = server.accept()
        with connection:
            handle(connection)
        server.close()

    threading.Thread(target=accept, daemon=True).start()
    return server.getsockname()[1]
