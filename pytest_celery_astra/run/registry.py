"""What runs now in this pytest process: the workers, apps and database fixtures set up so far, in
``config.stash``. The factories register what they start; the per-test steps and the recovery after a
fault look here. Stash keys only: this module starts nothing.
"""

from __future__ import annotations

import pytest

from pytest_celery_astra.workers.protocol import Worker

# The worker fixtures' workers (thread or process: workers/protocol.py's Worker) running now, in start order.
RUNNING_WORKERS_KEY = pytest.StashKey[list[Worker]]()
# Database fixtures set up so far, by fixture name: each is cleaned after every test that uses it.
DATABASES_KEY = pytest.StashKey[dict]()
# The apps the app fixtures wired and have not closed yet, in set-up order.
WIRED_APPS_KEY = pytest.StashKey[list]()
# Which database fixture each plugin fixture (default or factory-made) stands on. The factories
# request their dependencies dynamically, so pytest's static closure of a test does not show them.
USES_DATABASE_KEY = pytest.StashKey[dict]()


def uses_database(request: pytest.FixtureRequest, database_fixture: str | None) -> None:
    """Record that the requesting fixture stands on ``database_fixture`` (none: nothing to record)."""
    if database_fixture is not None:
        request.config.stash.setdefault(USES_DATABASE_KEY, {})[request.fixturename] = database_fixture


def databases_used_by(config: pytest.Config, fixturenames) -> dict:
    """The set-up database fixtures (name -> TestDatabase) that the given fixtures stand on."""
    uses = config.stash.get(USES_DATABASE_KEY, {})
    databases = config.stash.get(DATABASES_KEY, {})
    wanted = {uses[name] for name in fixturenames if name in uses}
    return {name: databases[name] for name in wanted if name in databases}
