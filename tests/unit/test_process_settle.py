"""ProcessWorker.settle: idle is believed only after two rounds in a row whose purge found nothing (a prefork
child publishes a chain's next link or a retry before the main process hears its task finished)."""

from celery import Celery

from pytest_celery_astra.workers import process


class AliveProcess:
    def poll(self):
        return None


def settled_worker(monkeypatch, purged: list[int], idle: list[bool]):
    worker = process.ProcessWorker(Celery("settle", set_as_current=False), wiring=None, hostname="w@here")
    worker.process = AliveProcess()
    purges, rounds = iter(purged), iter(idle)
    calls = {"purge": 0, "idle": 0}

    def purge(app, queues):
        calls["purge"] += 1
        return next(purges)

    def idle_once(timeout):
        calls["idle"] += 1
        return next(rounds)

    monkeypatch.setattr(process, "purge_queues", purge)
    monkeypatch.setattr(worker, "_idle_once", idle_once)
    return worker, calls


def test_a_message_found_after_idle_starts_the_count_again(monkeypatch):
    # first purge; idle, the purge finds a chain's next link; idle, nothing; idle, nothing: settled.
    worker, calls = settled_worker(monkeypatch, purged=[0, 1, 0, 0], idle=[True, True, True])
    assert worker.settle(5.0) is True
    assert calls == {"purge": 4, "idle": 3}


def test_idle_twice_with_nothing_purged_is_settled(monkeypatch):
    worker, calls = settled_worker(monkeypatch, purged=[3, 0, 0], idle=[True, True])
    assert worker.settle(5.0) is True
    assert calls == {"purge": 3, "idle": 2}


def test_a_worker_that_never_idles_is_not_settled(monkeypatch):
    worker, calls = settled_worker(monkeypatch, purged=[0], idle=[False])
    assert worker.settle(5.0) is False
    assert calls == {"purge": 1, "idle": 1}


class Settles:
    def __init__(self, name, calls, settled=True):
        self.name, self.calls, self.settled = name, calls, settled

    def settle(self, timeout):
        self.calls.append(self.name)
        return self.settled


def test_with_both_kinds_the_threads_settle_again_after_the_processes():
    """A thread worker may take what a worker process's last task sent on while that process settles."""
    from pytest_celery_astra.run.per_test import settle_in_order

    calls = []
    thread, worker_process = Settles("thread", calls), Settles("process", calls)
    assert settle_in_order([thread], [worker_process], lambda: [w for w in [thread] if not w.settle(1)], 1) == []
    assert calls == ["thread", "process", "thread"]


def test_with_one_kind_each_worker_settles_once():
    from pytest_celery_astra.run.per_test import settle_in_order

    calls = []
    thread = Settles("thread", calls)
    assert settle_in_order([thread], [], lambda: [w for w in [thread] if not w.settle(1)], 1) == []
    worker_process = Settles("process", calls, settled=False)
    assert settle_in_order([], [worker_process], lambda: [], 1) == [worker_process]
    assert calls == ["thread", "process"]
