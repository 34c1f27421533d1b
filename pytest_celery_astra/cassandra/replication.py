"""How the test keyspace is replicated, and what a replication cannot survive.

The ``replication`` setting is ``auto``, a factor (``3``: SimpleStrategy) or data centers with a factor
each (``dc1:3,dc2:2``: NetworkTopologyStrategy). ``auto`` is one replica on a Cassandra container of
this run (one node), and on an existing cluster NetworkTopologyStrategy with min(3, nodes) replicas in
each of its data centers: enough for QUORUM to survive one node down, as production keyspaces are.

:func:`resolve` turns the setting into a :class:`Replication` for the cluster the run connected to, and
refuses (one sentence) what Cassandra would accept but no test could use: a data center the cluster
does not have, or more replicas than a data center has nodes (every QUORUM write would fail).
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Iterable

AUTO = "auto"
# Replicas per data center that ``auto`` gives an existing cluster: QUORUM (2 of 3) survives a node down.
AUTO_FACTOR = 3
SETTING = "--celery-astra-replication"


def parse(value: str) -> str:
    """Check a ``replication`` setting's text; the value stays text (resolved once connected)."""
    text = value.strip()
    if text == AUTO:
        return text
    if text.isdigit():
        if int(text) < 1:
            raise ValueError(f"expected a replication factor of at least 1, got {value!r}")
        return text
    data_centers = _data_centers(text)
    if data_centers is None:
        raise ValueError(f"expected auto, a replication factor (like 3) or data centers with a factor each "
                         f"(like dc1:3,dc2:2), got {value!r}")
    return ",".join(f"{dc}:{factor}" for dc, factor in data_centers)


def _data_centers(text: str) -> tuple[tuple[str, int], ...] | None:
    pairs = []
    for part in text.split(","):
        name, colon, factor = part.strip().rpartition(":")
        if not colon or not name or not factor.isdigit() or int(factor) < 1 or "'" in name:
            return None
        pairs.append((name, int(factor)))
    if len({name for name, _ in pairs}) != len(pairs):
        return None
    return tuple(pairs)


@dataclasses.dataclass(frozen=True)
class Replication:
    """A keyspace's replication: SimpleStrategy with ``factor`` replicas, or NetworkTopologyStrategy with
    ``data_centers`` (name, replicas) when given. ``source`` says why (for the header and errors)."""

    factor: int = 1
    data_centers: tuple[tuple[str, int], ...] = ()
    source: str = "a container of this run: one node"

    def cql(self) -> str:
        """The replication map of ``CREATE KEYSPACE ... WITH replication = <this>``."""
        if self.data_centers:
            pairs = ", ".join(f"'{dc}': {factor}" for dc, factor in self.data_centers)
            return "{'class': 'NetworkTopologyStrategy', " + pairs + "}"
        return "{'class': 'SimpleStrategy', 'replication_factor': " + str(self.factor) + "}"

    def describe(self) -> str:
        if self.data_centers:
            shown = ", ".join(f"{dc}: {factor}" for dc, factor in self.data_centers)
            return f"NetworkTopologyStrategy {{{shown}}} ({self.source})"
        return f"SimpleStrategy, replication factor {self.factor} ({self.source})"

    @property
    def lowest_factor(self) -> int:
        return min(factor for _, factor in self.data_centers) if self.data_centers else self.factor


def resolve(setting: str, source: str, own_container: bool, host_data_centers: Iterable[str | None]) -> Replication:
    """The replication for the test keyspace. ``host_data_centers`` has one entry per node of the
    cluster (its data center). Raises ValueError (one sentence, naming the setting) for a replication
    that no QUORUM could be met with."""
    nodes = Counter(dc or "datacenter1" for dc in host_data_centers)
    if setting == AUTO:
        if own_container or not nodes:
            return Replication(1, source="auto: a container of this run, one node")
        return Replication(data_centers=tuple((dc, min(AUTO_FACTOR, count)) for dc, count in sorted(nodes.items())),
                           source=f"auto: min({AUTO_FACTOR}, nodes) in each data center of {sum(nodes.values())} nodes")
    if setting.isdigit():
        factor = int(setting)
        total = sum(nodes.values())
        if nodes and factor > total:
            raise ValueError(
                f"pytest-celery-astra: replication factor {factor} ({source}) is more than the cluster's "
                f"{total} node{'s' if total != 1 else ''}, so every QUORUM write would fail; set {SETTING} to "
                f"at most {total}, or to auto.")
        return Replication(factor, source=source)
    data_centers = _data_centers(setting) or ()
    for dc, factor in data_centers:
        if nodes and dc not in nodes:
            raise ValueError(
                f"pytest-celery-astra: data center {dc!r} of {SETTING} ({source}) is not in the cluster, whose "
                f"data centers are {', '.join(sorted(nodes))}; fix {SETTING}.")
        if nodes and factor > nodes[dc]:
            raise ValueError(
                f"pytest-celery-astra: {factor} replicas in data center {dc!r} ({source}) are more than its "
                f"{nodes[dc]} node{'s' if nodes[dc] != 1 else ''}, so every QUORUM write there would fail; "
                f"set {SETTING} to at most {dc}:{nodes[dc]}, or to auto.")
    return Replication(data_centers=data_centers, source=source)


def unavailable_sentence(keyspace: str, replication: Replication | None, error: BaseException) -> str:
    """One sentence for Cassandra's ``Unavailable`` (too few replicas alive) in the test keyspace."""
    detail = str(error).splitlines()[0][:200]
    if replication is None:
        return (f"pytest-celery-astra: too few replicas of keyspace {keyspace} are alive ({detail}); a Cassandra "
                f"node is down.")
    if replication.lowest_factor < AUTO_FACTOR:
        replicas = "replicas" if replication.lowest_factor > 1 else "replica"
        return (f"pytest-celery-astra: a Cassandra node that holds the only {replicas} "
                f"of rows in keyspace {keyspace} is down ({detail}): the keyspace has "
                f"{replication.describe()}, which cannot survive a node down; set {SETTING} to 3 (or auto) "
                f"on a cluster of 3 or more nodes.")
    return (f"pytest-celery-astra: too few replicas of keyspace {keyspace} are alive for the consistency "
            f"asked ({detail}); it has {replication.describe()}: more than one node is down.")


def unavailable_cause(error: BaseException | None) -> BaseException | None:
    """The driver's Unavailable (too few replicas alive) behind ``error``, if that is what it is."""
    from cassandra import Unavailable
    from cassandra.cluster import NoHostAvailable

    seen = 0
    while error is not None and seen < 5:
        if isinstance(error, Unavailable):
            return error
        if isinstance(error, NoHostAvailable):
            # errors is {host: error}, but the driver also raises it with a plain message there
            errors = error.errors.values() if isinstance(error.errors, dict) else ()
            found = [e for e in errors if isinstance(e, Unavailable)]
            return found[0] if found else None
        error, seen = error.__cause__, seen + 1
    return None
