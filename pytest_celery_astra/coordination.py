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
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import ServiceStartError
from .services import ContainerSpec, RunningService, remove_container, start_container
from .reuse import find_reusable

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class RunState:
    """The shared state directory of one run and its id."""

    directory: Path
    run_id: str

    @classmethod
    def create(cls) -> "RunState":
        """A new run id and the path of its state directory, which is made only when a service starts."""
        run_id = uuid.uuid4().hex[:10]
        return cls(Path(tempfile.gettempdir()) / f"pytest-celery-astra-{run_id}", run_id)

    def to_workerinput(self) -> dict[str, str]:
        return {"celery_astra_state_dir": str(self.directory), "celery_astra_run_id": self.run_id}

    @classmethod
    def from_workerinput(cls, workerinput: dict) -> "RunState":
        return cls(Path(workerinput["celery_astra_state_dir"]), workerinput["celery_astra_run_id"])

    def obtain(self, spec: ContainerSpec, timeout: float, reuse: bool = False) -> RunningService:
        """The running service for ``spec``: started once per run, whoever asks first."""
        self.directory.mkdir(mode=0o700, exist_ok=True)
        record = self.directory / f"{spec.name}.json"
        with _file_lock(self.directory / f"{spec.name}.lock"):
            if record.exists():
                data = json.loads(record.read_text())
                if "error" in data:
                    raise ServiceStartError(data["error"])
                data.pop("keep", None)
                return RunningService(**data)
            try:
                service = (find_reusable(spec, timeout) if reuse else None) or start_container(
                    spec, timeout, self.run_id, keep=reuse)
            except ServiceStartError as error:
                # Other workers fail with the same message instead of retrying for minutes.
                record.write_text(json.dumps({"error": str(error)}))
                raise
            data = dataclasses.asdict(service)
            data["keep"] = reuse
            record.write_text(json.dumps(data))
            return service

    def stop_all(self) -> list[str]:
        """Remove every container this run started (kept ones excepted); return problems as text."""
        problems: list[str] = []
        if not self.directory.exists():
            return problems
        for record in sorted(self.directory.glob("*.json")):
            data = json.loads(record.read_text())
            container_id = data.get("container_id")
            if not container_id or data.get("keep"):
                continue
            try:
                remove_container(container_id)
            except Exception as error:
                problems.append(f"could not remove the {data.get('name')} container {container_id[:12]}: {error}")
        shutil.rmtree(self.directory, ignore_errors=True)
        return problems


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock between the processes of one run (xdist workers)."""
    with open(path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # Windows: no fcntl; lock the first byte instead
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
            return
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
