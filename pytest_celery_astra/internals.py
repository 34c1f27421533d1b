"""Every touch of Celery's, kombu's and cassandra-driver's private names, in one place.

The plugin needs a few things those libraries do not offer publicly: forgetting an app's cached backend
and broker pools when the fixture rewires it, cancelling the embedded worker's held (ETA) tasks, knowing
when Celery's test worker has started, switching a driver Cluster's rows to tuples. Each is one function
here, named for what it does; the rest of the plugin calls these and never a private name.
``tests/unit/test_internals_contract.py`` checks every name below against the installed releases (the
lowest and the latest sessions run it), so an upstream change fails there, in one place, first. At run
time a name that is gone is not an error: each function then does what Celery would without the plugin's
shortcut (the app builds its backend and pools as it always does, rows stay the driver's named tuples).

Subclass internals are the exception: :class:`~pytest_celery_astra.cassandra.backend.TestCassandraBackend`
extends Celery's ``CassandraBackend`` and uses its attributes (``_session``, ``_cluster``, ``_read_stmt``,
``_write_stmt``, ``_table_created``, ``_get_connection``) as a subclass does, and puts a view of the driver
Session in ``_session`` so that Celery's own statements and decoding run; the contract test names them too.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

# Names the contract test checks, by owner: what this module (and the backend subclass) relies on.
CELERY_APP_PRIVATE = ("_backend_cache", "_local", "_pool")
CELERY_AMQP_PRIVATE = ("_producer_pool",)
CELERY_BACKEND_PRIVATE = ("_session", "_cluster", "_read_stmt", "_write_stmt", "_get_connection")
CELERY_CONSUMER_PRIVATE = ("_limit_post_eta",)
TEST_WORKER_PRIVATE = ("_on_started",)
CELERY_RESULT_PRIVATE = ("_set_task_join_will_block",)
CELERY_LOGGING_PRIVATE = ("_setup",)
# Public names of a module Celery documents as internal: the embedded worker's requests and shutdown flag.
WORKER_STATE_NAMES = ("active_requests", "reserved_requests", "should_terminate")
DRIVER_CLUSTER_PRIVATE = ("_config_mode",)


def forget_cached_backend(app: Any) -> None:
    """Drop the backend an app built from earlier settings (Celery caches it, per thread too)."""
    if hasattr(app, "_backend_cache"):
        app._backend_cache = None
    if hasattr(app, "_local"):
        app._local = threading.local()


def cached_backend(app: Any) -> Any:
    """The app's backend if it has made one, without making it."""
    return getattr(app, "_backend_cache", None)


def backend_cluster(backend: Any) -> Any:
    """The driver Cluster Celery's Cassandra backend opened, or None."""
    return getattr(backend, "_cluster", None)


def close_app_pool(app: Any) -> None:
    """Close the app's broker connection pool and drop it from kombu's process-wide registry, where
    ``app.pool`` would find it again by the broker connection's identity."""
    pool = getattr(app, "_pool", None)
    if pool is None:
        return
    pool.force_close_all()
    from kombu import pools

    for group in (pools.connections, pools.producers):
        for key, value in list(group.items()):
            if value is pool or getattr(value, "connections", None) is pool:
                group.pop(key, None)


def forget_pools(app: Any) -> None:
    """Forget the app's broker pools, its producer pool and its remote control (whose mailbox caches a
    producer pool: kombu's ``Mailbox.producer_pool`` is a cached property that Celery drops only after a
    fork), so the next use connects to the app's current broker URL."""
    if hasattr(app, "_pool"):
        app._pool = None
    if "amqp" in app.__dict__ and hasattr(app.amqp, "_producer_pool"):  # a cached_property: only when made
        app.amqp._producer_pool = None
    app.__dict__.pop("control", None)


def forget_router(app: Any) -> None:
    """Celery reads ``task_routes`` once into a router it keeps: make it read them again."""
    app.amqp.flush_routes()
    app.amqp.__dict__.pop("router", None)


def held_task_handlers(consumer: Any) -> tuple[Callable, ...]:
    """The functions a worker's timer entries call for tasks held for an ETA or countdown (rate limits)."""
    limited = getattr(consumer, "_limit_post_eta", None)
    return (consumer.apply_eta_task.__func__, *((limited.__func__,) if limited is not None else ()))


def allow_joining_results() -> None:
    """Starting a worker marks the process as a worker, where ``AsyncResult.get()`` is refused; the tests
    run in another thread than the embedded worker and must be allowed to wait."""
    try:
        from celery.result import _set_task_join_will_block
    except ImportError:  # gone: nothing marks the process as a worker to lift
        return
    _set_task_join_will_block(False)


def set_up_app_logging(app: Any, loglevel: str, logfile: str | None) -> None:
    """Configure ``app``'s logging at ``loglevel`` into ``logfile``, as Celery's ``start_worker`` does: its
    once-per-process guard (a class attribute) is lifted first, else an earlier setup makes this a no-op."""
    if hasattr(type(app.log), "_setup"):
        type(app.log)._setup = False
    app.log.setup(loglevel=loglevel, logfile=logfile)


def worker_controller_started(controller: Any) -> threading.Event:
    """Set once Celery's ``TestWorkController`` has started its consumer."""
    return controller._on_started


def cluster_uses_profiles(cluster: Any) -> bool:
    """Whether a driver Cluster was configured with execution profiles (else with legacy session options)."""
    try:
        from cassandra.cluster import _ConfigMode
    except ImportError:  # then the profile is changed, and a legacy Cluster keeps named tuples: still correct
        return True
    return getattr(cluster, "_config_mode", _ConfigMode.PROFILES) == _ConfigMode.PROFILES

