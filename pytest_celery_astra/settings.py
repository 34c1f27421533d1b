"""Every setting of the plugin: one definition, three doors (CLI, env, ini).

Each :class:`Setting` is registered as a command-line option and an ini key and
read from an environment variable; :func:`resolve_settings` resolves them once,
CLI > env > ini > default, into a frozen :class:`Settings` that remembers where
each value came from (for the report header) and masks secrets in its repr.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any, Callable, Mapping

import pytest

from pytest_celery_astra.cassandra.replication import parse as _replication
from pytest_celery_astra.masking import MASK, Secret, mask_url

BROKER_MODES = ("auto", "container", "url", "memory")
BROKER_KINDS = ("rabbitmq", "redis")
WORKER_POOLS = ("solo", "threads")
CONSISTENCY_LEVELS = (
    "ANY", "ONE", "TWO", "THREE", "QUORUM", "ALL", "LOCAL_QUORUM",
    "EACH_QUORUM", "SERIAL", "LOCAL_SERIAL", "LOCAL_ONE",
)


def _text(value: str) -> str:
    return value


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected true or false, got {value!r}")


def _positive_float(value: str) -> float:
    number = float(value)
    if number <= 0:
        raise ValueError(f"expected a number above 0, got {value!r}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number <= 0:
        raise ValueError(f"expected a whole number above 0, got {value!r}")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 < number < 65536:
        raise ValueError(f"expected a port between 1 and 65535, got {value!r}")
    return number


def _choice(*choices: str) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value
    return parse


def _broker_kinds(value: str) -> str:
    kinds = [kind.strip() for kind in value.split(",")]
    for kind in kinds:
        _choice(*BROKER_KINDS)(kind)
    if len(set(kinds)) != len(kinds):
        raise ValueError(f"expected each broker once, got {value!r}")
    return ",".join(kinds)


def _consistency(value: str) -> str:
    # Celery silently maps unknown names (even lowercase 'quorum') to
    # LOCAL_QUORUM; refuse them here instead.
    return _choice(*CONSISTENCY_LEVELS)(value)


def _cql_identifier(value: str) -> str:
    if not value or not (value[0].isalpha() and value.replace("_", "a").isalnum()) or len(value) > 40:
        raise ValueError(
            f"expected a CQL name of letters, digits and underscores starting with a letter "
            f"(at most 40 characters), got {value!r}")
    if value != value.lower():
        # Unquoted CQL names fold to lower case: 'MyTests' would be created as 'mytests'.
        raise ValueError(f"expected lower case (CQL folds unquoted names to lower case), got {value!r}; "
                         f"use {value.lower()!r}")
    return value


def _host_list(value: str) -> tuple[str, ...]:
    hosts = tuple(h.strip() for h in value.split(",") if h.strip())
    if not hosts:
        raise ValueError(f"expected comma-separated host names, got {value!r}")
    return hosts


def _name_list(value: str) -> tuple[str, ...]:
    return tuple(n.strip() for n in value.split(",") if n.strip())


def _database_id(value: str) -> str:
    import uuid

    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        raise ValueError(f"expected the database id shown in the Astra console (a UUID), got {value!r}") from None


def _region(value: str) -> str:
    if not value or not value.replace("-", "a").isalnum() or not value.islower():
        raise ValueError(f"expected a region name like us-east1, got {value!r}")
    return value


def _https_url(value: str) -> str:
    if not value.startswith("https://") or len(value) <= len("https://"):
        raise ValueError(f"expected an https:// URL, got {value!r}")
    return value


def _app_reference(value: str) -> str:
    module, _, attribute = value.partition(":")
    if not module or not attribute:
        raise ValueError(f"expected module:attribute (like tasks:app), got {value!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Setting:
    """One setting: its name, its three doors, its parser and its help."""

    name: str
    help: str
    default: Any = None
    parse: Callable[[str], Any] = _text
    secret: bool = False
    flag: bool = False
    cli: str | None = None
    env: str | None = None
    ini: str | None = None

    @property
    def cli_option(self) -> str:
        return self.cli or "--celery-astra-" + self.name.replace("_", "-")

    @property
    def env_var(self) -> str:
        return self.env or "CELERY_ASTRA_" + self.name.upper()

    @property
    def ini_key(self) -> str:
        return self.ini or "celery_astra_" + self.name

    @property
    def doors(self) -> str:
        """How a person sets it, for error messages: every door in one phrase."""
        return f"{self.cli_option} / ini {self.ini_key} / env {self.env_var}"


SETTINGS: tuple[Setting, ...] = (
    Setting("app", "Celery app to test, as module:attribute (like tasks:app); a fresh app when unset.",
            parse=_app_reference),
    Setting("broker", "Broker mode: auto (url if given, else container if an engine answers, else memory), "
            "container, url or memory.", default="auto", parse=_choice(*BROKER_MODES)),
    Setting("broker_kind", "Broker to run in container mode: rabbitmq, redis, or both (rabbitmq,redis: each "
            "test that uses the worker runs once per broker).", default="rabbitmq", parse=_broker_kinds),
    Setting("broker_url", "URL of an existing broker (url mode); {worker} is replaced by the xdist worker id.",
            secret=True),
    Setting("rabbitmq_image", "RabbitMQ image for container mode.", default="rabbitmq:3.13"),
    Setting("redis_image", "Redis image for container mode.", default="redis:7"),
    Setting("cassandra_image", "Cassandra image for container mode.", default="cassandra:5.0"),
    Setting("cassandra_hosts", "Contact points of an existing Cassandra cluster (comma-separated); "
            "a container is started when unset.", parse=_host_list),
    Setting("cassandra_port", "CQL port of the existing cluster.", default=9042, parse=_port),
    Setting("cassandra_username", "Username for the existing cluster."),
    Setting("cassandra_password", "Password for the existing cluster.", secret=True),
    Setting("keyspace", "Prefix of the test keyspace; the xdist worker id is appended.",
            default="celery_astra", parse=_cql_identifier),
    Setting("table", "Name of Celery's result table in the test keyspace.", default="celery_results",
            parse=_cql_identifier),
    Setting("replication", "Replication of the test keyspace: auto (1 on a container of this run; on an "
            "existing cluster NetworkTopologyStrategy with min(3, nodes) replicas in each data center), a factor "
            "(SimpleStrategy: 3) or data centers (NetworkTopologyStrategy: dc1:3,dc2:2).", default="auto",
            parse=_replication),
    Setting("read_consistency", "Consistency of result reads.", default="LOCAL_QUORUM", parse=_consistency),
    Setting("write_consistency", "Consistency of result writes.", default="LOCAL_QUORUM", parse=_consistency),
    Setting("worker_pool", "Pool of the embedded worker: solo or threads.", default="solo",
            parse=_choice(*WORKER_POOLS)),
    Setting("worker_concurrency", "Concurrency of the embedded worker (threads pool).", default=1,
            parse=_positive_int),
    Setting("worker_kind", "What celery_astra_worker runs: thread (an embedded worker in this process) or "
            "process (the real `celery worker` command in a subprocess).", default="thread",
            parse=_choice("thread", "process")),
    Setting("worker_process_pool", "Pool of the worker process: prefork (Celery's default), solo or threads.",
            default="prefork", parse=_choice("prefork", "solo", "threads")),
    Setting("worker_process_concurrency", "Child processes (or threads) of the worker process.", default=2,
            parse=_positive_int),
    Setting("queues", "Extra queues the embedded worker consumes (comma-separated), besides the default.",
            default=(), parse=_name_list),
    Setting("startup_timeout", "Seconds to wait for a container to answer.", default=120.0,
            parse=_positive_float),
    Setting("worker_timeout", "Seconds to wait for the embedded worker to start or stop.", default=20.0,
            parse=_positive_float),
    Setting("result_poll_interval", "Seconds between result-table polls in AsyncResult.get() "
            "(Celery's default is 0.5).", default=0.01, parse=_positive_float),
    Setting("cleanup", "Empty the result table and registered tables after each test.", default=True,
            parse=_boolean),
    Setting("drop_stale", "Also drop what crashed runs on other hosts left on a shared Cassandra: keyspaces "
            "carrying the plugin's mark, from another run, older than 2 hours (and such Astra tables).",
            default=False, parse=_boolean, flag=True),
    Setting("reuse_containers", "Keep containers after the run and reuse them when their configuration "
            "matches.", default=False, parse=_boolean),
    Setting("keep_keyspaces", "On an existing cluster (--celery-astra-cassandra-hosts), keep the test keyspaces "
            "between runs: each process leases one cluster-wide, and a repeat run makes no schema change but the "
            "CREATE TABLE of a create_table() table its keyspace lacks "
            "(with containers, --celery-astra-reuse-containers does this).", default=False, parse=_boolean),
    Setting("xdist_faults", "Under pytest-xdist, for tests that use celery_astra_services: own (an xdist worker "
            "whose tests use it starts a Cassandra and brokers of its own, so its faults reach no other worker) or "
            "skip (the run's one set of containers; those tests skip).", default="own", parse=_choice("own", "skip")),
    Setting("astra", "Run the Cassandra side against a live Astra DB database.", default=False,
            parse=_boolean, flag=True, cli="--astra", env="CELERY_ASTRA_USE_ASTRA", ini="celery_astra_use_astra"),
    Setting("astra_bundle", "Path of the Astra DB secure connect bundle (zip).",
            cli="--astra-bundle", env="ASTRA_DB_SECURE_BUNDLE_PATH", ini="astra_db_secure_bundle_path"),
    Setting("astra_db_id", "Astra DB database id: without --astra-bundle, a fresh bundle is downloaded from "
            "Astra's DevOps API with the token.", parse=_database_id, cli="--astra-db-id", env="ASTRA_DB_ID",
            ini="astra_db_id"),
    Setting("astra_db_region", "Region whose bundle is downloaded with --astra-db-id (default: the database's "
            "first).", parse=_region, cli="--astra-db-region", env="ASTRA_DB_REGION", ini="astra_db_region"),
    Setting("astra_devops_url", "Base URL of Astra's DevOps API, for the bundle download.",
            default="https://api.astra.datastax.com", parse=_https_url, cli="--astra-devops-url",
            env="CELERY_ASTRA_DEVOPS_URL", ini="celery_astra_devops_url"),
    Setting("astra_token", "Astra DB application token (AstraCS:...).", secret=True,
            cli="--astra-token", env="ASTRA_DB_APPLICATION_TOKEN", ini="astra_db_application_token"),
    Setting("astra_client_id", "Astra DB client id (with --astra-client-secret, instead of a token).",
            cli="--astra-client-id", env="ASTRA_DB_CLIENT_ID", ini="astra_db_client_id"),
    Setting("astra_client_secret", "Astra DB client secret.", secret=True,
            cli="--astra-client-secret", env="ASTRA_DB_CLIENT_SECRET", ini="astra_db_client_secret"),
    Setting("astra_keyspace", "Existing Astra DB keyspace the result tables are created in.",
            parse=_cql_identifier, cli="--astra-keyspace", env="ASTRA_DB_KEYSPACE", ini="astra_db_keyspace"),
    Setting("astra_table_limit", "Tables the Astra DB database allows (Serverless: 50; 200 for vector "
            "databases); checked before any test against the tables there plus one per xdist worker.",
            default=50, parse=_positive_int, cli="--astra-table-limit", env="CELERY_ASTRA_TABLE_LIMIT",
            ini="celery_astra_table_limit"),
    Setting("astra_drop_stale", "Drop result tables left by crashed earlier runs (only tables marked by "
            "this plugin, older than 2 hours).", default=False, parse=_boolean, flag=True, cli="--astra-drop-stale",
            env="CELERY_ASTRA_DROP_STALE_TABLES", ini="celery_astra_drop_stale_tables"),
)
SETTINGS_BY_NAME = {setting.name: setting for setting in SETTINGS}


@dataclasses.dataclass(frozen=True)
class Settings:
    """Resolved settings: one typed attribute per setting of :data:`SETTINGS` (a unit test holds the two
    together), ``sources`` saying where each value came from, and a bad environment value kept for later."""

    sources: Mapping[str, str]
    app: str | None
    broker: str
    broker_kind: str
    broker_url: Secret | None
    rabbitmq_image: str
    redis_image: str
    cassandra_image: str
    cassandra_hosts: tuple[str, ...] | None
    cassandra_port: int
    cassandra_username: str | None
    cassandra_password: Secret | None
    keyspace: str
    table: str
    replication: str
    read_consistency: str
    write_consistency: str
    worker_pool: str
    worker_concurrency: int
    worker_kind: str
    worker_process_pool: str
    worker_process_concurrency: int
    queues: tuple[str, ...]
    startup_timeout: float
    worker_timeout: float
    result_poll_interval: float
    cleanup: bool
    drop_stale: bool
    reuse_containers: bool
    keep_keyspaces: bool
    xdist_faults: str
    astra: bool
    astra_bundle: str | None
    astra_db_id: str | None
    astra_db_region: str | None
    astra_devops_url: str
    astra_token: Secret | None
    astra_client_id: str | None
    astra_client_secret: Secret | None
    astra_keyspace: str | None
    astra_table_limit: int
    astra_drop_stale: bool
    deferred_problem: str | None = None

    @property
    def values(self) -> dict[str, Any]:
        """Every setting's value by name."""
        return {setting.name: getattr(self, setting.name) for setting in SETTINGS}

    @property
    def configured(self) -> bool:
        """True when the project set any setting on the command line or in its ini file."""
        return any(source.startswith(("option ", "ini ")) for source in self.sources.values())

    def describe(self, name: str) -> str:
        """``value (source)`` for the report header; secrets masked."""
        value = getattr(self, name)
        if isinstance(value, tuple):
            value = ",".join(value)
        return f"{value} ({self.sources[name]})"

    def __repr__(self) -> str:
        shown = {name: value for name, value in self.values.items() if value not in (None, ())}
        return f"Settings({shown!r})"


def register_options(parser: pytest.Parser) -> None:
    """Add every setting as a CLI option and an ini key."""
    group = parser.getgroup("celery-astra", "Celery + Cassandra/Astra DB testing (pytest-celery-astra)")
    for setting in SETTINGS:
        help_text = f"{setting.help} [env {setting.env_var}]"
        if setting.flag:
            group.addoption(setting.cli_option, action="store_const", const="true", default=None,
                            dest=_dest(setting), help=help_text)
        else:
            group.addoption(setting.cli_option, action="store", default=None, dest=_dest(setting),
                            metavar=setting.name.upper(), help=help_text)
        parser.addini(setting.ini_key, help=setting.help, default=None)


def _dest(setting: Setting) -> str:
    return "celery_astra_" + setting.name


def resolve_settings(
    cli: Mapping[str, str | None],
    env: Mapping[str, str],
    ini: Mapping[str, str | None],
    defer_env_errors: bool = False,
) -> Settings:
    """Resolve every setting, CLI > env > ini > default.

    ``cli`` and ``ini`` are keyed by setting name, ``env`` is the environment.
    A value that does not parse raises :class:`pytest.UsageError` naming the
    setting and the door it came through. With ``defer_env_errors``, a bad value
    from the environment is not raised but kept in ``Settings.deferred_problem``
    (the default is used meanwhile): an unrelated suite in the same environment
    must not fail because of it; the plugin raises it when a test uses it.
    """
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    deferred: str | None = None
    for setting in SETTINGS:
        raw, source = _first_given(setting, cli, env, ini)
        if raw is None:
            values[setting.name], sources[setting.name] = setting.default, "default"
            continue
        try:
            if source.startswith("ini ") and INLINE_COMMENT.search(raw):
                raise ValueError("ini values keep inline comments; put the comment on its own line")
            value = setting.parse(raw)
        except ValueError as error:
            problem = (f"pytest-celery-astra: {source} {_shown_value(setting, raw)} is not valid for "
                       f"{setting.name}: {_mask_message(error, setting, raw)}; fix {setting.doors}.")
            if not (defer_env_errors and source.startswith("env ")):
                raise pytest.UsageError(problem) from None
            deferred = deferred or problem
            values[setting.name], sources[setting.name] = setting.default, "default"
            continue
        values[setting.name] = Secret(value) if setting.secret and isinstance(value, str) else value
        sources[setting.name] = source
    return Settings(sources=sources, deferred_problem=deferred, **values)


# pytest keeps what follows a value in an ini file: `key = tasks:app  # note` reads as
# 'tasks:app  # note'. No setting's value has whitespace followed by # or ;.
INLINE_COMMENT = re.compile(r"\s[#;]")


def _shown_value(setting: Setting, raw: str) -> str:
    """The value for an error message, masked when it could hold a secret.

    Secret settings are never shown; elsewhere a URL loses its password, and a
    token pasted into the wrong setting is hidden whole.
    """
    if setting.secret or "AstraCS:" in raw:
        return repr(MASK)
    return repr(mask_url(raw))


def _first_given(setting, cli, env, ini) -> tuple[str | None, str]:
    # `is not None`, not truthiness: an empty string or 0 still overrides.
    if cli.get(setting.name) is not None:
        return cli[setting.name], f"option {setting.cli_option}"
    if env.get(setting.env_var) is not None:
        return env[setting.env_var], f"env {setting.env_var}"
    if ini.get(setting.name) is not None:
        return ini[setting.name], f"ini {setting.ini_key}"
    return None, "default"


def _mask_message(error: Exception, setting: Setting, raw: str) -> str:
    """The parser's message, which may quote the value, with the value masked as in _shown_value."""
    message = str(error)
    if not raw:
        return message
    return message.replace(repr(raw), _shown_value(setting, raw)).replace(raw, _shown_value(setting, raw)[1:-1])


def settings_from_config(config: pytest.Config) -> Settings:
    """Read the three doors of a pytest config and resolve them (bad env values deferred)."""
    cli = {s.name: config.getoption(_dest(s), default=None) for s in SETTINGS}
    ini = {s.name: _ini_value(config, s) for s in SETTINGS}
    return resolve_settings(cli, os.environ, ini, defer_env_errors=True)


def _ini_value(config: pytest.Config, setting: Setting) -> str | None:
    value = config.getini(setting.ini_key)
    # Before pytest 8, getini gives "" for an unset key declared with default=None,
    # so an empty ini value means unset on every pytest version.
    if value is None or value == [] or value == "":
        return None
    return value if isinstance(value, str) else " ".join(value)
