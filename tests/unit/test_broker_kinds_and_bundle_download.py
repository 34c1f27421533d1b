"""Pure logic of two settings-driven choices: several broker kinds, and which bundle link to fetch."""

import threading

import pytest

from pytest_celery_astra.astra.bundle_download import BundleDownloadError, _pick_region, _refusal
from pytest_celery_astra.brokers import choice as broker
from pytest_celery_astra.brokers.choice import (
    choose_broker,
    with_worker_vhosts,
    worker_broker_url,
    xdist_worker_vhosts,
)
from pytest_celery_astra.containers.services import RunningService
from pytest_celery_astra.naming import Placement
from pytest_celery_astra.settings import resolve_settings

DATABASE_ID = "3f1c2b7e-9a4d-4c2e-8f0a-5b6d7e8f9a01"


def place(worker: str, run_id: str, settings) -> Placement:
    """Where a process's data lives, as RunContext.placement decides it (the broker side)."""
    return Placement(run_id, worker, shares_broker=settings.reuse_containers)


def worker_vhost(worker: str, run_id: str, settings):
    return place(worker, run_id, settings).vhost()


@pytest.mark.parametrize("value, kinds", [
    ("rabbitmq", ("rabbitmq",)), ("redis", ("redis",)), ("rabbitmq,redis", ("rabbitmq", "redis")),
    (" redis , rabbitmq ", ("redis", "rabbitmq")),
])
def test_container_mode_runs_every_named_broker_first_one_first(value, kinds):
    settings = resolve_settings({"broker": "container", "broker_kind": value}, {}, {})
    choice = choose_broker(settings, None)
    assert (choice.kinds, choice.kind) == (kinds, kinds[0])
    assert [spec.name for spec in choice.container_specs(settings)] == list(kinds)


def test_other_modes_have_no_container_broker():
    settings = resolve_settings({"broker": "memory", "broker_kind": "rabbitmq,redis"}, {}, {})
    choice = choose_broker(settings, None)
    assert (choice.kind, choice.kinds, choice.container_specs(settings)) == (None, (), [])


def test_a_run_alone_on_its_own_rabbitmq_uses_the_default_vhost():
    settings = resolve_settings({"broker": "container"}, {}, {})
    rabbitmq = RunningService(name="rabbitmq", image="i", container_id="c", host="127.0.0.1", port=5672,
                              seconds_to_ready=0.0)
    # No vhost to make (no rabbitmqctl): worker_broker_url would otherwise exec into container "c".
    url, options = worker_broker_url(choose_broker(settings, None), settings, rabbitmq, place("master", "r1", settings))
    assert (url, options) == ("amqp://guest:guest@127.0.0.1:5672//", {})
    assert worker_vhost("master", "r1", settings) is None


def test_xdist_workers_and_kept_containers_get_vhosts_of_their_own():
    settings = resolve_settings({"broker": "container"}, {}, {})
    kept = resolve_settings({"broker": "container", "reuse_containers": "true"}, {}, {})
    names = {worker_vhost("gw0", "r1", settings), worker_vhost("gw1", "r1", settings),
             worker_vhost("master", "r1", kept), worker_vhost("master", "r2", kept), worker_vhost("gw0", "r1", kept)}
    assert None not in names and len(names) == 5
    assert "r1" in worker_vhost("master", "r1", kept) and "r1" not in worker_vhost("gw0", "r1", settings)


def test_the_xdist_worker_that_starts_rabbitmq_makes_every_workers_vhost(monkeypatch):
    settings = resolve_settings({"broker": "container"}, {}, {})
    kept = resolve_settings({"broker": "container", "reuse_containers": "true"}, {}, {})
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    assert xdist_worker_vhosts(place("gw1", "r1", settings), settings) == [
        "celery_astra_gw0", "celery_astra_gw1", "celery_astra_gw2"]
    # a custom id too
    assert xdist_worker_vhosts(place("gw7", "r1", settings), settings)[-1] == worker_vhost("gw7", "r1", settings)
    # Nothing to share: no xdist, or a kept container (its management API makes a vhost in ~15 ms).
    assert xdist_worker_vhosts(place("master", "r1", settings), settings) == []
    assert xdist_worker_vhosts(place("gw0", "r1", kept), kept) == []
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    assert xdist_worker_vhosts(place("gw0", "r1", settings), settings) == []


def test_vhosts_made_at_start_are_recorded_and_then_only_used(monkeypatch):
    settings = resolve_settings({"broker": "container"}, {}, {})
    rabbitmq = RunningService(name="rabbitmq", image="i", container_id="c", host="127.0.0.1", port=5672,
                              seconds_to_ready=0.0)
    made = []
    monkeypatch.setattr(broker, "create_vhosts", lambda service, vhosts: made.append(list(vhosts)))
    started = with_worker_vhosts(rabbitmq, ["celery_astra_gw0", "celery_astra_gw1"])
    assert made == [["celery_astra_gw0", "celery_astra_gw1"]]  # one call for both
    assert started.vhosts == ("celery_astra_gw0", "celery_astra_gw1")
    preparations = broker.VhostPreparations()
    url, _ = worker_broker_url(choose_broker(settings, None), settings, started, place("gw1", "r1", settings),
                               vhosts=preparations)
    preparations.prepare(started, "celery_astra_gw1")
    assert url.endswith("/celery_astra_gw1") and len(made) == 1  # used as it is: nothing made again
    worker_broker_url(choose_broker(settings, None), settings, started, place("gw2", "r1", settings))  # a worker not counted
    assert made[-1] == ["celery_astra_gw2"]


def test_a_failed_batch_leaves_each_worker_to_make_its_own(monkeypatch):
    rabbitmq = RunningService(name="rabbitmq", image="i", container_id="c", host="127.0.0.1", port=5672,
                              seconds_to_ready=0.0)

    def refuse(service, vhosts):
        raise RuntimeError("rabbitmqctl: exit 70")

    monkeypatch.setattr(broker, "create_vhosts", refuse)
    assert with_worker_vhosts(rabbitmq, ["celery_astra_gw0"]) is rabbitmq  # recorded without vhosts
    with pytest.raises(RuntimeError, match="exit 70"):
        broker.VhostPreparations().ensure(rabbitmq, "celery_astra_gw0")  # the worker's own attempt reports the error


@pytest.mark.parametrize("value, problem", [
    ("rabbitmq,kafka", "expected one of rabbitmq, redis, got 'kafka'"),
    ("redis,redis", "expected each broker once"),
    ("", "expected one of rabbitmq, redis, got ''"),
])
def test_bad_broker_kinds_are_refused(value, problem):
    with pytest.raises(pytest.UsageError, match=problem):
        resolve_settings({"broker_kind": value}, {}, {})


LINKS = [{"region": "us-east1", "downloadURL": "https://a"}, {"region": "eu-west1", "downloadURL": "https://b"}]


def test_region_picks_its_link_and_none_picks_the_first():
    assert _pick_region(LINKS, DATABASE_ID, "eu-west1")["downloadURL"] == "https://b"
    assert _pick_region(LINKS, DATABASE_ID, None)["downloadURL"] == "https://a"


def test_an_unknown_region_names_the_known_ones():
    with pytest.raises(BundleDownloadError, match=r"has no region 'ap-south1' \(it has: eu-west1, us-east1\)"):
        _pick_region(LINKS, DATABASE_ID, "ap-south1")


@pytest.mark.parametrize("status, words", [
    (401, "refused the token (HTTP 401)"), (403, "refused the token (HTTP 403)"),
    (404, "knows no database"), (409, "in its current state (HTTP 409"), (503, "answered HTTP 503"),
])
def test_each_refusal_is_worded_by_its_cause(status, words):
    assert words in _refusal(status, DATABASE_ID)


@pytest.mark.parametrize("value", ["not-a-uuid", "3f1c2b7e"])
def test_database_id_must_be_a_uuid(value):
    with pytest.raises(pytest.UsageError, match="expected the database id shown in the Astra console"):
        resolve_settings({"astra_db_id": value}, {}, {})


def test_devops_url_must_be_https():
    with pytest.raises(pytest.UsageError, match="expected an https:// URL"):
        resolve_settings({"astra_devops_url": "http://api.example"}, {}, {})


@pytest.mark.parametrize("choice, url, needs", [
    (broker.BrokerChoice("container", "rabbitmq", "", ("rabbitmq", "redis")), None,
     "the Redis broker (option --celery-astra-broker-kind)"),
    (broker.BrokerChoice("url", None, ""), "redis://127.0.0.1:6379/0", "a Redis broker URL (env CELERY_ASTRA_BROKER_URL)"),
])
def test_a_redis_broker_without_the_redis_package_is_one_sentence_with_the_install_command(choice, url, needs):
    sources = {"broker_kind": "option --celery-astra-broker-kind", "broker_url": "env CELERY_ASTRA_BROKER_URL"}
    with pytest.raises(ValueError) as refused:
        broker.check_client_installed(choice, url, sources, find_spec=lambda name: None)
    assert str(refused.value) == (f"{needs} needs the redis package, which is not installed: "
                                  "pip install 'pytest-celery-astra[redis]'")
    broker.check_client_installed(choice, url, sources, find_spec=lambda name: object())   # installed: nothing to say


def test_brokers_that_do_not_need_redis_are_not_checked():
    def asked(name):
        raise AssertionError(f"asked for {name}")

    for choice, url in [(broker.BrokerChoice("container", "rabbitmq", "", ("rabbitmq",)), None),
                        (broker.BrokerChoice("url", None, ""), "amqp://guest@host//"),
                        (broker.BrokerChoice("memory", None, ""), None)]:
        broker.check_client_installed(choice, url, {}, find_spec=asked)


def test_two_runs_do_not_share_the_vhosts_they_prepare(monkeypatch):
    rabbitmq = RunningService(name="rabbitmq", image="i", container_id="c", host="127.0.0.1", port=5672,
                              seconds_to_ready=0.0)
    made = []
    monkeypatch.setattr(broker, "create_vhosts",
                        lambda service, vhosts: made.append((threading.current_thread().name, list(vhosts))))
    first, second = broker.VhostPreparations(), broker.VhostPreparations()
    first.prepare(rabbitmq, "celery_astra_gw0")
    second.ensure(rabbitmq, "celery_astra_gw0")  # not the first run's future: made now, in this thread
    first.ensure(rabbitmq, "celery_astra_gw0")   # waits for its own background creation
    assert sorted(made) == [("MainThread", ["celery_astra_gw0"]), ("celery-astra-vhost", ["celery_astra_gw0"])]
    first.ensure(rabbitmq, "celery_astra_gw0")   # the future was used up: made again (not recorded with the service)
    assert len(made) == 3


def test_the_plugins_redis_container_gets_a_bounded_connect_and_a_users_own_timeout_wins():
    from celery import Celery

    from pytest_celery_astra.celery_app import configure_app

    settings = resolve_settings({"broker": "container", "broker_kind": "redis"}, {}, {})
    redis = RunningService(name="redis", image="i", container_id="c", host="127.0.0.1", port=6379, seconds_to_ready=0.0)
    url, options = worker_broker_url(choose_broker(settings, None), settings, redis, place("gw0", "r1", settings))
    assert url == "redis://127.0.0.1:6379/0"
    assert options["socket_connect_timeout"] == 4.0 and "global_keyprefix" in options

    def configured(users: dict) -> dict:
        app = Celery("bounded", broker_transport_options=users)
        configure_app(app, url, options, {}, "ks", "table", "ONE", "ONE", 0.01)
        return app.conf.broker_transport_options

    assert configured({})["socket_connect_timeout"] == 4.0
    kept = configured({"socket_connect_timeout": 30, "visibility_timeout": 60, "global_keyprefix": "theirs"})
    assert kept["socket_connect_timeout"] == 30 and kept["visibility_timeout"] == 60
    assert kept["global_keyprefix"] == options["global_keyprefix"]    # isolation is the plugin's
    # A user's Redis (URL mode) is left as the user configured it.
    url_settings = resolve_settings({"broker": "url", "broker_url": "redis://127.0.0.1:6379/0"}, {}, {})
    _, url_options = worker_broker_url(choose_broker(url_settings, None), url_settings, None, place("gw0", "r1", url_settings))
    assert "socket_connect_timeout" not in url_options
