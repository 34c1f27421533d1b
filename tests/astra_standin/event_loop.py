"""One asyncio event loop on one daemon thread, driven from synchronous code.

The metadata service and the SNI proxy both live on this loop: one thread
serves any number of TLS connections, and shutting down is a single,
ordered step (close servers, cancel connections, stop the loop, join).
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


class BackgroundLoop:
    """An event loop running on its own thread until :meth:`close`."""

    def __init__(self, name: str = "astra-standin-loop") -> None:
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._started.set)
        self._loop.run_forever()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop itself, for code that must schedule on it."""
        return self._loop

    @property
    def thread(self) -> threading.Thread:
        """The thread running the loop (tests check it is gone after close)."""
        return self._thread

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the loop and wait for its result from this thread."""
        if not self._thread.is_alive():
            coro.close()
            raise RuntimeError("the background loop is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Stop the loop, join its thread and release the loop's resources."""
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise RuntimeError("the background loop thread did not stop")
        if not self._loop.is_closed():
            # Whatever is still pending belongs to nobody now; cancel it so
            # close() does not warn about destroyed pending tasks.
            pending = asyncio.all_tasks(self._loop)
            for task in pending:
                task.cancel()
            if pending:
                self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()
