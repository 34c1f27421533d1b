"""The app a process worker runs: ``celery -A pytest_celery_astra.workers.process_app worker ...``.

Importing this module imports the user's app (``module:attribute``) and wires it to the test broker and
Cassandra exactly as the test process's app fixture did, from the JSON file named by
``CELERY_ASTRA_PROCESS_CONFIG`` (private, written by :class:`~pytest_celery_astra.workers.process.ProcessWorker`).
Everything else is Celery's own worker command line: pool, concurrency, node name, queues.
"""

from __future__ import annotations

import json
import os

from pytest_celery_astra.cassandra.database import CassandraTarget
from pytest_celery_astra.celery_app import configure_app, load_app
from pytest_celery_astra.masking import Secret
from pytest_celery_astra.workers.process import CONFIG_ENV


def _wired_app():
    with open(os.environ[CONFIG_ENV]) as handle:
        config = json.load(handle)
    target = config["target"]
    password = target.get("password")
    cassandra = CassandraTarget(
        hosts=tuple(target["hosts"]), port=target["port"], username=target.get("username"),
        password=Secret(password) if password is not None else None, bundle_path=target.get("bundle_path"),
        protocol_version=target.get("protocol_version"))
    app = load_app(config["app"])
    if config.get("default_queue"):
        app.conf.task_default_queue = config["default_queue"]
    return configure_app(
        app, config["broker_url"], config["transport_options"], cassandra.celery_settings(), config["keyspace"],
        config["table"], config["read_consistency"], config["write_consistency"], config["poll_interval"])


app = _wired_app()
