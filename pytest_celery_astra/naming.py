"""Where each pytest process's data lives: one :class:`Placement`, and the names it is spelled with.

Every name carries the xdist worker id, so parallel workers never share state; on a Cassandra or broker
shared with other runs, the run id too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re

import pytest

CONTROLLER = "master"


def worker_id(config: pytest.Config) -> str:
    """``gw0``, ``gw1``… under pytest-xdist, ``master`` otherwise."""
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        return workerinput["workerid"]
    return os.environ.get("PYTEST_XDIST_WORKER", CONTROLLER)


def is_xdist_worker(config: pytest.Config) -> bool:
    return getattr(config, "workerinput", None) is not None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


# Cassandra's limit for keyspace and table names.
MAX_CQL_NAME = 48


def short_name(*parts: str, limit: int = MAX_CQL_NAME) -> str:
    """``parts`` joined by ``_``; past ``limit``, the first part cut and a hash of all parts appended,
    so the run id and worker id still tell names apart instead of being cut off."""
    name = "_".join(part for part in parts if part)
    if len(name) <= limit:
        return name
    digest = hashlib.sha1(name.encode()).hexdigest()[:12]
    return f"{parts[0][:limit - len(digest) - 1]}_{digest}"


def keyspace_name(prefix: str, worker: str, run_id: str | None = None) -> str:
    """The test keyspace of one worker: ``celery_astra_gw0``; with ``run_id`` (a Cassandra shared with
    other runs) ``celery_astra_3f9c0a1b2e_gw0``."""
    return short_name(prefix, _slug(run_id or ""), _slug(worker))


def leased_keyspace_name(prefix: str, slot: int | str) -> str:
    """A long-lived keyspace of a kept Cassandra container, held by one process at a time
    (see leases.py): ``celery_astra_kept_0``."""
    return short_name(prefix, "kept", str(slot))


def lease_registry_name(prefix: str) -> str:
    """The keyspace of the cluster-wide lease table (cluster_leases.py): ``celery_astra_leases``."""
    return short_name(prefix, "leases")


def astra_table_name(table: str, run_id: str, worker: str) -> str:
    """One result table per run and worker in a shared Astra keyspace.

    Astra keyspaces are shared by every run against the database, so the run id
    keeps concurrent runs (two CI jobs) apart. Cassandra allows 48 characters.
    """
    return short_name(table, _slug(run_id), _slug(worker))


def vhost_name(worker: str, run_id: str | None = None) -> str:
    """RabbitMQ virtual host of one worker: its queues, named ones included, are its own
    (with ``run_id`` for a broker shared with other runs)."""
    return short_name("celery_astra", _slug(run_id or ""), _slug(worker), limit=200)


def key_prefix(run_id: str, worker: str) -> str:
    """Redis key prefix of one run's worker: ``celery_astra_3f9c0a1b2e_gw0``."""
    return short_name("celery_astra", _slug(run_id), _slug(worker), limit=200)


def node_name(worker: str) -> str:
    return f"celery_astra_{_slug(worker)}@{os.uname().nodename}"


@dataclasses.dataclass(frozen=True)
class Placement:
    """Where one pytest process's data lives, decided once (``RunContext.placement``) from the settings, the
    run id and the xdist worker id: every keyspace, result table, vhost, Redis key prefix and node name the
    process uses comes from here. ``prefix`` is a database fixture's ``keyspace_prefix`` (None: the
    ``keyspace`` setting's)."""

    run_id: str
    worker: str
    keyspace_prefix: str = "celery_astra"  # the keyspace setting
    table: str = "celery_results"  # the table setting: Celery's result table
    astra_keyspace: str | None = None  # --astra: the user's keyspace, shared with other runs
    shares_cassandra: bool = False  # an existing cluster or a kept container: keyspaces carry the run id
    shares_broker: bool = False  # a kept RabbitMQ: vhosts carry the run id

    def of_worker(self, worker: str) -> "Placement":
        """Where another xdist worker of this run keeps its data (the report header lists them)."""
        return dataclasses.replace(self, worker=worker)

    def keyspace(self, prefix: str | None = None) -> str:
        """The process's own keyspace (Astra: the user's)."""
        if self.astra_keyspace is not None:
            return self.astra_keyspace
        return keyspace_name(prefix or self.keyspace_prefix, self.worker,
                             self.run_id if self.shares_cassandra else None)

    def kept_keyspace(self, slot: int | str, prefix: str | None = None) -> str:
        """A long-lived keyspace leased per process (a kept container, or ``keep_keyspaces``)."""
        return leased_keyspace_name(prefix or self.keyspace_prefix, slot)

    def lease_registry(self, prefix: str | None = None) -> str:
        """The keyspace of the cluster-wide lease table (``keep_keyspaces``)."""
        return lease_registry_name(prefix or self.keyspace_prefix)

    def result_table(self, prefix: str | None = None) -> str:
        """Celery's result table; in Astra's shared keyspace one per run, worker and database fixture."""
        if self.astra_keyspace is None:
            return self.table
        return astra_table_name(f"{prefix}_{self.table}" if prefix else self.table, self.run_id, self.worker)

    def vhost(self) -> str | None:
        """The RabbitMQ vhost of this process's queues; None for a container's default vhost ``/``.

        A run without xdist on a container of its own (not kept) is that container's only user: its default
        vhost is as isolated as a new one, and making one costs a ``rabbitmqctl`` Erlang VM (0.6-1 s of CPU
        while Cassandra starts). xdist workers share the run's container, and a kept one is shared with other
        runs: each gets its own vhost (with the run id when kept)."""
        if self.worker == CONTROLLER and not self.shares_broker:
            return None
        return vhost_name(self.worker, self.run_id if self.shares_broker else None)

    def redis_key_prefix(self) -> str:
        """kombu's ``global_keyprefix`` on Redis: every key and channel of this run and worker carries it."""
        return f"{key_prefix(self.run_id, self.worker)}:"

    def node_name(self, fixture: str, kind: str = "") -> str:
        """The Celery node name of the worker a fixture runs (``kind``: ``process`` for a worker process)."""
        return node_name("_".join(part for part in (self.run_id, self.worker, fixture, kind) if part))
