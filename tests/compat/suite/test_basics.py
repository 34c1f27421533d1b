import pytest
from celery import states
from celery.exceptions import TimeoutError as CeleryTimeoutError


def test_add(celery_app, celery_worker):
    @celery_app.task
    def add(x, y):
        return x + y

    celery_worker.reload()
    assert add.delay(2, 3).get(timeout=10) == 5


def test_kwargs_and_defaults(celery_app, celery_worker):
    @celery_app.task
    def greet(name, greeting="hello"):
        return f"{greeting} {name}"

    celery_worker.reload()
    assert greet.delay("ada").get(timeout=10) == "hello ada"
    assert greet.apply_async(("bob",), {"greeting": "hi"}).get(timeout=10) == "hi bob"


def test_custom_task_name(celery_app, celery_worker):
    @celery_app.task(name="suite.custom.name")
    def named():
        return "named"

    celery_worker.reload()
    result = celery_app.send_task("suite.custom.name")
    assert result.get(timeout=10) == "named"


def test_bound_task_sees_its_request(celery_app, celery_worker):
    @celery_app.task(bind=True)
    def whoami(self):
        return {"id": self.request.id, "retries": self.request.retries}

    celery_worker.reload()
    result = whoami.delay()
    assert result.get(timeout=10) == {"id": result.id, "retries": 0}


def test_exception_propagates(celery_app, celery_worker):
    @celery_app.task
    def fail():
        raise ValueError("boom")

    celery_worker.reload()
    result = fail.delay()
    with pytest.raises(ValueError, match="boom"):
        result.get(timeout=10)
    assert result.state == states.FAILURE
    assert isinstance(result.result, ValueError)


def test_exception_not_propagated_when_asked(celery_app, celery_worker):
    @celery_app.task
    def fail():
        raise KeyError("missing")

    celery_worker.reload()
    result = fail.delay()
    value = result.get(timeout=10, propagate=False)
    assert isinstance(value, KeyError)
    assert result.failed()


def test_success_state_and_ready(celery_app, celery_worker):
    @celery_app.task
    def double(x):
        return x * 2

    celery_worker.reload()
    result = double.delay(21)
    assert result.get(timeout=10) == 42
    assert result.ready() and result.successful()
    assert result.state == states.SUCCESS


def test_extended_result_has_the_task_name(celery_app, celery_worker):
    @celery_app.task
    def named_result():
        return 1

    celery_worker.reload()
    result = named_result.delay()
    result.get(timeout=10)
    assert result.name == named_result.name


def test_countdown_runs_later(celery_app, celery_worker):
    @celery_app.task
    def later():
        return "later"

    celery_worker.reload()
    assert later.apply_async(countdown=0.5).get(timeout=10) == "later"


def test_unknown_result_stays_pending(celery_app, celery_worker):
    result = celery_app.AsyncResult("no-such-task-id")
    assert result.state == states.PENDING
    with pytest.raises(CeleryTimeoutError):
        result.get(timeout=0.3)


def test_apply_runs_locally_without_the_worker(celery_app):
    @celery_app.task
    def local(x):
        return x + 1

    assert local.apply((1,)).get() == 2


def test_large_argument_round_trips(celery_app, celery_worker):
    @celery_app.task
    def echo(value):
        return value

    celery_worker.reload()
    payload = {"words": ["w%d" % n for n in range(2000)], "nested": {"a": [1, 2, {"b": None}]}}
    assert echo.delay(payload).get(timeout=10) == payload


@pytest.fixture
def tripler(celery_app):
    @celery_app.task(name="suite.basics.tripler")
    def triple(x):
        return 3 * x

    return triple


def test_a_task_defined_by_a_fixture_needs_no_reload(celery_app, tripler, celery_worker):
    assert tripler.delay(3).get(timeout=10) == 9
