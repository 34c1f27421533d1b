"""Which broker the tests use, and the URL each xdist worker gets on it."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import importlib.util
import logging
import os
import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from pytest_celery_astra.containers.engine import EngineProbe
from pytest_celery_astra.containers.rabbitmq_vhosts import create_vhosts
from pytest_celery_astra.containers.services import (
    ContainerSpec,
    RunningService,
    rabbitmq_spec,
    redis_spec,
)
from pytest_celery_astra.masking import mask_url, url_for_message
from pytest_celery_astra.naming import CONTROLLER, Placement
from pytest_celery_astra.settings import Settings

logger = logging.getLogger(__name__)

# kombu's transports by URL scheme (kombu.transport.TRANSPORT_ALIASES), checked here so that
# a mistyped URL is one sentence before kombu (whose tracebacks show the URL) ever sees it.
KNOWN_SCHEMES = frozenset({
    "amqp", "amqps", "pyamqp", "librabbitmq", "redis", "rediss", "sentinel", "memory", "filesystem",
    "sqs", "mongodb", "zookeeper", "consul", "etcd", "qpid", "sqla", "sqlalchemy", "azurestoragequeues",
    "azureservicebus", "gcpubsub", "confluentkafka", "pyro", "SLMQ", "slmq",
})

# Memory transport: poll its in-process queues often; its default is every 1 s.
MEMORY_TRANSPORT_OPTIONS = {"polling_interval": 0.005}
# The plugin's own Redis container: a bounded connect, as Celery's broker_connection_timeout (4 s) gives AMQP; kombu's
# Redis transport ignores that setting and connects without a timeout. A worker reconnecting while the container
# restarts can send its SYN to the address the engine's port forwarding still held for the old container: without
# a timeout that one connect hangs for a minute or more (EHOSTUNREACH in the end), and the worker with it. A user's
# own socket_connect_timeout in broker_transport_options wins (celery_app.configure_app).
CONTAINER_REDIS_TRANSPORT_OPTIONS = {"socket_connect_timeout": 4.0}


@dataclasses.dataclass(frozen=True)
class BrokerChoice:
    """The broker mode chosen at configure time, and why (for the report header)."""

    mode: str          # "container", "url" or "memory"
    kind: str | None   # "rabbitmq" or "redis" in container mode: the first of ``kinds``
    reason: str
    kinds: tuple[str, ...] = ()  # container mode: every broker a worker test runs against, once each

    def container_specs(self, settings: Settings) -> list[ContainerSpec]:
        if self.mode != "container":
            return []
        # A kept RabbitMQ gets its management API: every run on it makes and deletes vhosts.
        return [redis_spec(settings.redis_image) if kind == "redis"
                else rabbitmq_spec(settings.rabbitmq_image, admin_api=settings.reuse_containers)
                for kind in self.kinds]


def _container_choice(settings: Settings, reason: str) -> BrokerChoice:
    kinds = tuple(settings.broker_kind.split(","))
    return BrokerChoice("container", kinds[0], reason, kinds)


def choose_broker(settings: Settings, probe: EngineProbe | None) -> BrokerChoice:
    """Resolve ``auto``: url if one is given, else container if an engine answers, else memory."""
    mode = settings.broker
    if mode == "url" and settings.broker_url is None:
        raise ValueError("broker mode url needs --celery-astra-broker-url (env CELERY_ASTRA_BROKER_URL)")
    if mode == "container":
        return _container_choice(settings, settings.sources["broker"])
    if mode != "auto":
        return BrokerChoice(mode, None, settings.sources["broker"])
    if settings.broker_url is not None:
        return BrokerChoice("url", None, f"auto: a URL is given ({settings.sources['broker_url']})")
    if probe is not None and probe.answers:
        return _container_choice(settings, f"auto: a container engine answers at {probe.docker_host}")
    detail = probe.detail if probe is not None else "not probed"
    return BrokerChoice("memory", None, f"auto: no container engine answers ({detail})")


def check_client_installed(choice: BrokerChoice, broker_url: str | None, sources: Mapping[str, str],
                           find_spec=importlib.util.find_spec) -> None:
    """Refuse at once a Redis broker without the ``redis`` package: kombu would only fail when it first connects,
    and a container start would wait for it until its startup timeout."""
    if choice.mode == "container" and "redis" in choice.kinds:
        needs = f"the Redis broker ({sources.get('broker_kind', 'broker_kind')})"
    elif choice.mode == "url" and broker_url is not None and is_redis_url(broker_url):
        needs = f"a Redis broker URL ({sources.get('broker_url', 'broker_url')})"
    else:
        return
    if find_spec("redis") is None:
        raise ValueError(f"{needs} needs the redis package, which is not installed: "
                         f"pip install 'pytest-celery-astra[redis]'")


def check_broker_url(url: str) -> None:
    """Raise ValueError (one sentence, password masked) unless ``url`` is a broker URL kombu can use."""
    shown = url_for_message(url)
    fix = "fix --celery-astra-broker-url (env CELERY_ASTRA_BROKER_URL)"
    for candidate in str(url).split(";"):  # kombu accepts failover URLs separated by ";"
        candidate = candidate.strip().replace("{worker}", "gw0")
        scheme = candidate.partition("://")[0] if "://" in candidate else ""
        if scheme.split("+")[-1] not in KNOWN_SCHEMES:
            raise ValueError(
                f"broker URL {shown} has {'no transport' if not scheme else f'an unknown transport {scheme!r}'} "
                f"(expected amqp://, redis://, memory://, ...); {fix}")
        try:
            _ = urlsplit(candidate).port  # a port that is not a number raises ValueError
        except ValueError:
            raise ValueError(f"broker URL {shown} has a port that is not a number; {fix}") from None


def check_broker_answers(url: str, transport_options: dict, timeout: float = 5.0) -> None:
    """Connect once to an existing broker (url mode); raise ValueError with one sentence naming the cause.

    The embedded worker would otherwise retry until its start timeout, and advise raising it.
    """
    from kombu import Connection

    shown = url_for_message(url)
    fix = "fix --celery-astra-broker-url (env CELERY_ASTRA_BROKER_URL)"
    connection = Connection(url, connect_timeout=timeout, transport_options=transport_options)
    try:
        connection.connect()
    except Exception as error:  # every failure here is the user's broker or URL: say which, in one line
        name = type(error).__name__
        text = mask_url(str(error).splitlines()[0][:200]) if str(error).strip() else name
        if "AccessRefused" in name or "Authentication" in name or "NOAUTH" in text or "WRONGPASS" in text:
            cause = "refused the login"
            fix = "fix the user and password in --celery-astra-broker-url (env CELERY_ASTRA_BROKER_URL)"
        elif "vhost" in text.lower() or "NotAllowed" in name:
            cause = f"refused the virtual host ({text})"
            fix = "create the virtual host or fix it in --celery-astra-broker-url (env CELERY_ASTRA_BROKER_URL)"
        else:
            cause = f"could not be reached ({name}: {text})"
        raise ValueError(f"the broker at {shown} {cause}; {fix}") from None
    finally:
        connection.release()


def worker_broker_url(choice: BrokerChoice, settings: Settings, service: RunningService | None,
                      placement: Placement, kind: str | None = None,
                      vhosts: VhostPreparations | None = None) -> tuple[str, dict]:
    """The URL and transport options one xdist worker uses on the broker of ``kind`` (container mode;
    by default the first); its queues are its own (``placement``: its vhost or Redis key prefix). A vhost
    ``vhosts`` (the run's) is preparing is waited for; without it, the vhost is made now if missing.

    A kept (reused) RabbitMQ may serve other runs at the same time: the vhost then carries the run id.
    """
    if choice.mode == "memory":
        return "memory://localhost/", dict(MEMORY_TRANSPORT_OPTIONS)
    if choice.mode == "url":
        url = str(settings.broker_url).replace("{worker}", placement.worker).replace("{run}", placement.run_id)
        return url, (redis_isolation(placement) if is_redis_url(url) else {})
    assert service is not None
    if (kind or choice.kind) == "redis":
        return f"redis://{service.host}:{service.port}/0", {**CONTAINER_REDIS_TRANSPORT_OPTIONS,
                                                             **redis_isolation(placement)}
    vhost = placement.vhost()
    if vhost is None:
        return f"amqp://guest:guest@{service.host}:{service.port}//", {}
    (vhosts or VhostPreparations()).ensure(service, vhost)
    return f"amqp://guest:guest@{service.host}:{service.port}/{vhost}", {}


def is_redis_url(url: str) -> bool:
    return url.partition("://")[0].split("+")[-1] in ("redis", "rediss", "sentinel")


def redis_isolation(placement: Placement) -> dict:
    """kombu's ``global_keyprefix``: every key and pub/sub channel of this run and worker carries it,
    so runs and xdist workers sharing one Redis never see each other's queues (no database-number cap)."""
    return {"global_keyprefix": placement.redis_key_prefix()}


def check_url_isolates_workers(url: str, worker: str) -> None:
    """Under xdist, refuse an AMQP URL without ``{worker}``: the workers would take each other's tasks."""
    if worker == "master" or is_redis_url(url) or "{worker}" in url or url.startswith("memory"):
        return
    raise ValueError(
        f"under pytest-xdist the broker URL {url_for_message(url)} would give every worker the same queues, so "
        f"they would run each other's tasks; put {{worker}} in its virtual host (each must exist, like "
        f"amqp://user:pass@host//tests_{{worker}}) or use a Redis URL (isolated by key prefix); fix "
        f"--celery-astra-broker-url (env CELERY_ASTRA_BROKER_URL)")


class VhostPreparations:
    """The virtual hosts one run is creating in the background, by (container id, vhost); the run owns
    one (``RunContext.vhost_preparations``), so two runs in one process never wait for each other's."""

    def __init__(self) -> None:
        self._futures: dict[tuple[str, str], concurrent.futures.Future[None]] = {}
        self._lock = threading.Lock()  # prepared in a start thread, ensured in the test's thread

    def prepare(self, service: RunningService, vhost: str) -> None:
        """Start creating ``vhost`` in a background thread, so that it overlaps Cassandra's start, connect
        and DDL (``rabbitmqctl`` takes about 1 s; a kept container's management API ~15 ms); :meth:`ensure`
        then only waits. Nothing to do for a vhost made when the container started (``service.vhosts``)."""
        key = (service.container_id, vhost)
        with self._lock:
            if key not in self._futures and vhost not in service.vhosts:
                self._futures[key] = _background(create_vhosts, service, [vhost])

    def ensure(self, service: RunningService, vhost: str) -> None:
        """A RabbitMQ virtual host per worker keeps its queues apart, named queues included: wait for the
        one :meth:`prepare` started (its error, if any, is raised here), or create it now."""
        with self._lock:
            future = self._futures.pop((service.container_id, vhost), None)
        if future is not None:
            future.result()
        elif vhost not in service.vhosts:
            create_vhosts(service, [vhost])


def xdist_worker_vhosts(placement: Placement, settings: Settings) -> list[str]:
    """The vhosts of every xdist worker of this run (``gw0`` … from ``PYTEST_XDIST_WORKER_COUNT``), which
    the worker that starts the run's own RabbitMQ makes at once (:func:`with_worker_vhosts`); empty when
    there is nothing to share: no xdist, or a kept container (its management API makes one in ~15 ms)."""
    count = os.environ.get("PYTEST_XDIST_WORKER_COUNT", "")
    if placement.worker == CONTROLLER or settings.reuse_containers or not count.isdigit():
        return []
    names = [vhost for number in range(int(count)) if (vhost := placement.of_worker(f"gw{number}").vhost())]
    own = placement.vhost()
    return names if own is None or own in names else names + [own]


def with_worker_vhosts(service: RunningService, vhosts: list[str]) -> RunningService:
    """Right after the run's RabbitMQ answers, while Cassandra still boots: make every xdist worker's vhost
    with one ``rabbitmqctl`` (one Erlang VM instead of one per worker, ~0.6 s of CPU each) and record them
    with the service, so the workers only use them. On failure each worker makes its own (and reports it)."""
    if not vhosts:
        return service
    try:
        create_vhosts(service, vhosts)
    except Exception as error:  # noqa: BLE001 - each worker tries again and reports its own error
        logger.info("pytest-celery-astra: could not make the xdist workers' vhosts at once (%s)", error)
        return service
    return dataclasses.replace(service, vhosts=tuple(vhosts))


def _background(function, *args) -> "concurrent.futures.Future[None]":
    future: concurrent.futures.Future[None] = concurrent.futures.Future()

    def run() -> None:
        try:
            future.set_result(function(*args))
        except BaseException as error:  # handed to the waiter
            future.set_exception(error)

    threading.Thread(target=run, name="celery-astra-vhost", daemon=True).start()
    return future
