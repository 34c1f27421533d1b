"""The unhappy paths: the broker and Cassandra fail while the app works, on demand.

celery_astra_services stops, restarts and pauses the run's containers, and after each test restores
them and checks that the worker and the Cassandra sessions have recovered. The containers are shared by
xdist workers, so under -n these tests are skipped with that reason; run them in a -n 0 step.
"""

import time
from pathlib import Path

import pytest
from celery.exceptions import TimeoutError as CeleryTimeoutError

from tasks import app, sortWords

pytestmark = pytest.mark.usefixtures("celery_astra_worker")


@app.task(name="faults.slow_sort", autoretry_for=(ConnectionError,), retry_kwargs={"max_retries": 3, "countdown": 0.1})
def slow_sort(text, seconds, started=None):
    if started:
        Path(started).touch()  # mid-flight: seen from the test, whether the worker is a thread or a process
    time.sleep(seconds)
    return " ".join(sorted(text.split()))


def wait_until_running(started, deadline_s=30):
    """Until the task has touched ``started``: it is mid-flight."""
    deadline = time.monotonic() + deadline_s
    while not started.exists():
        assert time.monotonic() < deadline, "the worker never started the task"
        time.sleep(0.01)


def test_a_broker_restart_mid_flight_still_ends_in_success(celery_astra_services, tmp_path):
    started = tmp_path / "started"
    result = slow_sort.delay("storage yay my DB", 2, str(started))
    wait_until_running(started)
    celery_astra_services.broker.restart()
    assert result.get(timeout=60) == "DB my storage yay"
    assert result.state == "SUCCESS"


def test_the_worker_survives_a_broker_restart_and_runs_the_next_task(celery_astra_services):
    celery_astra_services.broker.restart()
    assert sortWords.delay("b a", False).get(timeout=60) == "a b"


def test_a_paused_broker_holds_the_task_until_it_is_unpaused(celery_astra_services, tmp_path):
    started = tmp_path / "started"
    result = slow_sort.delay("b a", 0.5, str(started))
    wait_until_running(started)
    celery_astra_services.broker.pause()          # the port is open, nothing answers
    queued_while_paused = result.get(timeout=30)  # the result goes to Cassandra, not the broker
    celery_astra_services.broker.unpause()
    assert queued_while_paused == "a b"
    assert sortWords.delay("d c", False).get(timeout=60) == "c d"


def test_results_are_stored_after_a_cassandra_restart(celery_astra_services, celery_astra_cassandra):
    assert sortWords.delay("b a", False).get(timeout=30) == "a b"
    celery_astra_services.cassandra.restart()     # returns once the run's sessions answer again
    assert sortWords.delay("d c", False).get(timeout=60) == "c d"
    assert celery_astra_cassandra.execute("SELECT release_version FROM system.local").one()


def test_while_cassandra_is_paused_get_times_out(celery_astra_services):
    celery_astra_services.cassandra.pause()
    with pytest.raises(CeleryTimeoutError):
        sortWords.delay("b a", False).get(timeout=2)
    celery_astra_services.cassandra.unpause()
    assert sortWords.delay("d c", False).get(timeout=60) == "c d"


def test_the_apps_own_session_is_back_soon_after_a_cassandra_restart(celery_astra_services, sorted_words_table):
    """tasks.py builds its Cluster from app.conf.cassandra_options, where the plugin puts a reconnection every
    0.5 s (the driver's default backs off 1, 2, 4, 8 s...: ~20 s after a restart); restart() returns one such
    interval after Cassandra answers. A query made while the Session is still reconnecting fails
    (NoHostAvailable), as in production, and the driver reconnects at its next attempt."""
    from tasks import storeSortedWords

    assert storeSortedWords.delay("b a").get(timeout=30) == "a b"  # the app's Session exists before the restart
    celery_astra_services.cassandra.restart()                     # returns once the run's sessions answer
    started = time.monotonic()
    while True:
        try:
            assert storeSortedWords.delay("d c").get(timeout=30) == "c d"
            break
        except Exception as error:  # NoHostAvailable from the task, until the driver has reconnected
            assert "NoHostAvailable" in repr(error), error
            assert time.monotonic() - started < 10, f"the app's Session was not back within 10 s: {error!r}"
    print(f"APP-SESSION back {time.monotonic() - started:.2f} s after the restart returned")
