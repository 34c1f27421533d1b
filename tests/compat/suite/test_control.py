import threading


def test_ping_is_keyed_by_the_workers_node_name(celery_app, celery_worker):
    replies = celery_app.control.inspect(timeout=2).ping()
    assert replies == {celery_worker.hostname: {"ok": "pong"}}


def test_control_ping(celery_app, celery_worker):
    replies = celery_app.control.ping(timeout=2)
    assert {celery_worker.hostname: {"ok": "pong"}} in replies


def test_stats_has_the_pool(celery_app, celery_worker):
    stats = celery_app.control.inspect(timeout=2).stats()
    assert "pool" in stats[celery_worker.hostname]


def test_registered_lists_a_task_defined_in_the_test(celery_app, celery_worker):
    @celery_app.task(name="suite.control.listed")
    def listed():
        return 1

    celery_worker.reload()
    registered = celery_app.control.inspect(timeout=2).registered()
    assert "suite.control.listed" in registered[celery_worker.hostname]


def test_active_queues(celery_app, celery_worker):
    queues = celery_app.control.inspect(timeout=2).active_queues()
    names = [queue["name"] for queue in queues[celery_worker.hostname]]
    assert celery_app.conf.task_default_queue in names


def test_inspect_answers_while_a_task_runs(celery_app, celery_worker):
    started, release = threading.Event(), threading.Event()

    @celery_app.task
    def busy():
        started.set()
        release.wait(10)
        return "done"

    celery_worker.reload()
    result = busy.delay()
    assert started.wait(10)
    try:
        # The task holds until released (at most 10 s): a reply that lists it as active came while it ran. (No
        # bound on the call's own time: a broadcast waits out its 1 s timeout, and a loaded machine adds to it.)
        active = celery_app.control.inspect(timeout=1).active()
        assert not release.is_set() and [task["id"] for task in active[celery_worker.hostname]] == [result.id]
    finally:
        release.set()
    assert result.get(timeout=10) == "done"


def test_ping_answers_while_a_task_runs(celery_app, celery_worker):
    started, release = threading.Event(), threading.Event()

    @celery_app.task
    def busy():
        started.set()
        release.wait(10)

    celery_worker.reload()
    result = busy.delay()
    assert started.wait(10)
    try:
        assert celery_app.control.ping(timeout=1) == [{celery_worker.hostname: {"ok": "pong"}}]
    finally:
        release.set()
    result.get(timeout=10)


def test_rate_limit_control(celery_app, celery_worker):
    @celery_app.task(name="suite.control.limited")
    def limited():
        return 1

    celery_worker.reload()
    replies = celery_app.control.rate_limit("suite.control.limited", "100/m", reply=True, timeout=2)
    assert replies and "ok" in replies[0][celery_worker.hostname]
