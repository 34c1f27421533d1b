"""Between the processes of this host: who owns something the plugin made (:class:`Owner`), and an
exclusive lock on a file (:func:`file_lock`).

An owner is a host, process id and process start time. Containers, state directories, keyspaces and Astra
tables carry their owner. A later run on the same host may remove them only when that owner is provably
gone: the process id no longer exists, or it now belongs to a process that started at another time (the id
was reused).

The lock is fcntl's on POSIX, msvcrt's on Windows: the processes of a run (xdist workers) and of other runs
take turns under it (a container's start, a kept keyspace's lease, the shared Astra tables' record).
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


def _start_ticks(pid: int) -> str:
    """The process's start time in clock ticks since boot (Linux), or "" where /proc has none."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name (field 2) may hold spaces: count fields after its closing parenthesis.
            return stat.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


@dataclasses.dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: str

    @classmethod
    def this_process(cls) -> "Owner":
        pid = os.getpid()
        return cls(socket.gethostname(), pid, _start_ticks(pid))

    @classmethod
    def parse(cls, host: str | None, pid: str | None, started: str | None) -> "Owner | None":
        if not host or not pid or not pid.isdigit():
            return None
        return cls(host, int(pid), started or "")

    def is_provably_gone(self) -> bool:
        """True only for an owner on this host whose process has ended; never for another host."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False  # a process of another user holds the id: alive as far as we can tell
        now = _start_ticks(self.pid)
        return bool(self.started and now and now != self.started)

    def is_alive_here(self) -> bool:
        """True for an owner on this host whose process still runs: its data is never anyone's leftover."""
        return self.host == socket.gethostname() and not self.is_provably_gone()

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}"


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block."""
    with open(path, "a+") as handle:
        if sys.platform == "win32":  # no fcntl: lock the first byte instead
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
            return
        import fcntl

        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
