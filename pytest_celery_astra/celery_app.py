"""Wire a Celery app (the user's own, or a fresh one) to the test broker and Cassandra; its broker
connections: closed and forgotten after, a worker's queues purged between tests."""

from __future__ import annotations

import importlib
import threading
import time
import traceback
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from celery import Celery

from pytest_celery_astra.cassandra.app_state import state_of
from pytest_celery_astra.internals import (
    backend_cluster,
    cached_backend,
    close_app_pool,
    forget_cached_backend,
    forget_pools,
)
from pytest_celery_astra.masking import MaskedUrl

# The backend is named, not imported: importing it loads cassandra-driver (slow).
BACKEND_PATH = "pytest_celery_astra.cassandra.backend:TestCassandraBackend"
# Broker transport options the user's own setting keeps over the plugin's default (configure_app).
USER_TRANSPORT_OPTIONS = ("socket_connect_timeout",)


def load_app(reference: str | None) -> Celery:
    """The user's app named ``module:attribute``, or a fresh app when None.

    Every way this can go wrong is one sentence (an ImportError) naming the setting.
    """
    from celery import Celery  # imported on use: the plugin stays cheap to import

    if reference is None:
        return Celery("celery_astra")
    module_name, _, attribute = reference.partition(":")
    fix = "fix --celery-astra-app (ini celery_astra_app, env CELERY_ASTRA_APP)"
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ImportError(
            f"pytest-celery-astra: cannot import module {module_name!r} of --celery-astra-app {reference!r} "
            f"({error}); {fix}, or add its directory to pytest's pythonpath ini option.") from None
    except Exception as error:  # the user's module itself fails at import: say where, in one line
        raise ImportError(
            f"pytest-celery-astra: importing module {module_name!r} of --celery-astra-app {reference!r} raised "
            f"{type(error).__name__}: {_first_line(error)}{_where(error)}; fix the module or {fix}.") from None
    if not hasattr(module, attribute):
        raise ImportError(
            f"pytest-celery-astra: module {module_name!r} has no attribute {attribute!r} "
            f"(--celery-astra-app {reference!r}); {fix} to name the attribute that holds Celery(...).")
    app = getattr(module, attribute)
    if not isinstance(app, Celery):
        raise ImportError(
            f"pytest-celery-astra: {reference!r} (--celery-astra-app) is not a Celery app "
            f"(found {type(app).__name__}); {fix} to name the attribute that holds Celery(...).")
    return app


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else "(no message)"


def _where(error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" at {last.filename}:{last.lineno}"


def configure_app(app: Celery, broker_url: str, broker_transport_options: dict, cassandra_settings: dict,
                  keyspace: str, table: str, read_consistency: str, write_consistency: str,
                  poll_interval: float) -> Celery:
    """Point ``app`` at the test services; every other setting of the user's is kept (of the broker's transport
    options, the plugin's isolation ones win; a connect timeout the user set is kept)."""
    users = app.conf.broker_transport_options or {}
    app.conf.update(
        broker_url=MaskedUrl(broker_url),  # a str to kombu; its repr (logs, tracebacks) hides the password
        broker_transport_options={**users, **broker_transport_options,
                                  **{key: users[key] for key in USER_TRANSPORT_OPTIONS if key in users}},
        result_backend=BACKEND_PATH,
        cassandra_keyspace=keyspace,
        cassandra_table=table,
        cassandra_read_consistency=read_consistency,
        cassandra_write_consistency=write_consistency,
        celery_astra_result_poll_interval=poll_interval,
        task_always_eager=False,
        **{**cassandra_settings, "cassandra_options": {
            **cassandra_settings.get("cassandra_options", {}), **(app.conf.get("cassandra_options") or {})}},
    )
    # An app imported before the fixture ran may already hold a backend built from its production settings;
    # dropped, the next use builds ours.
    forget_cached_backend(app)
    forget_pools(app)  # a pool cached since the last broker was closed belongs to that broker
    return app


def connect_backend_in_background(app: Celery) -> None:
    """Open the result backend's connection (Celery's own Cluster and statements) in a thread.

    It then overlaps the embedded worker's start instead of delaying the first task's result by a
    connect (~50 ms). A failure here is left to the first real use, which raises it as Celery would."""
    backend = app.backend  # Celery keeps a thread-safe backend for the whole app: the same object later
    connect = getattr(backend, "_get_connection", None)
    if connect is None:
        return

    def run() -> None:
        try:
            connect()
        except Exception:  # noqa: BLE001 - the worker's or the test's own call reports it
            pass

    thread = threading.Thread(target=run, name="celery-astra-backend-connect", daemon=True)
    thread.start()
    state_of(app).backend_connecting = thread


def wait_for_backend_connection(app: Celery, timeout: float) -> None:
    """Until the result backend has its connection: the background connect of
    :func:`connect_backend_in_background` has ended, and when it failed (a first connect to a node that has
    just started can time out on a loaded machine) it is made again now, within ``timeout``. A fault made
    before would meet a worker whose backend has no connection yet, which a worker in production, having
    stored results before, has."""
    from pytest_celery_astra.cassandra.backend import TestCassandraBackend  # the driver, only when asked

    deadline = time.monotonic() + timeout
    connecting = state_of(app).backend_connecting
    if connecting is not None:
        connecting.join(timeout)
    backend = app.backend
    if not isinstance(backend, TestCassandraBackend):
        return
    while not backend.has_connection():
        try:
            backend.connect()
        except Exception:  # noqa: BLE001 - tried again until the deadline; then the test's own use raises it
            if time.monotonic() > deadline:
                return
            time.sleep(0.2)


def close_backend(app: Celery) -> None:
    """Shut down the Cluster Celery's Cassandra backend opened; Celery never does."""
    state = state_of(app)
    connecting = state.backend_connecting
    if connecting is not None:
        connecting.join(60)  # a connect gives up by itself well before (driver timeouts)
        state.backend_connecting = None
    cluster = backend_cluster(cached_backend(app))
    if cluster is not None:
        cluster.shutdown()
    forget_cached_backend(app)


def close_broker_pools(app: Celery) -> None:
    """Close the app's broker connections and forget its pools: set up again (the next broker of
    --celery-astra-broker-kind rabbitmq,redis), the app then connects to its new broker URL."""
    # The closed pool also leaves kombu's registry: a later use of the same broker (a worker process's stop
    # pinging it after the app fixture closed it) would otherwise get it back and cache it on the app
    # ("Acquire on closed pool" for every later broker operation, also on the next broker).
    close_app_pool(app)
    forget_pools(app)


def purge_queues(app: Celery, queues: list[str]) -> int:
    """Drop the messages waiting in ``queues`` on ``app``'s broker (a worker's, between tests); how many."""
    dropped = 0
    with app.connection_for_write() as connection:
        for queue in queues:
            try:
                dropped += int(connection.default_channel.queue_purge(queue) or 0)
            except Exception:  # noqa: BLE001 - a queue nobody declared: nothing to purge
                connection.close()
    return dropped


def queue_depth(app: Celery, queue: str, timeout: float = 1.0) -> int | None:
    """How many messages wait in ``queue`` on ``app``'s broker, or None when it cannot be told within about
    ``timeout`` seconds (the broker down, a queue never declared). Connects once: no retry."""
    try:
        with app.connection_for_write(connect_timeout=timeout) as connection:
            connection.ensure_connection(max_retries=0, timeout=timeout)
            channel = connection.channel()
            try:
                # Redis keeps no key for an empty queue: a passive declare of it would fail.
                redis = connection.transport.driver_type == "redis"
                return int(channel.queue_declare(queue, passive=not redis).message_count)
            finally:
                channel.close()
    except Exception:  # noqa: BLE001 - a fact the caller leaves out, never an error of its own
        return None
