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
