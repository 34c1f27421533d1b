"""One set of containers per test run, shared by every xdist worker.

The process that runs the session (the xdist controller, or pytest itself
without xdist) owns a state directory and hands its path to the workers. The
first worker that needs a service starts it under a file lock and writes where
it answers; the others read that. The owner removes every container recorded
there once, after the last worker finished — also after failures and Ctrl-C.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import tempfile
import threading
import uuid
import warnings
from pathlib import Path
from typing import Callable, Iterator

import pytest

from pytest_celery_astra.containers.reuse import find_reusable
from pytest_celery_astra.containers.services import (
    ContainerSpec,
    RunningService,
    check_not_cancelled,
    owned_containers,
    remove_container,
    start_container,
)
from pytest_celery_astra.errors import ServiceStartError
from pytest_celery_astra.host import Owner, file_lock

logger = logging.getLogger(__name__)


STATE_PREFIX = "pytest-celery-astra-"


@dataclasses.dataclass
class RunState:
    """The shared state directory of one run, its id, and the process that owns the run."""

    directory: Path
    run_id: str
    owner: Owner = dataclasses.field(default_factory=Owner.this_process)

    @classmethod
    def create(cls) -> "RunState":
        """A new run id and the path of its state directory, which is made only when a service starts."""
        run_id = uuid.uuid4().hex[:10]
        return cls(Path(tempfile.gettempdir()) / f"{STATE_PREFIX}{run_id}", run_id)

    def to_workerinput(self) -> dict[str, str]:
        return {"celery_astra_state_dir": str(self.directory), "celery_astra_run_id": self.run_id,
                "celery_astra_owner": json.dumps(dataclasses.asdict(self.owner))}

    @classmethod
    def from_workerinput(cls, workerinput: dict) -> "RunState":
        return cls(Path(workerinput["celery_astra_state_dir"]), workerinput["celery_astra_run_id"],
                   Owner(**json.loads(workerinput["celery_astra_owner"])))

    def has_something_to_clean(self) -> bool:
        return self.directory.exists()

    def obtain(self, spec: ContainerSpec, timeout: float, reuse: bool = False,
               prepare: Callable[[RunningService], RunningService] | None = None,
               on_created: Callable[[str], None] = lambda container_id: None,
               cancelled: threading.Event | None = None, holder: str | None = None) -> RunningService:
        """The running service for ``spec``: started once per run, whoever asks first; that process also
        runs ``prepare`` on it (still under the lock) and records what it returns. ``on_created`` gets
        the id of a container this call creates, once it is recorded. With ``holder`` (an xdist worker id)
        the container is that worker's alone, recorded under its name; the run's end removes it all the same."""
        self.ensure_directory()
        key = spec.name if holder is None else f"{spec.name}-{holder}"
        record = self.directory / f"{key}.json"
        with file_lock(self.directory / f"{key}.lock"):
            # Interrupted while waiting for the lock: nothing more to start or remove here (the run's end
            # removes what the record names), and no SDK import on the way out.
            check_not_cancelled(spec.name, cancelled)
            if record.exists():
                data = json.loads(record.read_text())
                if "error" in data:
                    raise ServiceStartError(data["error"])
                if "host" in data:
                    data.pop("keep", None)
                    data["vhosts"] = tuple(data.get("vhosts", ()))
                    return RunningService(**data)
                if "container_id" in data:  # a start that was interrupted: remove its container first
                    remove_container(data["container_id"])
            self._reap_once()

            def remember(container_id: str) -> None:
                # Recorded before the readiness wait: an interrupt during start still removes it.
                record.write_text(json.dumps({"name": spec.name, "container_id": container_id, "keep": reuse}))
                on_created(container_id)

            try:
                service = (find_reusable(spec, timeout) if reuse else None) or start_container(
                    spec, timeout, self.run_id, keep=reuse, owner=self.owner, on_created=remember,
                    cancelled=cancelled)
            except ServiceStartError as error:
                # Other workers fail with the same message instead of retrying for minutes.
                record.write_text(json.dumps({"error": str(error)}))
                raise
            if prepare is not None:
                service = prepare(service)
            data = dataclasses.asdict(service)
            data["keep"] = reuse
            record.write_text(json.dumps(data))
            return service

    def ensure_directory(self) -> None:
        if not self.directory.exists():
            self.directory.mkdir(mode=0o700, exist_ok=True)
            owner_file = self.directory / "owner.json"
            if not owner_file.exists():
                owner_file.write_text(json.dumps(dataclasses.asdict(self.owner)))

    def _reap_once(self) -> None:
        """Before this run's first container: remove what killed runs on this host left behind."""
        marker = self.directory / "reaped"
        if marker.exists():
            return
        marker.write_text("")
        warn_reaped(reap_dead_runs(keep=self.directory))

    def stop_all(self) -> list[str]:
        """Remove every container this run started (kept ones excepted); return problems as text."""
        problems: list[str] = []
        if not self.directory.exists():
            return problems
        for record in sorted(self.directory.glob("*.json")):
            if record.name == "owner.json":
                continue
            data = json.loads(record.read_text())
            container_id = data.get("container_id")
            if container_id and data.get("keep"):
                problems.extend(_forget_run_in_kept_broker(data, self.run_id))
                continue
            if not container_id:
                continue
            try:
                remove_container(container_id)
            except Exception as error:
                problems.append(f"could not remove the {data.get('name')} container {container_id[:12]}: {error}")
        shutil.rmtree(self.directory, ignore_errors=True)
        return problems


def warn_reaped(removed: list[str]) -> None:
    """Say what was removed of killed runs after the header was printed (keyspaces, Astra tables, and
    containers whose state directory was gone): a warning in the run's summary."""
    if removed:
        warnings.warn(pytest.PytestWarning(
            "pytest-celery-astra: removed what killed earlier runs left: " + "; ".join(removed)))


def _dead_state_directories(keep: Path | None) -> Iterator[tuple[Path, Owner]]:
    """State directories (and bundle copies) in the temp directory whose owner, on this host, is gone."""
    for directory in Path(tempfile.gettempdir()).glob(f"{STATE_PREFIX}*"):
        if directory == keep or not directory.is_dir():
            continue
        try:
            owner = Owner(**json.loads((directory / "owner.json").read_text()))
        except (OSError, ValueError, TypeError):
            continue
        if owner.is_provably_gone():
            yield directory, owner


def dead_runs_left(keep: Path | None = None) -> bool:
    """Whether a killed run on this host left its state directory (a cheap look at the temp directory,
    asking no container engine)."""
    return next(_dead_state_directories(keep), None) is not None


def reap_dead_runs(keep: Path | None = None) -> list[str]:
    """Remove containers and state directories whose owning pytest process, on this host, is gone.

    Containers kept for reuse are left alone, and so is anything of a live run or of another host.
    """
    removed: list[str] = []
    for directory, owner in list(_dead_state_directories(keep)):
        dead_run = directory.name[len(STATE_PREFIX):]
        for record in directory.glob("*.json"):
            try:
                data = json.loads(record.read_text())
            except (OSError, ValueError):
                continue
            if data.get("keep") and data.get("name") == "rabbitmq" and not _forget_run_in_kept_broker(data, dead_run):
                removed.append(f"virtual hosts of run {dead_run} in the kept {data.get('name')} container")
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(f"state directory {directory} ({owner.describe()})")
    for container_id, name, owner in owned_containers():
        if owner.is_provably_gone():
            try:
                remove_container(container_id)
            except Exception as error:  # one that cannot be removed must not stop this run
                logger.warning("pytest-celery-astra: could not remove container %s: %s", container_id[:12], error)
                continue
            removed.append(f"{name} container {container_id[:12]} ({owner.describe()})")
    return removed


def _forget_run_in_kept_broker(record: dict, run_id: str) -> list[str]:
    """A kept RabbitMQ container outlives the run: delete the run's virtual hosts from it.
    Returns problems as text (none for other services, which hold nothing per run)."""
    if record.get("name") != "rabbitmq" or not record.get("container_id"):
        return []
    from pytest_celery_astra.containers.rabbitmq_vhosts import delete_run_vhosts

    try:
        delete_run_vhosts(record["container_id"], run_id, record.get("host"), record.get("admin_port"))
    except Exception as error:  # a kept container someone removed: nothing left to delete
        return [f"could not delete run {run_id}'s virtual hosts in the kept rabbitmq container: {error}"]
    return []
