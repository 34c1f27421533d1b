"""Keyspace leases on a kept (reused) Cassandra container.

Creating a keyspace and Celery's result table, and dropping them at the end, is ~0.45 s of schema
changes per run: most of a reused start. On a kept container a process instead *leases* a slot: a
long-lived keyspace (``celery_astra_kept_0``, ``_1``, ...) that one process at a time holds, through a
non-blocking ``flock`` on a host-wide file per container, keyspace prefix and slot. The kernel releases
the lock when the process ends, however it ends, so a killed run never blocks a slot.

The file also says how its last holder left the keyspace:

* ``clean <fingerprint> <tombstones>``: ended normally; the keyspace holds only the owner table and an
  empty result table of that schema (``fingerprint``), with ``tombstones`` deletes since its last
  TRUNCATE (the janitor's budget carries on). The next holder uses it without any DDL.
* ``busy <pid>``: held, or its holder was killed (or interrupted): the next holder drops and recreates
  the keyspace, as a run without leases would.

Where locks are not available (Windows) or every slot is held, :func:`acquire` returns None and the run
makes a keyspace of its own, named by its run id.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path
from typing import IO

LEASE_DIR = Path(tempfile.gettempdir()) / "pytest-celery-astra-leases"
MAX_SLOTS = 32


@dataclasses.dataclass
class KeyspaceLease:
    """One held slot: its keyspace, and what its previous holder left."""

    slot: int
    keyspace: str
    fingerprint: str
    was_clean: bool  # the previous holder left the keyspace clean, with this schema
    tombstones: int  # deletes in the result table since its last TRUNCATE (when ``was_clean``)
    handle: IO[str] = dataclasses.field(repr=False)

    def release(self, clean: bool, tombstones: int = 0) -> None:
        """Give the slot back; ``clean`` says the keyspace holds only empty tables of this schema."""
        if self.handle.closed:
            return
        if clean:
            _write(self.handle, f"clean {self.fingerprint} {tombstones}\n")
        self.handle.close()  # closing the file releases the lock


def acquire(container_id: str, prefix: str, fingerprint: str, keyspace_for) -> KeyspaceLease | None:
    """The first free slot of ``container_id``'s keyspaces with ``prefix``, held until :meth:`release`
    (or the end of the process); ``keyspace_for(slot)`` names its keyspace. None without locks, or
    when all :data:`MAX_SLOTS` are held."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; every run makes its own keyspace
        return None
    try:
        LEASE_DIR.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return None
    for slot in range(MAX_SLOTS):
        try:
            handle = open(LEASE_DIR / f"{container_id[:16]}-{prefix}-{slot}", "a+")
        except OSError:  # another user's file in a shared temp dir
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live process
            handle.close()
            continue
        handle.seek(0)
        state = handle.read().split()
        was_clean = len(state) == 3 and state[0] == "clean" and state[1] == fingerprint and state[2].isdigit()
        _write(handle, f"busy {os.getpid()}\n")
        return KeyspaceLease(slot, keyspace_for(slot), fingerprint, was_clean,
                             int(state[2]) if was_clean else 0, handle)
    return None


def _write(handle: IO[str], text: str) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()
