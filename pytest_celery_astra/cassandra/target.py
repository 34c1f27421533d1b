"""Where Cassandra answers and how to connect to it: a :class:`CassandraTarget` is either contact points
(a container or an existing cluster) or an Astra DB secure connect bundle, with the login; it makes the
driver's Cluster and Celery's ``cassandra_*`` settings, and says in one sentence why connecting failed.

A ``celery worker`` process imports this module (its :class:`~pytest_celery_astra.workers.wiring.Wiring`
names the target): it loads no driver module until a Cluster is made.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import contextmanager
from typing import Iterator

from pytest_celery_astra.masking import Secret

# Seconds between a driver Cluster's reconnection attempts to a node it saw go down, for every Cluster built
# from the app's cassandra_options (the result backends', the app's own, in every process).
RECONNECT_EVERY = 0.5


@dataclasses.dataclass(frozen=True)
class CassandraTarget:
    """Where Cassandra answers and how to log in. Secrets are :class:`Secret`."""

    hosts: tuple[str, ...] = ()
    port: int = 9042
    username: str | None = None
    password: Secret | None = None
    bundle_path: str | None = None
    bundle_origin: str | None = None  # the bundle as the user named it (bundle_path is the private copy)
    protocol_version: int | None = None

    @property
    def is_astra(self) -> bool:
        return self.bundle_path is not None

    def describe(self) -> str:
        login = f" as {self.username}" if self.username else ""
        if self.is_astra:
            return f"Astra DB bundle {self.bundle_origin or self.bundle_path}{login}"
        return f"{','.join(self.hosts)}:{self.port}{login}"

    def auth_provider(self):
        if not self.username:
            return None
        from cassandra.auth import PlainTextAuthProvider

        return PlainTextAuthProvider(username=self.username, password=self.password)

    def cluster_options(self, consistency: str | None = None) -> dict:
        """Options for cassandra-driver's Cluster besides where and who: the plugin's and Celery's.
        ``consistency`` is the default level of the Cluster's queries (the plugin's own Session: the
        configured read consistency, never the driver's LOCAL_ONE, which a node down can fail)."""
        if self.is_astra:
            return {}
        from cassandra.cluster import EXEC_PROFILE_DEFAULT, ExecutionProfile
        from cassandra.policies import ConstantReconnectionPolicy, RoundRobinPolicy

        # Explicit policy and protocol: without them the driver warns on every connect. Reconnecting
        # every 0.5 s (the driver backs off up to 10 min) brings the sessions back soon after a node
        # restart (celery_astra_services).
        profile = ExecutionProfile(load_balancing_policy=RoundRobinPolicy(), request_timeout=30)
        profile.celery_astra_made = True  # see own_profiles()
        if consistency is not None:
            profile.consistency_level = consistency_level(consistency)
        options: dict = {"execution_profiles": {EXEC_PROFILE_DEFAULT: profile},
                         "reconnection_policy": ConstantReconnectionPolicy(RECONNECT_EVERY, max_attempts=None)}
        if self.protocol_version is not None:
            options["protocol_version"] = self.protocol_version
        return options

    @staticmethod
    def own_profiles(options: dict) -> dict:
        """``options`` with a fresh load-balancing policy in each execution profile the plugin made.

        A policy keeps the live hosts of the one Cluster it serves: two Clusters built from the same
        ``cassandra_options`` (the result backend's and the app's own) would share it, and one marking a
        node down empties the other's query plans (``NoHostAvailable`` with no host tried)."""
        profiles = options.get("execution_profiles")
        if not profiles:
            return options
        import copy

        fresh = {}
        for name, profile in profiles.items():
            if getattr(profile, "celery_astra_made", False):
                profile = copy.copy(profile)
                profile.load_balancing_policy = type(profile.load_balancing_policy)()
            fresh[name] = profile
        return {**options, "execution_profiles": fresh}

    def cluster(self, consistency: str | None = None, **options):
        """A cassandra-driver Cluster for this target (not yet connected)."""
        from cassandra.cluster import Cluster

        options = {**self.cluster_options(consistency), **options}
        if self.is_astra:
            return Cluster(cloud={"secure_connect_bundle": self.bundle_path},
                           auth_provider=self.auth_provider(), **options)
        return Cluster(list(self.hosts), port=self.port, auth_provider=self.auth_provider(), **options)

    def celery_settings(self) -> dict:
        """The cassandra_* settings of Celery's backend for this target."""
        settings: dict = {
            "cassandra_servers": None if self.is_astra else list(self.hosts),
            "cassandra_port": self.port,
            "cassandra_secure_bundle_path": self.bundle_path,
            "cassandra_auth_provider": None,
            "cassandra_auth_kwargs": None,
            "cassandra_options": self.cluster_options(),
        }
        if self.username:
            settings["cassandra_auth_provider"] = "PlainTextAuthProvider"
            settings["cassandra_auth_kwargs"] = {"username": self.username, "password": self.password}
        return settings

    def unreachable_message(self, error: Exception) -> str:
        """One sentence for contact points (or a bundle) that do not answer CQL."""
        if self.is_astra:
            return (f"pytest-celery-astra: Astra DB did not accept a CQL connection through the secure connect "
                    f"bundle ({first_line(error)}); check that the database is active and fix --astra-bundle "
                    f"(ASTRA_DB_SECURE_BUNDLE_PATH).")
        return (f"pytest-celery-astra: Cassandra at {self.describe()} does not answer CQL "
                f"({_per_contact_point(error)}); fix --celery-astra-cassandra-hosts / --celery-astra-cassandra-port.")

    def login_refused_message(self) -> str:
        """One sentence for a refused login."""
        if self.is_astra:
            return ("pytest-celery-astra: Astra DB refused the login; check --astra-token "
                    "(ASTRA_DB_APPLICATION_TOKEN) or --astra-client-id / --astra-client-secret.")
        return ("pytest-celery-astra: Cassandra refused the login; check --celery-astra-cassandra-username "
                "and --celery-astra-cassandra-password.")


def consistency_level(name: str) -> int:
    """The driver's value for a consistency level's name (the settings only accept known names)."""
    from cassandra import ConsistencyLevel

    return ConsistencyLevel.name_to_value[name]


@contextmanager
def quiet_driver_logs() -> Iterator[None]:
    """Silence the driver's connection warnings while a node is expected to be down."""
    driver_logger = logging.getLogger("cassandra")
    previous = driver_logger.level
    driver_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        driver_logger.setLevel(previous)


def astra_front_door_message(error: BaseException) -> str:
    """One sentence for a failure to fetch Astra's metadata, by its cause (the driver keeps it as context)."""
    import ssl
    import urllib.error

    cause: BaseException | None = error
    while cause is not None and not isinstance(cause, (urllib.error.URLError, ssl.SSLError, OSError)):
        cause = cause.__context__
    reason = getattr(cause, "reason", cause) if isinstance(cause, urllib.error.URLError) else cause
    if isinstance(cause, urllib.error.HTTPError):
        return (f"pytest-celery-astra: Astra DB's metadata service answered HTTP {cause.code}, as it does for a "
                f"hibernated, parked or terminated database; resume the database in the Astra console, or fix "
                f"--astra-bundle (ASTRA_DB_SECURE_BUNDLE_PATH) if it belongs to another database.")
    if isinstance(reason, (ssl.SSLError, ConnectionResetError, BrokenPipeError)):
        # A TLS handshake refused for the client certificate: an SSL error, or (Python 3.12+) a reset.
        return (f"pytest-celery-astra: Astra DB's metadata service did not accept the secure connect bundle "
                f"(TLS handshake: {first_line(reason)}); download the bundle of this database again from the Astra console and "
                f"fix --astra-bundle (ASTRA_DB_SECURE_BUNDLE_PATH).")
    if isinstance(reason, (OSError, str)):
        text = getattr(reason, "strerror", None) or str(reason)
        return (f"pytest-celery-astra: Astra DB's metadata service named in the secure connect bundle could not "
                f"be reached ({text}); check this machine's network or proxy and that the database exists, then "
                f"--astra-bundle (ASTRA_DB_SECURE_BUNDLE_PATH).")
    return (f"pytest-celery-astra: Astra DB's metadata service did not accept the secure connect bundle "
            f"({first_line(error)}); download the bundle of this database again from the Astra console and fix "
            f"--astra-bundle (ASTRA_DB_SECURE_BUNDLE_PATH).")


def first_line(error: BaseException) -> str:
    """The first line of an error's text, at most 200 characters."""
    return str(error).splitlines()[0][:200]


def _per_contact_point(error) -> str:
    """What each contact point said, in a few words (the driver's NoHostAvailable is one long line)."""
    causes = getattr(error, "errors", None) or {}
    if not causes:
        return first_line(error)
    parts = []
    for host, cause in list(causes.items())[:3]:
        text = getattr(cause, "strerror", None) or str(cause).splitlines()[0][:120] or type(cause).__name__
        parts.append(f"{host}: {text}")
    return "; ".join(parts)
