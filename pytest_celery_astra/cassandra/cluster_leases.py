"""Keyspace leases on an existing cluster, shared by every run that uses it (``keep_keyspaces``).

On a shared multi-node cluster each schema change waits for every node to agree (~0.9 s each on 3
nodes), so creating a keyspace and its tables and dropping them at the end costs seconds per process.
With ``keep_keyspaces`` a process instead leases a long-lived keyspace (``celery_astra_kept_0``, ...)
that one process at a time holds, as on a kept container (leases.py) — but the runs that share a
cluster may be on different machines, so the lock is in the cluster itself: a row per slot in
``<prefix>_leases.slots``, claimed with a lightweight transaction (Paxos, SERIAL consistency):

* ``holder`` is written with a TTL (:data:`LEASE_TTL`) and refreshed by a heartbeat thread; a run that
  is killed stops refreshing it, so its slot is free again once the TTL has run out;
* ``state`` (no TTL) says how the last holder left the keyspace, in the words of leases.py:
  ``clean <fingerprint> <tombstones>`` (the next holder uses it with no schema change) or
  ``busy <holder>`` (held, or its holder was killed or interrupted: the next holder recreates it).

The slot table logic is here; the CQL is in :class:`CqlSlots`, a fake in the unit tests.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from typing import Callable, Protocol

from pytest_celery_astra.cassandra.leases import KeyspaceLease, busy_state, read_state

LEASE_TTL = 60  # seconds a holder's claim lives without a heartbeat
HEARTBEAT_EVERY = LEASE_TTL / 4
MAX_SLOTS = 32
LOG = logging.getLogger("pytest_celery_astra.leases")


class Slots(Protocol):
    """The cluster-wide slot table: every method is one compare-and-set, or one serial read."""

    def claim(self, slot: int, holder: str, ttl: int) -> bool:
        """Make ``holder`` the holder of ``slot`` if nobody holds it (for ``ttl`` seconds)."""

    def state(self, slot: int) -> str | None:
        """What the slot's last holder left (``state``), read at SERIAL consistency."""

    def set_state(self, slot: int, holder: str, state: str) -> bool:
        """Write ``state`` while ``holder`` holds the slot."""

    def refresh(self, slot: int, holder: str, ttl: int) -> bool:
        """Renew ``holder``'s claim for ``ttl`` seconds; False once it has lost the slot."""

    def give_back(self, slot: int, holder: str, state: str) -> bool:
        """Write ``state`` and clear the holder, while ``holder`` holds the slot."""


@dataclasses.dataclass
class ClusterHolding:
    """A slot of the cluster, held by a claim with a TTL that a heartbeat thread renews (leases.py's
    ``Holding``): a killed run stops renewing it, and the slot is free once the TTL has run out."""

    slots: Slots = dataclasses.field(repr=False)
    slot: int
    holder: str
    keyspace: str  # for the warnings
    lost: bool = False  # the claim ran out without a heartbeat (a process paused for over LEASE_TTL)
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event, repr=False)
    _heartbeat: threading.Thread | None = dataclasses.field(default=None, repr=False)

    def start_heartbeat(self, every: float = HEARTBEAT_EVERY, ttl: int = LEASE_TTL) -> None:
        self._heartbeat = threading.Thread(target=self._beat, args=(every, ttl), daemon=True,
                                           name=f"celery-astra-lease-{self.slot}")
        self._heartbeat.start()

    def _beat(self, every: float, ttl: int) -> None:
        while not self._stop.wait(every):
            try:
                if not self.slots.refresh(self.slot, self.holder, ttl):
                    self.lost = True
                    LOG.warning("pytest-celery-astra: the lease of keyspace %s ran out (this process did not renew "
                                "it within %s s); another run may take it", self.keyspace, ttl)
                    return
            except Exception as error:  # a node down, a timeout: the next beat tries again within the TTL
                LOG.debug("lease heartbeat of %s failed: %s", self.keyspace, error)

    def give_back(self, state: str | None) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        if self._heartbeat is not None:
            self._heartbeat.join(timeout=5)
        if self.lost:
            return
        try:
            self.slots.give_back(self.slot, self.holder, busy_state(self.holder) if state is None else state)
        except Exception as error:  # the claim runs out by itself; the state stays "busy"
            LOG.warning("pytest-celery-astra: could not give back the lease of keyspace %s (%s); it is free again "
                        "within %s s", self.keyspace, error, LEASE_TTL)


def acquire(slots: Slots, fingerprint: str, keyspace_for: Callable[[int], str], holder: str,
            max_slots: int = MAX_SLOTS, ttl: int = LEASE_TTL) -> KeyspaceLease | None:
    """The first slot nobody holds, claimed for ``holder`` (state set to busy, heartbeat started), or
    None when all ``max_slots`` are held: the run then makes a keyspace of its own."""
    for slot in range(max_slots):
        if not slots.claim(slot, holder, ttl):
            continue
        left = read_state(slots.state(slot), fingerprint)
        if not slots.set_state(slot, holder, busy_state(holder)):
            continue  # lost between the two (only after a pause over the TTL)
        holding = ClusterHolding(slots, slot, holder, keyspace_for(slot))
        holding.start_heartbeat(ttl=ttl)
        return KeyspaceLease(slot, holding.keyspace, fingerprint, left, holding)
    return None


CAS_WRITE_UNKNOWN = 0x1700  # Cassandra 4+'s error code; the driver has no class for it
SERIAL_READ_ATTEMPTS = 5


def outcome_unknown(error: BaseException) -> bool:
    """A lightweight transaction whose outcome Cassandra could not tell: a write timeout, or CAS_WRITE_UNKNOWN."""
    from cassandra import WriteTimeout

    return isinstance(error, WriteTimeout) or getattr(error, "code", None) == CAS_WRITE_UNKNOWN


class CqlSlots:
    """:class:`Slots` in table ``<keyspace>.slots`` through a driver Session: lightweight transactions at
    SERIAL consistency, their commits at the run's write consistency."""

    TABLE_CQL = "CREATE TABLE IF NOT EXISTS {keyspace}.slots (slot int PRIMARY KEY, holder text, state text)"

    def __init__(self, session, keyspace: str, write_consistency: int):
        from cassandra import ConsistencyLevel
        from cassandra.query import SimpleStatement

        def lwt(cql: str):
            return session.prepare(cql.format(keyspace=keyspace))

        self._session = session
        self._claim = lwt("UPDATE {keyspace}.slots USING TTL ? SET holder = ? WHERE slot = ? IF holder = null")
        self._refresh = lwt("UPDATE {keyspace}.slots USING TTL ? SET holder = ? WHERE slot = ? IF holder = ?")
        self._set_state = lwt("UPDATE {keyspace}.slots SET state = ? WHERE slot = ? IF holder = ?")
        self._give_back = lwt("UPDATE {keyspace}.slots SET state = ?, holder = null WHERE slot = ? IF holder = ?")
        for statement in (self._claim, self._refresh, self._set_state, self._give_back):
            statement.consistency_level = write_consistency
            statement.serial_consistency_level = ConsistencyLevel.SERIAL
        self._read = SimpleStatement(f"SELECT state FROM {keyspace}.slots WHERE slot = %s",
                                     consistency_level=ConsistencyLevel.SERIAL)
        self._read_row = SimpleStatement(f"SELECT holder, state FROM {keyspace}.slots WHERE slot = %s",
                                         consistency_level=ConsistencyLevel.SERIAL)

    def _applied(self, statement, values, slot: int, landed: Callable[[str | None, str | None], bool],
                 timeout_means_no: bool = True) -> bool:
        """Whether the compare-and-set applied. When Cassandra cannot say (a write timeout, or Cassandra 4's
        "CAS operation result is unknown": the proposal reached fewer than a quorum of replicas, as on a
        loaded multi-node cluster), a read at SERIAL consistency finishes that Paxos round and shows whether
        it ``landed`` (the row's holder and state then); if that read fails too, False (or the first error,
        with ``timeout_means_no`` off: the heartbeat tries again)."""
        try:
            return bool(self._session.execute(statement, values, timeout=30).was_applied)
        except Exception as error:
            if not outcome_unknown(error):
                raise
            try:
                row = self._serial_read(self._read_row, slot)
            except Exception:  # noqa: BLE001 - not known to be ours
                if timeout_means_no:
                    return False
                raise error from None
            return landed(row.holder if row is not None else None, row.state if row is not None else None)

    def claim(self, slot: int, holder: str, ttl: int) -> bool:
        return self._applied(self._claim, (ttl, holder, slot), slot, lambda now, _: now == holder)

    def _serial_read(self, statement, slot: int):
        """The slot's row, read at SERIAL consistency. Such a read finishes any Paxos round in progress on the row,
        and on a loaded cluster that round can end "CAS operation result is unknown" as a write does (seen in a
        full local run, 2026-12-06, on the 3-node cluster): a read changes nothing, so it is asked again."""
        for attempt in range(SERIAL_READ_ATTEMPTS):
            try:
                return self._session.execute(statement, (slot,), timeout=30).one()
            except Exception as error:
                if not outcome_unknown(error) or attempt == SERIAL_READ_ATTEMPTS - 1:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def state(self, slot: int) -> str | None:
        row = self._serial_read(self._read, slot)
        return row.state if row is not None else None

    def set_state(self, slot: int, holder: str, state: str) -> bool:
        return self._applied(self._set_state, (state, slot, holder), slot,
                             lambda now, left: now == holder and left == state)

    def refresh(self, slot: int, holder: str, ttl: int) -> bool:
        # A timeout is not a lost claim: the heartbeat tries again.
        return self._applied(self._refresh, (ttl, holder, slot, holder), slot, lambda now, _: now == holder,
                             timeout_means_no=False)

    def give_back(self, slot: int, holder: str, state: str) -> bool:
        return self._applied(self._give_back, (state, slot, holder), slot,
                             lambda now, left: now is None and left == state)
