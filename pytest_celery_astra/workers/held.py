"""Tasks a worker holds for their ETA or countdown, dropped once the test that sent them is over.

They were received (so no queue purge reaches them) but have not started; left alone they would run — or,
revoked, be recorded REVOKED by Celery at their ETA — and write a row during a later test. Dropped here,
they never run and write nothing; their messages are acknowledged. The thread worker calls
:func:`drop_held_tasks` in its own thread; a worker process runs it in its consumer on the remote-control
command :data:`DROP_HELD_COMMAND` (registered by ``workers/process_app.py``), whose reply is the list.
"""

from __future__ import annotations

from pytest_celery_astra.internals import held_task_handlers

DROP_HELD_COMMAND = "celery_astra_drop_held"


def drop_held_tasks(consumer) -> list[str]:
    """In the consumer's thread: cancel every task waiting in the worker's timer; returns their ids."""
    if consumer is None or consumer.timer is None:
        return []
    held = held_task_handlers(consumer)
    dropped = []
    for entry in consumer.timer.queue:  # a snapshot: (eta, priority, entry)
        entry = entry[2]
        if entry.canceled or getattr(entry.fun, "__func__", None) not in held:
            continue
        entry.cancel()
        request = entry.args[0]
        try:
            request.acknowledge()
        except Exception:  # noqa: BLE001 - a connection already gone: the message goes with it
            pass
        consumer.qos.decrement_eventually()
        dropped.append(request.id)
    return dropped
