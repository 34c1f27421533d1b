"""After a fault: wait until the run's Cassandra sessions, result backends (a worker process's children's
too) and embedded workers work again, so that the next test starts healthy; one sentence if they do not
within the timeout."""

from __future__ import annotations

import time
import uuid

import pytest

from pytest_celery_astra.containers.faults import retry_until
from pytest_celery_astra.run import registry

# After Cassandra answers again: time for a reconnected Cluster to open its connection pool.
POOL_MARGIN = 0.5


def wait_until_recovered(config: pytest.Config, timeout: float, workers: bool = False,
                         reconnected: bool = False) -> None:
    """Each session answers a query and its control connection a schema refresh, each worker's result
    backend a read (a worker process's: each child's); with ``workers``, each embedded worker also runs a
    task (Celery's built-in ``celery.accumulate``) end to end. With ``reconnected`` (Cassandra has just come
    back), it also lets one reconnection interval pass: the app's own Clusters built from its
    ``cassandra_options`` (in worker processes' children too) have tried again by then."""
    back = time.monotonic()
    deadline = back + timeout
    for name, database in list(config.stash.get(registry.DATABASES_KEY, {}).items()):
        if database.session is not None:
            _retry(f"the Cassandra session of {name}", deadline, timeout,
                   lambda db=database: db.session.execute("SELECT release_version FROM system.local", timeout=2))
            # The driver's control connection (schema metadata, used by create_table) reconnects apart.
            _retry(f"the Cassandra control connection of {name}", deadline, timeout,
                   lambda db=database: db.cluster.refresh_keyspace_metadata(db.keyspace))
    running_now: list = config.stash.get(registry.RUNNING_WORKERS_KEY, [])
    running = list(running_now)
    for embedded in running:
        probe_id = f"celery-astra-recovery-{uuid.uuid4().hex}"
        _retry(f"the result backend of {embedded.app.main}", deadline, timeout,
               lambda app=embedded.app, probe_id=probe_id: app.backend.get_task_meta(probe_id, cache=False))
        probe_backends = getattr(embedded, "probe_backends", None)  # a worker process: its children's backends
        if probe_backends is not None and reconnected:  # only Cassandra coming back makes them reconnect
            _retry(f"the result backends of the worker process {embedded.hostname}", deadline, timeout,
                   lambda probe=probe_backends: probe(max(deadline - time.monotonic(), 1.0)))
    if reconnected:
        from pytest_celery_astra.cassandra.target import RECONNECT_EVERY

        time.sleep(max(0.0, back + RECONNECT_EVERY + POOL_MARGIN - time.monotonic()))
    if not workers:
        return
    for embedded in running:
        embedded.check()
        accumulate = embedded.app.tasks["celery.accumulate"]

        def round_trip(app=embedded.app, task=accumulate) -> None:
            left = max(deadline - time.monotonic(), 0.5)
            task.apply_async(("ok",), queue=app.conf.task_default_queue).get(timeout=min(left, 10))

        _retry(f"the embedded worker {embedded.hostname}", deadline, timeout, round_trip)


def _retry(what: str, deadline: float, timeout: float, attempt) -> None:
    retry_until(deadline, attempt, lambda error: (
        f"pytest-celery-astra: {what} did not recover within {timeout:g} s after the fault "
        f"({str(error).splitlines()[0][:200]}); the next tests would fail, so this one does."), pause=0.2)


def restart_workers_on_old_kombu(config: pytest.Config) -> None:
    """kombu before 5.4 stops consuming from a Redis that was restarted, a while after the reconnect
    (celery#8091, fixed by kombu#2007 in 5.4.0): the worker answers the recovery check, then goes deaf.
    There, the embedded workers are started afresh once their Redis is back, so later tests are unaffected."""
    import kombu

    if tuple(int(part) for part in kombu.__version__.split(".")[:2] if part.isdigit()) >= (5, 4):
        return
    for worker in config.stash.get(registry.RUNNING_WORKERS_KEY, []):
        if worker.in_this_process:
            worker.stop()
            worker.start()
