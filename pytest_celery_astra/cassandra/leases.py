"""Keyspace leases on a kept (reused) Cassandra container.

Creating a keyspace and Celery's result table, and dropping them at the end, is ~0.45 s of schema
changes per run: most of a reused start. On a kept container a process instead *leases* a slot: a
long-lived keyspace (``celery_astra_kept_0``, ``_1``, ...) that one process at a time holds, through a
non-blocking ``flock`` on a host-wide file per container, keyspace prefix and slot. The kernel releases
the lock when the process ends, however it ends, so a killed run never blocks a slot.

The file also says how its last holder left the keyspace:

* ``clean <fingerprint> <tombstones> [<table>:<digest>:<tombstones>,...]``: ended normally; the keyspace
  holds only the owner table, an empty result table of that schema (``fingerprint``), with ``tombstones``
  deletes since its last TRUNCATE (the janitor's budget carries on), and the empty tables the run made
  with ``create_table()`` (``digest`` of their CREATE statement). The next holder uses it without any
  DDL, and a ``create_table()`` of the same statement finds its table there.
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
from typing import IO, Mapping, NamedTuple, Protocol

MAX_SLOTS = 32


def lease_dir() -> Path:
    """The host-wide directory of lease files, in the temp directory as it is when a lease is taken
    (``TMPDIR``, or ``tempfile.tempdir``), not as it was when this module was imported."""
    return Path(tempfile.gettempdir()) / "pytest-celery-astra-leases"


class LeftState(NamedTuple):
    """How a slot's last holder left its keyspace."""

    clean: bool  # clean, with this schema
    tombstones: int  # deletes in the result table since its last TRUNCATE (when ``clean``)
    tables: dict[str, tuple[str, int]]  # kept tables made by create_table(): digest, tombstones


class Holding(Protocol):
    """How a lease store holds one slot for this process: a lock file here, a claimed row of the cluster
    (cluster_leases.py)."""

    def give_back(self, state: str | None) -> None:
        """Free the slot, leaving ``state`` for its next holder (None: as held, so the next one starts afresh).
        Twice is harmless."""


@dataclasses.dataclass
class KeyspaceLease:
    """One held slot of either store: its keyspace, what its previous holder left, and how it is held."""

    slot: int
    keyspace: str
    fingerprint: str
    left: LeftState
    holding: Holding = dataclasses.field(repr=False)

    def release(self, clean: bool, tombstones: int = 0, tables: Mapping[str, tuple[str, int]] | None = None) -> None:
        """Give the slot back; ``clean`` says the keyspace holds only empty tables of this schema."""
        self.holding.give_back(clean_state(self.fingerprint, tombstones, tables) if clean else None)


@dataclasses.dataclass
class FileHolding:
    """A slot of a kept container, held by a ``flock`` on its file: the kernel frees it when the process ends."""

    handle: IO[str]

    def give_back(self, state: str | None) -> None:
        if self.handle.closed:
            return
        if state is not None:
            _write(self.handle, state + "\n")
        self.handle.close()  # closing the file releases the lock


def acquire(container_id: str, prefix: str, fingerprint: str, keyspace_for) -> KeyspaceLease | None:
    """The first free slot of ``container_id``'s keyspaces with ``prefix``, held until :meth:`release`
    (or the end of the process); ``keyspace_for(slot)`` names its keyspace. None without locks, or
    when all :data:`MAX_SLOTS` are held."""
    try:
        import fcntl
    except ImportError:  # Windows: no flock; every run makes its own keyspace
        return None
    directory = lease_dir()
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
    except OSError:
        return None
    for slot in range(MAX_SLOTS):
        try:
            handle = open(directory / f"{container_id[:16]}-{prefix}-{slot}", "a+")
        except OSError:  # another user's file in a shared temp dir
            return None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a live process
            handle.close()
            continue
        handle.seek(0)
        left = read_state(handle.read(), fingerprint)
        _write(handle, busy_state(str(os.getpid())) + "\n")
        return KeyspaceLease(slot, keyspace_for(slot), fingerprint, left, FileHolding(handle))
    return None


def clean_state(fingerprint: str, tombstones: int, tables: Mapping[str, tuple[str, int]] | None = None) -> str:
    """The state of a keyspace left clean: only empty tables of schema ``fingerprint``, and ``tables``."""
    kept = ",".join(f"{name}:{digest}:{count}" for name, (digest, count) in sorted((tables or {}).items()))
    return f"clean {fingerprint} {tombstones}" + (f" {kept}" if kept else "")


def busy_state(holder: str) -> str:
    """The state of a keyspace while held (and after a holder that did not finish)."""
    return f"busy {holder}"


def dirty() -> LeftState:
    """A keyspace to drop and recreate (a fresh value each time: its ``tables`` dict is the caller's)."""
    return LeftState(False, 0, {})


def read_state(text: str | None, fingerprint: str) -> LeftState:
    """What a slot's state says its last holder left; anything unexpected is :func:`dirty`."""
    state = (text or "").split()
    if len(state) not in (3, 4) or state[0] != "clean" or state[1] != fingerprint or not state[2].isdigit():
        return dirty()
    tables = {}
    for entry in state[3].split(",") if len(state) == 4 else ():
        name, _, rest = entry.partition(":")
        digest, _, count = rest.partition(":")
        if not (name and digest and count.isdigit()):
            return dirty()
        tables[name] = (digest, int(count))
    return LeftState(True, int(state[2]), tables)


def _write(handle: IO[str], text: str) -> None:
    handle.seek(0)
    handle.truncate()
    handle.write(text)
    handle.flush()
