"""What one pytest process knows about the run: settings, choices, shared state."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Collection, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest

from pytest_celery_astra.brokers.choice import (
    BrokerChoice,
    VhostPreparations,
    check_broker_url,
    check_client_installed,
    check_url_isolates_workers,
    choose_broker,
)
from pytest_celery_astra.cassandra.result_rows import ResultRows
from pytest_celery_astra.cassandra.target import CassandraTarget
from pytest_celery_astra.containers.coordination import RunState
from pytest_celery_astra.containers.engine import EngineProbe, no_engine_message, probe_engine
from pytest_celery_astra.containers.services import (
    ContainerSpec,
    RunningService,
    cassandra_spec,
    check_not_cancelled,
)
from pytest_celery_astra.errors import ConfigurationError, ServiceStartError
from pytest_celery_astra.masking import Secret
from pytest_celery_astra.naming import CONTROLLER, Placement
from pytest_celery_astra.run.interrupts import Interrupts
from pytest_celery_astra.settings import Settings
from pytest_celery_astra.workers.in_flight import InFlight
from pytest_celery_astra.workers.journal import TaskJournal

RUN_CONTEXT_KEY = pytest.StashKey["RunContext"]()


@dataclasses.dataclass
class RunContext:
    """Made once per process in ``pytest_configure`` and kept in ``config.stash``.

    Nothing here probes, imports or creates anything until a test asks for a
    plugin fixture: a suite that never does is not changed by the plugin.
    """

    settings: Settings
    worker: str
    state: RunState
    owns_state: bool
    services: dict[str, RunningService] = dataclasses.field(default_factory=dict)
    _starts: dict[str, Future] = dataclasses.field(default_factory=dict)  # by service, in start order
    _start_pool: ThreadPoolExecutor | None = None
    engine: EngineProbe | None = None
    _broker: BrokerChoice | None = None
    _preflight_error: str | None = None
    _preflight_done: bool = False
    reaped: list[str] = dataclasses.field(default_factory=list)  # what killed runs left, removed at start
    rows: ResultRows = dataclasses.field(default_factory=ResultRows)  # the result rows' ledger (result_rows.py)
    # Tasks published in this process and not yet run (Celery's signals, while an embedded worker runs).
    in_flight: InFlight = dataclasses.field(default_factory=InFlight)
    # The current test's tasks and what a worker thread of this process did with them (Celery's signals, once an
    # app is wired; begun at each test's set-up): why a .get() timed out, a failing test's report section.
    journal: TaskJournal = dataclasses.field(default_factory=TaskJournal)
    # Worker processes started so far, by node name: each start gets a node name of its own (unique_node_name).
    node_starts: dict[str, int] = dataclasses.field(default_factory=dict)
    # Set when the run is interrupted: starts still waiting give up at once (services.start_container).
    cancel_starts: threading.Event = dataclasses.field(default_factory=threading.Event)
    bundle_copy: Path | None = None  # this process's private copy of the Astra bundle (bundle.py)
    bundle_origin: str | None = None  # where a downloaded bundle came from (--astra-db-id)
    _placement: Placement | None = None
    # RabbitMQ vhosts this process is creating in the background (brokers/choice.py).
    vhost_preparations: VhostPreparations = dataclasses.field(default_factory=VhostPreparations)
    # The run's SIGINT/SIGTERM handling: whether an interrupt started the cleanup (interrupts.py).
    interrupts: Interrupts = dataclasses.field(default_factory=Interrupts)
    # An xdist worker whose collected tests fault services (celery_astra_services): its containers are its own,
    # so that a fault reaches none of the other xdist workers' tests (decided at collection: uses_own_containers).
    own_containers: bool = False

    def uses_own_containers(self, fixture_names_per_test: Iterable[Collection[str]]) -> bool:
        """Decide, once the tests are collected, whether this xdist worker starts containers of its own: it may
        run a test that faults them. Not without xdist (the run's containers are its own already), nor with
        reuse (kept containers may be other runs': the fixture refuses there), nor with ``xdist_faults = skip``."""
        self.own_containers = (self.worker != CONTROLLER and self.settings.xdist_faults == "own"
                               and not self.settings.reuse_containers and not self.services and not self._starts
                               and any("celery_astra_services" in names for names in fixture_names_per_test))
        return self.own_containers

    @property
    def broker(self) -> BrokerChoice:
        """The broker mode; ``auto`` probes the container engine, on first use only."""
        if self._broker is None:
            settings = self.settings
            if settings.broker == "auto" and settings.broker_url is None:
                self.engine = probe_engine()
            try:
                self._broker = choose_broker(settings, self.engine)
            except ValueError as error:
                raise ConfigurationError(f"pytest-celery-astra: {error}.") from None
        return self._broker

    def unique_node_name(self, node_name: str) -> str:
        """``node_name`` for its first start in this run, then ``name_2@host``, ``name_3@host``...: a worker
        process never shares its node name — and its exclusive pidbox queue, which RabbitMQ keeps until the
        broker sees the old connection close — with one started before it (two fixtures of one app, or a
        restart after a broker switch)."""
        starts = self.node_starts[node_name] = self.node_starts.get(node_name, 0) + 1
        if starts == 1:
            return node_name
        name, at, host = node_name.partition("@")
        return f"{name}_{starts}{at}{host}"

    def preflight(self) -> None:
        """Check, before any container starts, what can be checked: settings from the environment,
        the Astra settings, the app, the broker URL. A failure is kept and raised again at once."""
        if self._preflight_error is not None:
            raise ConfigurationError(self._preflight_error)
        if self._preflight_done:
            return
        try:
            self._check_before_services()
        except (ConfigurationError, pytest.UsageError, ImportError) as error:
            self._preflight_error = str(error)
            raise ConfigurationError(self._preflight_error) from None
        self._preflight_done = True

    def _check_before_services(self) -> None:
        settings = self.settings
        if settings.deferred_problem:
            raise ConfigurationError(settings.deferred_problem)
        if settings.astra:
            from pytest_celery_astra.astra.preflight import check_astra_settings

            check_astra_settings(settings)
            if settings.astra_bundle is None:
                self._download_bundle()
        if settings.broker_url is not None:
            try:
                check_broker_url(settings.broker_url)
                check_url_isolates_workers(str(settings.broker_url), self.worker)
            except ValueError as error:
                raise ConfigurationError(f"pytest-celery-astra: {error}.") from None
        if settings.app is not None:
            from pytest_celery_astra.celery_app import load_app

            load_app(settings.app)
        try:
            check_client_installed(self.broker, None if settings.broker_url is None else str(settings.broker_url),
                                   settings.sources)
        except ValueError as error:
            raise ConfigurationError(f"pytest-celery-astra: {error}.") from None

    def _download_bundle(self) -> None:
        """``--astra-db-id`` without a bundle: fetch a fresh one into this process's private directory."""
        from pytest_celery_astra.astra.bundle import private_directory
        from pytest_celery_astra.astra.bundle_download import BundleDownloadError, download_bundle
        from pytest_celery_astra.astra.preflight import check_bundle

        settings = self.settings
        target = private_directory() / "secure-connect-bundle.zip"
        self.bundle_copy = target  # removed at the end of the process, downloaded or not
        try:
            # preflight() checked both are given (check_astra_settings)
            region = download_bundle(target, cast(str, settings.astra_db_id), cast(str, settings.astra_token),
                                     settings.astra_db_region, settings.astra_devops_url)
        except BundleDownloadError as error:
            raise ConfigurationError(f"pytest-celery-astra (--astra): {error}.") from None
        check_bundle(str(target))
        self.bundle_origin = f"downloaded for database {settings.astra_db_id} ({region})"

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def cassandra_mode(self) -> str:
        if self.settings.astra:
            return "astra"
        return "hosts" if self.settings.cassandra_hosts else "container"

    @property
    def placement(self) -> Placement:
        """Where this process's data lives (keyspaces, tables, vhost, key prefix, node names), decided once."""
        if self._placement is None:
            settings = self.settings
            self._placement = Placement(
                run_id=self.run_id, worker=self.worker, keyspace_prefix=settings.keyspace, table=settings.table,
                astra_keyspace=settings.astra_keyspace if settings.astra else None,
                shares_cassandra=self.shares_cassandra, shares_broker=settings.reuse_containers)
        return self._placement

    @property
    def shares_cassandra(self) -> bool:
        """An existing cluster, or a kept container: other runs may use it at the same time."""
        return self.cassandra_mode == "hosts" or self.settings.reuse_containers

    @property
    def leases_keyspaces(self) -> bool:
        """Kept containers: each process leases a long-lived keyspace instead of making its own (leases.py)."""
        return self.cassandra_mode == "container" and self.settings.reuse_containers

    @property
    def keeps_cluster_keyspaces(self) -> bool:
        """An existing cluster with ``keep_keyspaces``: each process leases a kept keyspace cluster-wide
        (cluster_leases.py)."""
        return self.cassandra_mode == "hosts" and self.settings.keep_keyspaces

    def keyspace_lease(self, prefix: str | None = None):
        """A free leased keyspace on the kept Cassandra (after :meth:`start_services`), or None: then the
        run makes a keyspace of its own, named by its run id."""
        if not self.leases_keyspaces:
            return None
        from pytest_celery_astra.cassandra.leases import acquire
        from pytest_celery_astra.cassandra.marks import lease_fingerprint

        placement = self.placement
        return acquire(self.services["cassandra"].container_id, prefix or self.settings.keyspace,
                       lease_fingerprint(placement.result_table(prefix)),
                       lambda slot: placement.kept_keyspace(slot, prefix))

    def container_specs(self) -> list[ContainerSpec]:
        """Cassandra first: it boots slowest, and containers are created one at a time (services.create_lock_path)."""
        specs = [cassandra_spec(self.settings.cassandra_image)] if self.cassandra_mode == "container" else []
        return specs + self.broker.container_specs(self.settings)

    def start_services(self, names: Collection[str] | None = None) -> dict[str, RunningService]:
        """Start (or join) the containers this run needs, broker and Cassandra concurrently, and wait
        for those in ``names`` (default: all); the others go on starting in the background (the
        database fixture waits for Cassandra alone while RabbitMQ may still boot)."""
        specs = [spec for spec in self.container_specs()
                 if spec.name not in self.services and spec.name not in self._starts]
        if specs:
            self._refuse_if_orphaned()
            self.interrupts.install(self.state.has_something_to_clean, self.state.stop_all if self.owns_state else None)
            engine = probe_engine()
            if not engine.answers:
                alternative = ("--celery-astra-cassandra-hosts (an existing cluster)"
                               if any(s.name == "cassandra" for s in specs) else "--celery-astra-broker memory")
                raise ServiceStartError(no_engine_message(engine, " and ".join(s.name for s in specs), alternative))
            if self._start_pool is None:
                self._start_pool = ThreadPoolExecutor(max_workers=3, thread_name_prefix="celery-astra-start")
            created_before = None
            for spec in specs:  # Cassandra first: it boots slowest; each waits for the one before to be created
                created = threading.Event()
                self._starts[spec.name] = self._start_pool.submit(self._obtain, spec, created_before, created)
                created_before = created
        errors = []
        try:
            for name, future in self._starts.items():
                if names is not None and name not in names:
                    continue
                try:
                    self.services[name] = future.result()
                except ServiceStartError as error:
                    errors.append(str(error))
        except BaseException:  # Ctrl-C / SIGTERM while waiting: the starting threads give up now
            self.cancel_starts.set()
            raise
        if self._start_pool is not None and all(future.done() for future in self._starts.values()):
            self._start_pool.shutdown(wait=True)  # idle threads: no thread of the plugin outlives its starts
            self._start_pool = None
        if errors:
            raise ServiceStartError("\n".join(errors))
        return self.services

    def stop_starting(self) -> None:
        """At the end of the process: starts nobody waited for give up, and their threads are joined, so
        that every container they made is recorded before the run's containers are removed."""
        if self._start_pool is None:
            return
        pending = any(not future.done() for future in self._starts.values())
        if pending:
            self.cancel_starts.set()
        self._start_pool.shutdown(wait=True)
        self._start_pool = None
        if pending:
            self.cancel_starts.clear()

    def _obtain(self, spec: ContainerSpec, created_before: threading.Event | None,
                created: threading.Event) -> RunningService:
        """One container (in its start thread), created after the one started before it (containers are
        created one at a time, services.create_lock_path: the first in line boots first). RabbitMQ usually
        answers before Cassandra: its vhosts are made from then on, while Cassandra still boots — all
        xdist workers' at once by the worker that started it, else this worker's own in the background
        (``vhost_preparations``)."""
        from pytest_celery_astra.brokers.choice import with_worker_vhosts, xdist_worker_vhosts

        settings = self.settings
        holder = self.worker if self.own_containers else None
        vhost = self.placement.vhost()
        try:
            self._wait_for_turn(spec, created_before)
            if spec.name != "rabbitmq" or self.broker.mode != "container":
                return self.state.obtain(spec, settings.startup_timeout, settings.reuse_containers,
                                         on_created=lambda container_id: created.set(), cancelled=self.cancel_starts,
                                         holder=holder)
            vhosts = ([vhost] if vhost else []) if holder else xdist_worker_vhosts(self.placement, settings)
            service = self.state.obtain(
                spec, settings.startup_timeout, settings.reuse_containers,
                prepare=(lambda started: with_worker_vhosts(started, vhosts)) if vhosts else None,
                on_created=lambda container_id: created.set(), cancelled=self.cancel_starts, holder=holder)
        finally:
            created.set()  # also when it was found running, kept, or failed
        if vhost is not None:
            self.vhost_preparations.prepare(service, vhost)
        return service

    def _wait_for_turn(self, spec: ContainerSpec, created_before: threading.Event | None) -> None:
        """Until the container started before this one is created (or found, or failed); none is
        created after an interrupt."""
        deadline = time.monotonic() + self.settings.startup_timeout
        while created_before is not None and not created_before.wait(0.05) and time.monotonic() < deadline:
            if self.cancel_starts.is_set():
                break
        check_not_cancelled(spec.name, self.cancel_starts)

    def _refuse_if_orphaned(self) -> None:
        """An xdist worker whose pytest controller is gone (killed) must not start a new set of containers."""
        if self.owns_state:
            return
        if not self.state.owner.pid or os.getppid() == self.state.owner.pid:
            return
        raise ServiceStartError(
            f"pytest-celery-astra: the pytest process that started this xdist worker "
            f"({self.state.owner.describe()}) is gone; not starting containers nobody would remove.")

    def cassandra_target(self) -> CassandraTarget:
        settings = self.settings
        if self.cassandra_mode == "astra":
            username: str | None
            password: Secret | None
            if settings.astra_token is not None:
                username, password = "token", settings.astra_token
            else:
                username, password = settings.astra_client_id, settings.astra_client_secret
            if self.bundle_copy is None:
                from pytest_celery_astra.astra.bundle import private_copy

                self.bundle_copy = private_copy(cast(str, settings.astra_bundle))  # given, or downloaded above
            return CassandraTarget(bundle_path=str(self.bundle_copy),
                                   bundle_origin=self.bundle_origin or settings.astra_bundle,
                                   username=username, password=password)
        if self.cassandra_mode == "hosts":
            return CassandraTarget(hosts=settings.cassandra_hosts or (), port=settings.cassandra_port,
                                   username=settings.cassandra_username, password=settings.cassandra_password)
        service = self.services["cassandra"]
        return CassandraTarget(hosts=(service.host,), port=service.port, protocol_version=5)
