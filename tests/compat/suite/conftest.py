"""A suite written for celery.contrib.pytest, as many Celery projects have one: session-wide settings in
``celery_config``, tasks defined per test on ``celery_app``, ``celery_worker.reload()`` to pick them up.

It runs unchanged under Celery's own plugin (``-p celery.contrib.pytest``: memory broker, cache backend) and
under ``-p pytest_celery_astra.celery_contrib`` (RabbitMQ or Redis, Cassandra)."""

import pytest


@pytest.fixture(scope="session")
def celery_config():
    return {
        "result_extended": True,
        "task_track_started": True,
        "worker_send_task_events": True,
        "task_send_sent_event": True,
        "result_chord_retry_interval": 0.1,
    }


@pytest.fixture(scope="session")
def celery_includes():
    return ["celery.contrib.testing.tasks"]  # celery.ping, for the worker's ping check
