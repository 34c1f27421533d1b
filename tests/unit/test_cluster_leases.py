"""Cluster-wide keyspace leases (cluster_leases.py) against an in-memory slot table with a clock: one holder
per slot, a killed holder's claim runs out, a renewed one does not, and the state decides the next start."""

import threading

import pytest

from pytest_celery_astra.cassandra import cluster_leases
from pytest_celery_astra.cassandra.leases import clean_state


class FakeSlots:
    """The compare-and-set semantics of the CQL table: a holder cell with a TTL, a state cell without."""

    def __init__(self):
        self.now = 0.0
        self.rows = {}  # slot -> {"holder": (name, expires), "state": text}
        self.lock = threading.Lock()
        self.refreshed = threading.Event()

    def _holder(self, slot):
        holder = self.rows.get(slot, {}).get("holder")
        return holder[0] if holder and holder[1] > self.now else None

    def claim(self, slot, holder, ttl):
        with self.lock:
            if self._holder(slot) is not None:
                return False
            self.rows.setdefault(slot, {})["holder"] = (holder, self.now + ttl)
            return True

    def state(self, slot):
        return self.rows.get(slot, {}).get("state")

    def set_state(self, slot, holder, state):
        with self.lock:
            if self._holder(slot) != holder:
                return False
            self.rows[slot]["state"] = state
            return True

    def refresh(self, slot, holder, ttl):
        with self.lock:
            if self._holder(slot) != holder:
                return False
            self.rows[slot]["holder"] = (holder, self.now + ttl)
            self.refreshed.set()
            return True

    def give_back(self, slot, holder, state):
        with self.lock:
            if self._holder(slot) != holder:
                return False
            self.rows[slot] = {"state": state}
            return True


def take(slots, holder, fingerprint="f1", **kwargs):
    lease = cluster_leases.acquire(slots, fingerprint, lambda slot: f"celery_astra_kept_{slot}", holder, **kwargs)
    if lease is not None:
        lease.holding._stop.set()  # no heartbeat thread unless a test starts one
    return lease


def test_a_held_slot_is_not_given_twice_and_a_clean_one_is_used_as_it_is():
    slots = FakeSlots()
    first, second = take(slots, "a"), take(slots, "b")
    assert (first.slot, first.keyspace, second.slot) == (0, "celery_astra_kept_0", 1)
    assert slots.state(0) == "busy a" and not first.left.clean
    first.holding._stop.clear()
    first.release(clean=True, tombstones=7)
    assert slots.state(0) == clean_state("f1", 7) and slots._holder(0) is None
    again = take(slots, "c")
    assert (again.slot, again.left.clean, again.left.tombstones) == (0, True, 7)


def test_a_slot_left_busy_or_with_another_schema_is_recreated():
    slots = FakeSlots()
    lease = take(slots, "a")
    lease.holding._stop.clear()
    lease.release(clean=False)                 # interrupted: the slot is free, its keyspace is not clean
    assert slots._holder(0) is None and slots.state(0) == "busy a"
    assert not take(slots, "b").left.clean
    slots.rows[1] = {"state": clean_state("f1", 0)}
    assert not take(slots, "c", fingerprint="f2").left.clean   # left clean, another schema/replication


def test_a_killed_holders_claim_runs_out_and_its_slot_is_taken_again_dirty():
    slots = FakeSlots()
    take(slots, "killed", ttl=60)              # never renewed, never given back
    slots.now = 59
    assert take(slots, "early").slot == 1
    slots.now = 61
    after = take(slots, "after")
    assert (after.slot, after.left.clean) == (0, False)


def test_every_slot_held_means_no_lease():
    slots = FakeSlots()
    assert [take(slots, f"h{i}", max_slots=2).slot for i in range(2)] == [0, 1]
    assert take(slots, "third", max_slots=2) is None


def test_the_heartbeat_keeps_the_claim_and_release_stops_it():
    slots = FakeSlots()
    lease = cluster_leases.acquire(slots, "f1", str, "a", ttl=60)
    lease.holding._stop.set()
    lease.holding._heartbeat.join()
    lease.holding._stop.clear()
    lease.holding.start_heartbeat(every=0.01, ttl=60)
    assert slots.refreshed.wait(10)
    slots.now = 100                             # past the first claim's TTL, but renewed meanwhile?
    with slots.lock:
        slots.rows[0]["holder"] = ("a", 160)    # what the last beat wrote at now = 100
    assert take(slots, "b").slot == 1
    lease.release(clean=True)
    assert not lease.holding._heartbeat.is_alive() and slots._holder(0) is None


def test_a_lost_claim_is_not_given_back_over_the_new_holder():
    slots = FakeSlots()
    lease = cluster_leases.acquire(slots, "f1", str, "a", ttl=60)
    lease.holding._stop.set()
    lease.holding._heartbeat.join()
    slots.now = 61                              # paused past the TTL: someone else took it
    assert take(slots, "b").slot == 0
    lease.holding._stop.clear()
    lease.holding.start_heartbeat(every=0.01, ttl=60)
    lease.holding._heartbeat.join(10)
    assert lease.holding.lost
    lease.release(clean=True)
    assert slots._holder(0) == "b" and slots.state(0) == "busy b"


class UnsureSession:
    """A driver Session whose compare-and-sets end in Cassandra 4's "CAS operation result is unknown" (seen in
    a full local run, 2026-12-06, on the loaded 3-node cluster); ``landed`` says whether each proposal was in
    fact accepted, which the SERIAL read after it shows. ``read_fails`` makes that read time out too."""

    def __init__(self, landed, read_fails=False):
        self.landed, self.read_fails, self.row = landed, read_fails, None

    def prepare(self, cql):
        return type("Prepared", (), {"cql": cql})()

    def execute(self, statement, values, timeout=None):
        from cassandra import ReadTimeout
        from cassandra.protocol import ErrorMessage

        if "SELECT holder" in getattr(statement, "query_string", ""):
            if self.read_fails:
                raise ReadTimeout("serial read timed out")
            return type("Rows", (), {"one": lambda _: self.row})()
        if self.landed:
            self.row = type("Row", (), {"holder": values[1] if "TTL" in statement.cql else None,
                                        "state": None if "TTL" in statement.cql else values[0]})()
        raise ErrorMessage(0x1700, "CAS operation result is unknown - proposal accepted by 1 but not a quorum.", None)


def test_a_claim_whose_outcome_cassandra_could_not_tell_is_settled_by_a_serial_read():
    assert cluster_leases.CqlSlots(UnsureSession(landed=True), "leases", 1).claim(0, "run-a", 60) is True
    assert cluster_leases.CqlSlots(UnsureSession(landed=False), "leases", 1).claim(0, "run-a", 60) is False
    # Not known either way: not ours (the claim, if it landed, runs out after its TTL)
    assert cluster_leases.CqlSlots(UnsureSession(landed=True, read_fails=True), "leases", 1).claim(0, "a", 60) is False
    assert cluster_leases.CqlSlots(UnsureSession(landed=True), "leases", 1).give_back(0, "run-a", "clean f1 0") is True


def test_any_other_error_of_a_compare_and_set_is_raised():
    from cassandra.protocol import ErrorMessage

    class Broken(UnsureSession):
        def execute(self, statement, values, timeout=None):
            raise ErrorMessage(0x2200, "invalid query", None)

    with pytest.raises(ErrorMessage, match="invalid query"):
        cluster_leases.CqlSlots(Broken(landed=False), "leases", 1).claim(0, "run-a", 60)


def test_a_serial_read_that_ends_in_an_unknown_paxos_outcome_is_asked_again():
    from cassandra.protocol import ErrorMessage

    class FinishingRounds(UnsureSession):
        """The SERIAL read finishes an unsure Paxos round twice ("CAS operation result is unknown"), then answers."""

        def __init__(self):
            super().__init__(landed=True)
            self.unknown_left = 2

        def execute(self, statement, values, timeout=None):
            if "SELECT state" in getattr(statement, "query_string", ""):
                if self.unknown_left:
                    self.unknown_left -= 1
                    raise ErrorMessage(0x1700, "CAS operation result is unknown - proposal accepted by 1 but not a "
                                               "quorum.", None)
                return type("Rows", (), {"one": lambda _: type("Row", (), {"state": "clean f1 0"})()})()
            return super().execute(statement, values, timeout)

    session = FinishingRounds()
    assert cluster_leases.CqlSlots(session, "leases", 1).state(0) == "clean f1 0"
    assert session.unknown_left == 0

    class NeverSure(FinishingRounds):
        def __init__(self):
            super().__init__()
            self.unknown_left = 99

    with pytest.raises(ErrorMessage, match="CAS operation result is unknown"):
        cluster_leases.CqlSlots(NeverSure(), "leases", 1).state(0)
