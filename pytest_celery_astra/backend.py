"""Celery's Cassandra result backend, waiting faster and aware of the embedded worker.

Storage is Celery's own ``CassandraBackend`` unchanged: same table, same schema,
same encoding. Two things differ, both about waiting in ``AsyncResult.get()``:

* Celery polls the table every 0.5 s (``get()`` passes ``interval=0.5``
  explicitly), which puts a 0.5 s floor under every test that waits for a
  result. Here the interval is capped by ``celery_astra_result_poll_interval``.
* Between polls it asks the embedded worker whether it is still alive, so a
  dead worker fails the test with its cause instead of hanging it.

The app fixture sets ``result_backend`` to this class; nothing changes for code
outside the tests.
"""

from __future__ import annotations

import time

from celery import states
from celery.backends.cassandra import CassandraBackend
from celery.exceptions import TimeoutError as CeleryTimeoutError


DEFAULT_POLL_INTERVAL = 0.01


class TestCassandraBackend(CassandraBackend):
    """Celery's Cassandra backend with a short poll interval and a worker health check."""

    __test__ = False

    def __init__(self, *args, port=None, **kwargs):
        super().__init__(*args, port=port, **kwargs)
        # celery 5.3 defaults ``port=9042`` and never reads ``cassandra_port``
        # (its __init__ ignores the setting): a container's mapped port would be ignored.
        self.port = port or self.app.conf.get("cassandra_port") or 9042
        # The driver's Session is thread-safe and the backend guards its own
        # set-up with a lock: one Cluster for the test and the worker thread
        # (Celery otherwise builds one per thread and never shuts them down).
        self.thread_safe = True

    def wait_for(self, task_id, timeout=None, interval=0.5, no_ack=True, on_interval=None):
        interval = min(interval, self.app.conf.get("celery_astra_result_poll_interval") or DEFAULT_POLL_INTERVAL)
        health_check = getattr(self.app, "celery_astra_health_check", None)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            meta = self.get_task_meta(task_id)
            if meta["status"] in states.READY_STATES:
                return meta
            if on_interval:
                on_interval()
            if health_check is not None:
                health_check()
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise CeleryTimeoutError("The operation timed out.")
            time.sleep(interval if remaining is None else min(interval, remaining))
