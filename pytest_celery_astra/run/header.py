"""The report header: what the run will use and why, never a secret."""

from __future__ import annotations

from pytest_celery_astra.errors import ConfigurationError
from pytest_celery_astra.masking import mask_url
from pytest_celery_astra.run.context import RunContext


def describe_run(context: RunContext, workers: list[str]) -> list[str]:
    """Three lines: broker, Cassandra (with the keyspace or table of every xdist worker), worker."""
    settings = context.settings
    return [
        f"celery-astra broker: {_broker_line(context)}",
        f"celery-astra cassandra: {_cassandra_line(context, workers)}",
        f"celery-astra worker: {_worker_kind(context)}, "
        f"queues {_queues(context)}, "
        f"app {settings.describe('app')}, cleanup {settings.describe('cleanup')}, "
        f"reuse containers {settings.describe('reuse_containers')}, run id {context.run_id}",
    ]


def _broker_line(context: RunContext) -> str:
    settings = context.settings
    try:
        broker = context.broker
    except ConfigurationError as error:
        return f"not chosen: {error}"
    if broker.mode == "container":
        line = "container " + ", ".join(
            f"{kind} (image {settings.describe('rabbitmq_image' if kind == 'rabbitmq' else 'redis_image')})"
            for kind in broker.kinds)
        if len(broker.kinds) > 1:
            line += f"; each test that uses the worker runs once per broker ({settings.sources['broker_kind']})"
    elif broker.mode == "url":
        line = f"url {mask_url(str(settings.broker_url))}"
    else:
        line = "memory (kombu in-process transport)"
    return f"{line} [{broker.reason}]"


def _cassandra_line(context: RunContext, workers: list[str]) -> str:
    settings = context.settings
    if context.cassandra_mode == "astra":
        tables = ", ".join(context.placement.of_worker(worker).result_table() for worker in workers)
        bundle = (f"Astra DB bundle {settings.astra_bundle} ({settings.sources['astra_bundle']})"
                  if settings.astra_bundle is not None else
                  f"Astra DB bundle downloaded for database {settings.astra_db_id} ({settings.sources['astra_db_id']})"
                  f"{', region ' + settings.astra_db_region if settings.astra_db_region else ''}")
        return (f"{bundle}, "
                f"keyspace {settings.astra_keyspace}, result tables {tables}")
    if context.leases_keyspaces:
        keyspaces = f"{context.placement.kept_keyspace('N')} (a kept one, leased per process)"
    elif context.keeps_cluster_keyspaces:
        keyspaces = (f"{context.placement.kept_keyspace('N')} (kept between runs, leased per process "
                     f"cluster-wide: keep keyspaces {settings.describe('keep_keyspaces')})")
    else:
        keyspaces = ", ".join(context.placement.of_worker(worker).keyspace() for worker in workers)
    where = (f"hosts {settings.describe('cassandra_hosts')} port {settings.cassandra_port}"
             if context.cassandra_mode == "hosts" else f"container (image {settings.describe('cassandra_image')})")
    return (f"{where}, keyspace {keyspaces} ({settings.sources['keyspace']}), table {settings.table}, "
            f"replication {_replication(context)}")


def _replication(context: RunContext) -> str:
    from pytest_celery_astra.cassandra.replication import AUTO, AUTO_FACTOR

    settings = context.settings
    if settings.replication != AUTO:
        return settings.describe("replication")
    if context.cassandra_mode == "container":
        return f"factor 1, one node (auto, {settings.sources['replication']})"
    return (f"min({AUTO_FACTOR}, nodes) in each data center, NetworkTopologyStrategy "
            f"(auto, {settings.sources['replication']})")


def _queues(context: RunContext) -> str:
    extra = context.settings.queues
    if not extra:
        return "the app's default queue"
    return f"the app's default queue + {','.join(extra)} ({context.settings.sources['queues']})"


def _worker_kind(context: RunContext) -> str:
    settings = context.settings
    if settings.worker_kind == "process":
        return (f"process `celery worker` ({settings.sources['worker_kind']}), pool "
                f"{settings.describe('worker_process_pool')}, concurrency {settings.describe('worker_process_concurrency')}")
    return f"pool {settings.describe('worker_pool')}, concurrency {settings.describe('worker_concurrency')}"
