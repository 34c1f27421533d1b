"""Faults on demand: stop, start, restart, pause and unpause the run's broker and Cassandra containers
from a test, each returning once the change has taken effect; everything touched is restored after
the test, and the embedded workers and Cassandra sessions are checked to have recovered.

Container mode only. The containers are shared by every xdist worker of the run, so a fault would hit
the other workers' tests too: under xdist the fixture refuses (one sentence) instead.
"""

from __future__ import annotations

import time
from typing import Callable

from pytest_celery_astra.containers.engine import docker_client
from pytest_celery_astra.containers.services import READINESS_PROBES, RunningService
from pytest_celery_astra.errors import CeleryAstraError


class FaultError(CeleryAstraError):
    """A fault could not be made, or a service could not be restored after the test."""


class ServiceHandle:
    """One container of the run, to fault on demand: ``stop()``, ``start()``, ``restart()``,
    ``pause()`` (the port stays open but nothing answers), ``unpause()``."""

    def __init__(self, kind: str, service: RunningService, timeout: float,
                 on_back: Callable[[], None] | None = None, before_fault: Callable[[], None] | None = None):
        self.kind = kind  # "broker" or "cassandra"
        self.service = service
        self.timeout = timeout
        # Cassandra: the run's sessions must answer again too, not only a fresh connection.
        self.on_back = on_back
        # Cassandra: what must be in place before it goes away (the backends' first connections, still being made).
        self.before_fault = before_fault
        self.touched = False
        self.seconds: dict[str, float] = {}  # how long the last call of each action took

    def __repr__(self) -> str:
        return f"<ServiceHandle {self.kind} ({self.service.name}) {self.status}>"

    @property
    def status(self) -> str:
        """The container's status as the engine reports it: running, paused, exited, ..."""
        return self._container().status

    def stop(self) -> None:
        """Stop the container (SIGTERM, then SIGKILL after 10 s); returns once it has exited."""
        self._timed("stop", lambda: self._container().stop(timeout=10))

    def start(self) -> None:
        """Start the stopped container; returns once it answers real work (as at the run's start)."""
        def start() -> None:
            container = self._container()
            container.start()
            self._check_port(container)
            self._wait_ready()
        self._timed("start", start)

    def restart(self) -> None:
        """Stop, then start: returns once the service answers again."""
        started = time.monotonic()
        self.stop()
        self.start()
        self.seconds["restart"] = time.monotonic() - started

    def pause(self) -> None:
        """Freeze every process of the container: connections stay open, nothing answers."""
        self._timed("pause", lambda: self._container().pause())

    def unpause(self) -> None:
        """Thaw the container; returns once the service answers real work."""
        def unpause() -> None:
            self._container().unpause()
            self._wait_ready()
        self._timed("unpause", unpause)

    def restore(self) -> None:
        """Bring the service back to running and answering, whatever the test did to it."""
        status = self.status
        if status == "paused":
            self.unpause()
        elif status != "running":
            self.start()
        else:
            self._wait_ready()

    def _timed(self, action: str, run: Callable[[], None]) -> None:
        if self.before_fault is not None and not self.touched:
            self.before_fault()
        self.touched = True
        started = time.monotonic()
        try:
            run()
        except FaultError:
            raise
        except Exception as error:  # the engine's own error, in one sentence
            raise FaultError(f"pytest-celery-astra: could not {action} the {self.kind} container "
                             f"({self.service.name}): {str(error).splitlines()[0]}") from None
        self.seconds[action] = time.monotonic() - started

    def _container(self):
        client = docker_client()
        try:
            container = client.containers.get(self.service.container_id)
            container.reload()
            return container
        finally:
            client.close()

    def _check_port(self, container) -> None:
        """The app and the sessions know the port the service had; an engine that moved it breaks them."""
        container.reload()
        bindings = (container.attrs.get("NetworkSettings", {}).get("Ports") or {}).values()
        ports = {int(binding["HostPort"]) for entries in bindings for binding in (entries or ())}
        if ports and self.service.port not in ports:
            raise FaultError(
                f"pytest-celery-astra: the container engine gave the restarted {self.kind} container another "
                f"port ({', '.join(map(str, sorted(ports)))} instead of {self.service.port}); use pause() / "
                f"unpause(), which keep it.")

    def _wait_ready(self) -> None:
        probe = READINESS_PROBES[self.service.name]
        retry_until(
            time.monotonic() + self.timeout, lambda: probe(self.service.host, self.service.port),
            lambda error: f"pytest-celery-astra: the {self.kind} did not answer within {self.timeout:g} s after "
                          f"the fault ({str(error).splitlines()[0]}); raise --celery-astra-startup-timeout.",
            pause=0.1)
        if self.on_back is not None:
            self.on_back()


def retry_until(deadline: float, attempt: Callable[[], object], failure: Callable[[Exception], str],
                pause: float) -> None:
    """Call ``attempt`` until it raises nothing; past ``deadline``, raise :class:`FaultError` with
    ``failure(last error)``."""
    while True:
        try:
            attempt()
            return
        except Exception as error:  # not back yet
            if time.monotonic() > deadline:
                raise FaultError(failure(error)) from None
            time.sleep(pause)


class Services:
    """The run's containers as fault handles: ``.broker`` and ``.cassandra``."""

    def __init__(self, broker: ServiceHandle | None, cassandra: ServiceHandle | None):
        self._broker = broker
        self._cassandra = cassandra

    @property
    def broker(self) -> ServiceHandle:
        """The broker's container; a test that asks for it where the broker is not one is skipped."""
        if self._broker is None:
            import pytest

            pytest.skip("celery_astra_services: the broker is not a container of this run (url or memory mode), "
                        "so it cannot be faulted; use --celery-astra-broker container")
        return self._broker

    @property
    def cassandra(self) -> ServiceHandle:
        """Cassandra's container; a test that asks for it where Cassandra is not one is skipped."""
        if self._cassandra is None:
            import pytest

            pytest.skip("celery_astra_services: Cassandra is not a container of this run (an existing cluster "
                        "or Astra DB), so it cannot be faulted")
        return self._cassandra

    def touched(self) -> list[ServiceHandle]:
        return [handle for handle in (self._broker, self._cassandra) if handle is not None and handle.touched]
