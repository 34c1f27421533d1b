import pytest
from celery import states
from celery.exceptions import TaskRevokedError


def test_revoke_before_it_runs(celery_app, celery_worker):
    ran = []

    @celery_app.task
    def later():
        ran.append(1)

    celery_worker.reload()
    result = later.apply_async(countdown=2)
    result.revoke()
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10)
    assert ran == []


def test_revoked_state(celery_app, celery_worker):
    @celery_app.task
    def later():
        return 1

    celery_worker.reload()
    result = later.apply_async(countdown=2)
    celery_app.control.revoke(result.id)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10)
    assert result.state == states.REVOKED


def test_revoke_by_id_through_control(celery_app, celery_worker):
    @celery_app.task
    def later():
        return 1

    celery_worker.reload()
    result = later.apply_async(countdown=2)
    replies = celery_app.control.revoke(result.id, reply=True, timeout=2)
    assert replies and all("ok" in reply for reply in (list(r.values())[0] for r in replies))


def test_expired_task_is_revoked(celery_app, celery_worker):
    @celery_app.task
    def expiring():
        return 1

    celery_worker.reload()
    result = expiring.apply_async(countdown=1, expires=0.2)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10)
