"""Opt-in container reuse: keep containers after a run, pick them up on the next one.

Kept containers carry the hash of their configuration. A kept container whose
hash matches the wanted one, and which answers, is reused; one whose hash does
not match is removed, so a changed image or setting never runs stale services.
"""

from __future__ import annotations

import logging
import time

from .engine import docker_client
from .services import (
    GREETINGS, LABEL_CONFIG_HASH, LABEL_REUSE, LABEL_SERVICE, ContainerSpec, RunningService, wait_until_ready,
)

logger = logging.getLogger(__name__)
REUSED_READY_TIMEOUT = 10.0


def find_reusable(spec: ContainerSpec, timeout: float) -> RunningService | None:
    """A kept, matching, answering container for ``spec``, or None; removes mismatching or stopped ones."""
    client = docker_client()
    try:
        kept = client.containers.list(all=True, filters={"label": [f"{LABEL_REUSE}=1", f"{LABEL_SERVICE}={spec.name}"]})
        found = None
        for container in kept:
            matches = container.labels.get(LABEL_CONFIG_HASH) == spec.config_hash
            if matches and container.status == "running":
                # Another run may be using (or still starting) this one: never remove it.
                if found is None:
                    found = _answering(container, spec)
                continue
            logger.info("pytest-celery-astra: removing kept %s container %s (configuration changed or stopped)",
                        spec.name, container.short_id)
            container.remove(force=True, v=True)
        return found
    finally:
        client.close()


def _answering(container, spec: ContainerSpec) -> RunningService | None:
    started = time.monotonic()
    ports = container.attrs["NetworkSettings"]["Ports"]
    bindings = ports.get(f"{spec.port}/tcp") or []
    if not bindings:
        return None
    admin_bindings = (ports.get(f"{spec.admin_port}/tcp") or []) if spec.admin_port else []
    host = bindings[0].get("HostIp") or "127.0.0.1"
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    port = int(bindings[0]["HostPort"])
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
        admin_port=int(admin_bindings[0]["HostPort"]) if admin_bindings else None,
    )
