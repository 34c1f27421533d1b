"""Keyspace leases (leases.py): one holder per slot, and what the last holder left decides the next one's start."""

import subprocess
import sys
import tempfile

import pytest

from pytest_celery_astra.cassandra import leases

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="leases need flock")


@pytest.fixture(autouse=True)
def lease_dir(tmp_path, monkeypatch):
    """TMPDIR changed for the test (tempfile caches the temp directory: the cache is reset too)."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return tmp_path / "pytest-celery-astra-leases"


def test_the_lease_directory_follows_the_temp_directory(lease_dir, tmp_path, monkeypatch):
    assert leases.lease_dir() == lease_dir
    assert take().holding.handle.name.startswith(str(lease_dir))
    other = tmp_path / "other"
    other.mkdir()
    monkeypatch.setenv("TMPDIR", str(other))
    monkeypatch.setattr(tempfile, "tempdir", None)
    assert leases.lease_dir() == other / "pytest-celery-astra-leases"


def take(fingerprint="f1", container="c0ffee"):
    return leases.acquire(container, "celery_astra", fingerprint, lambda slot: f"celery_astra_kept_{slot}")


def test_a_held_slot_is_not_given_twice_and_a_released_one_is_given_again():
    first, second = take(), take()
    assert (first.slot, second.slot) == (0, 1)
    assert (first.keyspace, second.keyspace) == ("celery_astra_kept_0", "celery_astra_kept_1")
    first.release(clean=True, tombstones=7)
    again = take()
    assert (again.slot, again.left.clean, again.left.tombstones) == (0, True, 7)


def test_a_slot_left_unclean_or_with_another_schema_is_not_used_as_it_is():
    lease = take()
    lease.release(clean=False)
    busy = take()
    assert (busy.slot, busy.left.clean) == (0, False)   # "busy": its holder did not finish
    other = take("f2")                                  # slot 1, left clean with another schema
    assert other.slot == 1
    other.release(clean=True)
    again = take("f1")
    assert (again.slot, again.left.clean) == (1, False)


def test_slots_are_per_container_and_prefix():
    a, b = take(container="aaaa"), take(container="bbbb")
    assert a.slot == b.slot == 0


def test_a_killed_holder_releases_its_slot_and_leaves_it_busy(lease_dir):
    # A process that takes slot 0 and is killed: the kernel drops the lock; the state says "busy".
    # It inherits this test's TMPDIR, so it uses the same lease directory.
    code = ("import sys, os, signal; sys.path.insert(0, %r)\n"
            "from pytest_celery_astra.cassandra import leases\n"
            "assert str(leases.lease_dir()) == %r\n"
            "lease = leases.acquire('c0ffee', 'celery_astra', 'f1', str)\n"
            "assert lease.slot == 0\n"
            "os.kill(os.getpid(), signal.SIGKILL)\n") % (sys.path[0], str(lease_dir))
    finished = subprocess.run([sys.executable, "-c", code], timeout=60)
    assert finished.returncode == -9
    lease = take()
    assert (lease.slot, lease.left.clean) == (0, False)


def test_no_free_slot_means_no_lease(monkeypatch):
    monkeypatch.setattr(leases, "MAX_SLOTS", 2)
    held = [take(), take()]
    assert take() is None
    held[0].release(clean=True)
    assert take().slot == 0
