"""What a ``celery worker`` process needs to wire the user's app as the test process did: one typed,
versioned :class:`Wiring`.

The app fixture builds it (``factories.wired_app``); :class:`~pytest_celery_astra.workers.process.ProcessWorker`
hands it to the worker process in two parts: a JSON file in its private directory with everything but the
secrets, and the secrets (the broker URL, the Cassandra password) in the child's environment, so no file
ever holds them. ``process_app.py`` reads both back with :meth:`Wiring.read`. A file written by another
release of the plugin (a different :data:`VERSION`) is refused in one sentence, not half-read.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlsplit

from pytest_celery_astra.cassandra.target import CassandraTarget
from pytest_celery_astra.errors import ConfigurationError
from pytest_celery_astra.masking import MaskedUrl, Secret

# Bumped whenever a field changes meaning or is added without a default.
VERSION = 1
# The environment variables the worker process reads: the file's path, and the secrets.
CONFIG_ENV = "CELERY_ASTRA_PROCESS_CONFIG"
SECRETS_ENV = "CELERY_ASTRA_PROCESS_SECRETS"


@dataclass(frozen=True)
class Wiring:
    """The app (``module:attribute``), its broker, its result table, and how it waits for results."""

    app: str | None
    broker_url: MaskedUrl
    transport_options: dict[str, Any]
    target: CassandraTarget  # the test process's: where Cassandra answers, and as whom
    keyspace: str
    table: str
    read_consistency: str
    write_consistency: str
    poll_interval: float
    default_queue: str
    broker_mode: str
    # Modules defining the app's tasks, imported by the worker process (module -> task names).
    task_modules: dict[str, list[str]] = field(default_factory=dict)
    version: int = VERSION

    def secrets(self) -> list[str]:
        """The passwords never printed or written (Cassandra's, the broker URL's): for masking a worker's log."""
        try:
            broker_password = urlsplit(MaskedUrl(self.broker_url).unmasked()).password
        except ValueError:
            broker_password = None
        return [value for value in (self.target.password, broker_password) if value]

    def write(self, path: Path) -> dict[str, str]:
        """Write the file (0600) without the secrets; return the environment that carries them."""
        public = asdict(self)
        public["broker_url"] = None
        public["target"]["password"] = None
        path.touch(mode=0o600)
        path.write_text(json.dumps(public))
        secrets = {"broker_url": MaskedUrl(self.broker_url).unmasked(),
                   "password": None if self.target.password is None else str(self.target.password)}
        return {CONFIG_ENV: str(path), SECRETS_ENV: json.dumps(secrets)}

    @classmethod
    def read(cls, environ: Mapping[str, str] = os.environ) -> "Wiring":
        """The wiring :meth:`write` handed this process."""
        values = json.loads(Path(environ[CONFIG_ENV]).read_text())
        if values.get("version") != VERSION:
            raise ConfigurationError(
                f"pytest-celery-astra: the worker process was wired by another release of the plugin (wiring "
                f"version {values.get('version')!r}, this one reads {VERSION}); run it with the same installation "
                f"as the tests.")
        secrets = json.loads(environ.get(SECRETS_ENV) or "{}")
        target = values.pop("target")
        password = secrets.get("password")
        values["target"] = CassandraTarget(
            **{**target, "hosts": tuple(target["hosts"]),
               "password": Secret(password) if password is not None else None})
        values["broker_url"] = MaskedUrl(secrets.get("broker_url") or "")
        return cls(**values)
