import pytest
from celery import current_app


def test_celery_config_is_applied(celery_app):
    assert celery_app.conf.result_extended is True
    assert celery_app.conf.task_track_started is True


@pytest.mark.celery(task_default_rate_limit="10/s", task_soft_time_limit=30)
def test_the_marker_overrides_settings(celery_app):
    assert celery_app.conf.task_default_rate_limit == "10/s"
    assert celery_app.conf.task_soft_time_limit == 30


def test_the_markers_settings_are_gone_in_the_next_test(celery_app):
    assert celery_app.conf.task_default_rate_limit is None
    assert celery_app.conf.task_soft_time_limit is None


def test_1_changes_a_setting(celery_app):
    celery_app.conf.task_ignore_result = True
    celery_app.conf.update(task_serializer="pickle", accept_content=["json", "pickle"])
    assert celery_app.conf.task_ignore_result is True


def test_2_the_change_is_undone(celery_app):
    assert celery_app.conf.task_ignore_result is False
    assert celery_app.conf.task_serializer == "json"


def test_3_registers_a_task(celery_app):
    @celery_app.task(name="suite.config.only_in_test_3")
    def only_here():
        return 1

    assert "suite.config.only_in_test_3" in celery_app.tasks


def test_4_the_task_is_gone(celery_app):
    assert "suite.config.only_in_test_3" not in celery_app.tasks


def test_eager_mode_in_one_test(celery_app):
    celery_app.conf.task_always_eager = True

    @celery_app.task
    def eager(x):
        return x * 3

    assert eager.delay(3).get() == 9


def test_eager_mode_is_off_again(celery_app, celery_worker):
    assert celery_app.conf.task_always_eager is False

    @celery_app.task
    def remote(x):
        return x * 4

    celery_worker.reload()
    assert remote.delay(2).get(timeout=10) == 8


def test_depends_on_current_app(celery_app, depends_on_current_app):
    assert current_app.main == celery_app.main
