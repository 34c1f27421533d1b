import pytest
from celery.exceptions import MaxRetriesExceededError


def test_retry_until_it_succeeds(celery_app, celery_worker):
    attempts = []

    @celery_app.task(bind=True, max_retries=5)
    def flaky(self):
        attempts.append(self.request.retries)
        if len(attempts) < 3:
            raise self.retry(countdown=0)
        return len(attempts)

    celery_worker.reload()
    assert flaky.delay().get(timeout=15) == 3
    assert attempts == [0, 1, 2]


def test_max_retries_exceeded(celery_app, celery_worker):
    @celery_app.task(bind=True, max_retries=2)
    def always(self):
        raise self.retry(countdown=0)

    celery_worker.reload()
    with pytest.raises(MaxRetriesExceededError):
        always.delay().get(timeout=15)


def test_retry_with_the_original_exception(celery_app, celery_worker):
    @celery_app.task(bind=True, max_retries=1)
    def broken(self):
        try:
            raise ConnectionError("down")
        except ConnectionError as error:
            raise self.retry(exc=error, countdown=0) from error

    celery_worker.reload()
    with pytest.raises(ConnectionError, match="down"):
        broken.delay().get(timeout=15)


def test_autoretry_for(celery_app, celery_worker):
    calls = []

    @celery_app.task(autoretry_for=(RuntimeError,), retry_kwargs={"max_retries": 3, "countdown": 0.05},
                     retry_backoff=False)
    def shaky():
        calls.append(1)
        if len(calls) < 2:
            raise RuntimeError("once")
        return "ok"

    celery_worker.reload()
    assert shaky.delay().get(timeout=15) == "ok"
    assert len(calls) == 2


def test_retries_are_counted_in_the_request(celery_app, celery_worker):
    seen = []

    @celery_app.task(bind=True, max_retries=3)
    def counting(self):
        seen.append(self.request.retries)
        if self.request.retries < 2:
            raise self.retry(countdown=0)
        return self.request.retries

    celery_worker.reload()
    assert counting.delay().get(timeout=15) == 2
    assert seen == [0, 1, 2]
