"""Names that carry the xdist worker id, so parallel workers never share state."""

from __future__ import annotations

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
