"""Opt-in container reuse: keep containers after a run, pick them up on the next one.

Kept containers carry the hash of their configuration. A kept container whose
hash matches the wanted one, and which answers, is reused, so a changed image or
setting never runs stale services. A stopped kept container is removed. A running
one with another hash is left alone: another project's run, or one of this
project's with other settings, may be using it right now (nothing here can tell),
and removing it would cut that run's broker or database from under it.
"""

from __future__ import annotations

import logging
import time

from pytest_celery_astra.containers.engine import ListedContainer, list_containers
from pytest_celery_astra.containers.services import (
    GREETINGS,
    LABEL_CONFIG_HASH,
    LABEL_REUSE,
    LABEL_SERVICE,
    ContainerSpec,
    RunningService,
    remove_container,
    wait_until_ready,
)

logger = logging.getLogger(__name__)
REUSED_READY_TIMEOUT = 10.0


def find_reusable(spec: ContainerSpec, timeout: float) -> RunningService | None:
    """A kept, matching, answering container for ``spec``, or None; removes stopped kept ones.

    One container list and one protocol greeting: neither the docker SDK nor testcontainers is imported
    unless something has to be removed (engine.list_containers)."""
    found = None
    for container in list_containers([f"{LABEL_REUSE}=1", f"{LABEL_SERVICE}={spec.name}"]):
        matches = container.labels.get(LABEL_CONFIG_HASH) == spec.config_hash
        if container.running:
            # Another run may be using (or still starting) this one: never remove a running one.
            if matches and found is None:
                found = _answering(container, spec)
            elif not matches:
                logger.info("pytest-celery-astra: a kept %s container %s with another configuration is left "
                            "running (another run may use it); remove it with `docker rm -f %s` when no run does",
                            spec.name, container.id[:12], container.id[:12])
            continue
        logger.info("pytest-celery-astra: removing stopped kept %s container %s", spec.name, container.id[:12])
        remove_container(container.id)
    return found


def _answering(container: ListedContainer, spec: ContainerSpec) -> RunningService | None:
    started = time.monotonic()
    published = container.published(spec.port)
    if published is None:
        return None
    host, port = published
    admin = container.published(spec.admin_port) if spec.admin_port else None
    # A kept container was ready once: its protocol's greeting is proof enough that it still answers
    # (~1 ms, where a driver Cluster for one CQL query takes ~0.25 s). It may also be one another run
    # is still starting: then this waits, as for a new container.
    try:
        wait_until_ready(spec, host, port, REUSED_READY_TIMEOUT, probe=GREETINGS[spec.name])
    except Exception:
        return None
    return RunningService(
        name=spec.name, image=spec.image, container_id=container.id, host=host, port=port,
        seconds_to_ready=round(time.monotonic() - started, 2), reused=True,
        admin_port=admin[1] if admin else None,
    )
