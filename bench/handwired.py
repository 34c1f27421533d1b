"""The baseline: the same test wired by hand with testcontainers and Celery's own test worker.

Run as a subprocess by ``bench/run.py`` (so its wall time includes imports and
teardown, like the plugin's pytest run)::

    python bench/handwired.py APP_DIR LABEL

It starts RabbitMQ and then Cassandra, one after the other (the way most
hand-written fixtures do it), creates the keyspace Celery's plain
``cassandra://`` backend needs, runs ``start_worker`` and sends one
``sortWords`` task. It prints one JSON line: when the first round trip passed
(``time.time()``, so the parent can subtract its own start time) and how long
each step took. Needs ``pika`` (RabbitMqContainer imports it) besides
testcontainers, celery and cassandra-driver.
"""

from __future__ import annotations

import json
import os
import sys
import time
import warnings

warnings.filterwarnings("ignore", category=DeprecationWarning)

try:  # testcontainers >= 4.9 moved the modules; the old paths still work but warn
    from testcontainers.community.cassandra import CassandraContainer
    from testcontainers.community.rabbitmq import RabbitMqContainer
except ImportError:  # pragma: no cover - older testcontainers
    from testcontainers.cassandra import CassandraContainer
    from testcontainers.rabbitmq import RabbitMqContainer

# The images the plugin would use, read from the same environment variables.
RABBITMQ_IMAGE = os.environ.get("CELERY_ASTRA_RABBITMQ_IMAGE", "rabbitmq:3.13")
CASSANDRA_IMAGE = os.environ.get("CELERY_ASTRA_CASSANDRA_IMAGE", "cassandra:5.0")
KEYSPACE = "handwired"
TABLE = "celery_results"


def main(app_dir: str, bench_label: str) -> None:
    steps: dict[str, float] = {}
    mark = time.monotonic()

    def step(name: str) -> None:
        nonlocal mark
        now = time.monotonic()
        steps[name] = round(now - mark, 3)
        mark = now

    labels = {"io.github.pytest-celery-astra.bench": bench_label}  # so run.py can always clean up
    # Same heap as the plugin's Cassandra (testcontainers' default is 1024M), so the
    # comparison is about wiring, not about JVM sizing.
    with RabbitMqContainer(RABBITMQ_IMAGE, labels=labels) as rabbitmq:
        step("rabbitmq_ready")
        with CassandraContainer(CASSANDRA_IMAGE, labels=labels).with_env("MAX_HEAP_SIZE", "512M") as cassandra:
            step("cassandra_ready")
            host, port = cassandra.get_contact_points()[0]
            create_keyspace(host, port)
            step("keyspace_created")
            first_pass = run_one_task(app_dir, rabbitmq, host, port, steps, step)
    step("containers_removed")
    print(json.dumps({"first_pass_at": first_pass, "steps": steps}), flush=True)


def create_keyspace(host: str, port: int) -> None:
    """Celery's plain backend creates neither the keyspace nor, before its first write, the table;
    a ``.get()`` that polls before the worker wrote fails with "table does not exist"."""
    from cassandra.cluster import Cluster
    from celery.backends.cassandra import Q_CREATE_RESULT_TABLE

    cluster = Cluster([host], port=port, protocol_version=5)
    try:
        session = cluster.connect()
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {KEYSPACE} WITH replication = "
            "{'class': 'SimpleStrategy', 'replication_factor': 1}")
        session.execute(Q_CREATE_RESULT_TABLE.format(table=f"{KEYSPACE}.{TABLE}"))
    finally:
        cluster.shutdown()


def run_one_task(app_dir, rabbitmq, host, port, steps, step) -> float:
    """Point the example app at the containers and send one task through ``start_worker``."""
    sys.path.insert(0, app_dir)
    from celery.contrib.testing.worker import start_worker

    from tasks import app, sortWords

    params = rabbitmq.get_connection_params()
    app.conf.update(
        broker_url=f"amqp://guest:guest@{params.host}:{params.port}//",
        result_backend="cassandra://",
        cassandra_servers=[host], cassandra_port=port, cassandra_keyspace=KEYSPACE,
        cassandra_table=TABLE, cassandra_secure_bundle_path=None,
        cassandra_auth_provider=None, cassandra_auth_kwargs=None,
        cassandra_options={"protocol_version": 5},
    )
    # No ping check: it needs celery.contrib.testing.tasks registered; skipping it
    # makes the baseline faster, never slower. Stopping takes ~10 s (kombu's hub
    # sleeps in epoll), right at the default shutdown_timeout of 10 s: give it room.
    with start_worker(app, pool="solo", perform_ping_check=False, loglevel="WARNING", shutdown_timeout=30):
        step("worker_started")
        assert sortWords.delay("storage yay my DB is powerful results Astra", False).get(timeout=60) == (
            "Astra DB is my powerful results storage yay")
        first_pass = time.time()
        step("first_round_trip")
    step("worker_stopped")
    return first_pass


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
