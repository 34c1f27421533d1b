"""The compatibility layer's per-test restore, on a Celery app that connects to nothing."""

from celery import Celery

from pytest_celery_astra.celery_contrib import _restore


def baseline(app):
    return dict(app.conf.changes), frozenset(app.tasks)


def test_settings_changed_added_and_tasks_registered_are_undone():
    app = Celery("restore", set_as_current=False)
    app.conf.update(result_extended=True, task_default_queue="kept")
    before = baseline(app)
    app.conf.update(result_extended=False, task_ignore_result=True, task_routes={"x": {"queue": "q"}})

    @app.task(name="made.in.the.test")
    def made():
        return 1

    _restore(app, *before)
    assert app.conf.result_extended is True and app.conf.task_default_queue == "kept"
    assert app.conf.task_ignore_result is False and not app.conf.task_routes
    assert "made.in.the.test" not in app.tasks
    assert set(app.tasks) == set(before[1])


def test_routes_are_read_again_after_a_restore():
    app = Celery("routes", set_as_current=False)
    before = baseline(app)
    app.conf.task_routes = {"routed": {"queue": "special"}}
    assert app.amqp.router.route({}, "routed")["queue"].name == "special"
    _restore(app, *before)
    assert app.amqp.router.route({}, "routed")["queue"].name == app.conf.task_default_queue
