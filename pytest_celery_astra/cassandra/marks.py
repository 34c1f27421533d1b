"""The plugin's mark on what it creates in Cassandra, and what tells a kept table or keyspace apart.

Every table the plugin creates carries a mark as its comment (run, xdist worker, time, and the process
that made it: :func:`table_mark`); its own keyspace holds the owner table (``OWNER_TABLE``) with that mark.
A later run reads the mark back (:func:`parse_mark`) to tell a killed or stale run's leftovers from a live
run's data. A leased keyspace left clean is used again only for the same fingerprint
(:func:`lease_fingerprint`), a kept table only for the same statement (:func:`statement_digest`).
"""

from __future__ import annotations

import datetime
import hashlib
import re

from pytest_celery_astra.host import Owner

MARK_PREFIX = "pytest-celery-astra"
# The table whose mark says who made the plugin's own keyspace.
OWNER_TABLE = "celery_astra_owner"
# A run older than this, from another host, is taken as crashed by --celery-astra-drop-stale.
STALE_AFTER = datetime.timedelta(hours=2)


def table_mark(run_id: str, worker: str) -> str:
    """The comment of every table the plugin creates: which run and worker, when, and which process
    (so that a later run on the same host can tell a killed run's leftovers from a live run's data)."""
    created = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    owner = Owner.this_process()
    return (f"{MARK_PREFIX} run={run_id} worker={worker} created={created} "
            f"host={owner.host} pid={owner.pid} started={owner.started}")


def mark_owner(mark: dict[str, str]) -> Owner | None:
    """The process that made a marked table, when the mark names one."""
    return Owner.parse(mark.get("host"), mark.get("pid"), mark.get("started"))


def parse_mark(comment: str | None) -> dict[str, str] | None:
    """The fields of a mark, or None for a table the plugin did not create."""
    if not comment or not comment.startswith(MARK_PREFIX + " "):
        return None
    fields = dict(part.split("=", 1) for part in comment.split()[1:] if "=" in part)
    return fields if {"run", "worker", "created"} <= fields.keys() else None


def is_stale(mark: dict[str, str], now: datetime.datetime) -> bool:
    """Whether a marked table was created more than STALE_AFTER before ``now``."""
    try:
        created = datetime.datetime.strptime(mark["created"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
    except ValueError:
        return False
    return now - created > STALE_AFTER


def with_mark(cql: str, mark: str) -> str:
    """``cql`` (a CREATE TABLE) with the plugin's mark as its comment, unless it sets a comment itself."""
    statement = cql.strip().rstrip(";")
    if re.search(r"\bcomment\s*=", statement, re.IGNORECASE):
        return statement
    joiner = " AND " if re.search(r"\bWITH\b", statement, re.IGNORECASE) else " WITH "
    return f"{statement}{joiner}comment = '{mark}'"


def lease_fingerprint(result_table: str, replication: str = "") -> str:
    """What a leased keyspace left clean must match to be used as it is: the result table's name,
    Celery's schema for it (which changed between releases) and, on a cluster, the replication."""
    from celery.backends.cassandra import Q_CREATE_RESULT_TABLE

    text = f"{OWNER_TABLE}\n{result_table}\n{Q_CREATE_RESULT_TABLE}" + (f"\n{replication}" if replication else "")
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def statement_digest(cql: str) -> str:
    """What tells two CREATE TABLE statements apart, whitespace aside (a kept table is used again only for
    the same statement)."""
    return hashlib.sha256(" ".join(cql.split()).encode()).hexdigest()[:12]


def result_table_ddl(keyspace: str, table: str, comment: str) -> str:
    """Celery's own CREATE TABLE for its result table, with the plugin's mark as comment.

    Taken from Celery itself so the schema is exactly the one its backend reads
    and writes (it changed between releases).
    """
    from celery.backends.cassandra import Q_CREATE_RESULT_TABLE

    return with_mark(Q_CREATE_RESULT_TABLE.format(table=f"{keyspace}.{table}"), comment)
