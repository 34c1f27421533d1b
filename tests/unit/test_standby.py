"""Which workers stand by during a test: those of an app for which the test asked for another worker. No services."""

import types

from pytest_celery_astra.workers.standby import standing_by


def worker(app, fixturename):
    return types.SimpleNamespace(app=app, fixturename=fixturename)


APP, OTHER_APP = object(), object()
THREAD = worker(APP, "celery_astra_worker")
PROCESS = worker(APP, "celery_astra_worker_process")
OTHER = worker(OTHER_APP, "billing_worker")
RUNNING = [THREAD, PROCESS, OTHER]


def test_asking_for_the_process_worker_puts_the_thread_worker_of_its_app_on_standby():
    assert standing_by({"celery_astra_worker_process", "celery_astra_app"}, RUNNING) == [THREAD]


def test_asking_for_the_thread_worker_puts_the_process_worker_on_standby():
    assert standing_by({"celery_astra_worker"}, RUNNING) == [PROCESS]


def test_asking_for_both_or_neither_keeps_every_worker_consuming():
    assert standing_by({"celery_astra_worker", "celery_astra_worker_process"}, RUNNING) == []
    assert standing_by({"celery_astra_app"}, RUNNING) == []


def test_another_apps_worker_is_never_touched():
    assert standing_by({"billing_worker"}, RUNNING) == []
    assert OTHER not in standing_by({"celery_astra_worker"}, RUNNING)
