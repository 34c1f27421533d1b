"""Names carry the worker id; secrets are masked. No services."""

import pytest

from pytest_celery_astra.brokers.choice import check_broker_url, check_url_isolates_workers, worker_broker_url
from pytest_celery_astra.cassandra.marks import is_stale, parse_mark, table_mark, with_mark
from pytest_celery_astra.host import Owner
from pytest_celery_astra.masking import MaskedUrl, Secret, mask_text, mask_url, url_for_message
from pytest_celery_astra.naming import (
    MAX_CQL_NAME,
    Placement,
    astra_table_name,
    key_prefix,
    keyspace_name,
    vhost_name,
)


def test_names_per_worker_are_distinct_and_valid_cql():
    names = {keyspace_name("celery_astra", w) for w in ("master", "gw0", "gw1", "gw10")}
    assert len(names) == 4
    assert all(n.replace("_", "").isalnum() for n in names)
    assert vhost_name("gw0") != vhost_name("gw1")


def test_astra_table_names_fit_cassandra_and_carry_run_and_worker():
    name = astra_table_name("celery_results", "0123456789", "gw12")
    assert len(name) <= 48
    assert "0123456789" in name and name.endswith("gw12")


def test_names_on_shared_services_carry_the_run_and_stay_apart_when_long():
    assert keyspace_name("celery_astra", "gw0", "3f9c0a1b2e") == "celery_astra_3f9c0a1b2e_gw0"
    prefix = "p" * 40
    long_names = {keyspace_name(prefix, f"gw{n}", run) for n in range(20) for run in ("run1", "run2")}
    assert len(long_names) == 40 and all(len(name) <= MAX_CQL_NAME for name in long_names)
    tables = {astra_table_name("t" * 40, "0123456789", f"gw{n}") for n in range(16)}
    assert len(tables) == 16
    assert key_prefix("r1", "gw0") != key_prefix("r2", "gw0") != key_prefix("r1", "gw1")
    assert vhost_name("gw0", "r1") != vhost_name("gw0", "r2")


def test_redis_isolation_by_key_prefix_has_no_worker_cap():
    from pytest_celery_astra.brokers.choice import BrokerChoice
    from pytest_celery_astra.containers.services import RunningService
    from pytest_celery_astra.settings import resolve_settings

    settings = resolve_settings({}, {}, {})
    service = RunningService("redis", "img", "cid", "127.0.0.1", 6379, 0.1)
    urls = {worker_broker_url(BrokerChoice("container", "redis", ""), settings, service, Placement("run1", f"gw{n}"))[1][
        "global_keyprefix"] for n in range(64)}
    assert len(urls) == 64


def test_broker_url_checks_mask_the_password():
    with pytest.raises(ValueError, match=r"ampq://guest:\*\*\*@h//") as raised:
        check_broker_url("ampq://guest:hunter2@h//")
    assert "hunter2" not in str(raised.value)
    check_broker_url("amqp://guest:pw@host:5672/tests_{worker}")
    with pytest.raises(ValueError, match="put {worker} in its virtual host"):
        check_url_isolates_workers("amqp://guest:pw@host//", "gw0")
    check_url_isolates_workers("redis://localhost/0", "gw0")
    assert url_for_message("amqp//guest:pw@h") == "***"
    assert repr(MaskedUrl("amqp://guest:pw@h//")) == "'amqp://guest:***@h//'"
    assert str(MaskedUrl("amqp://guest:pw@h//")) == "amqp://guest:***@h//"
    assert MaskedUrl("amqp://guest:pw@h//").unmasked() == "amqp://guest:pw@h//"
    from kombu import Connection

    assert Connection(MaskedUrl("amqp://guest:pw@h:1/v")).password == "pw"  # kombu reads the characters


def test_marks_name_their_process_and_are_added_to_user_tables():
    mark = parse_mark(table_mark("run1", "gw0"))
    assert mark["run"] == "run1" and int(mark["pid"]) > 0
    assert with_mark("CREATE TABLE t (k int PRIMARY KEY)", "M").endswith("WITH comment = 'M'")
    assert with_mark("CREATE TABLE t (k int PRIMARY KEY) WITH comment = 'mine'", "M").endswith("'mine'")


def test_owner_is_gone_only_when_provably_gone():
    me = Owner.this_process()
    assert not me.is_provably_gone()
    assert not Owner("another-host", 999999999, "").is_provably_gone()
    assert Owner(me.host, 999999999, "").is_provably_gone()
    assert Owner(me.host, me.pid, "1").is_provably_gone() == bool(me.started)  # same id, another start


def test_only_old_marks_are_stale_and_a_live_run_here_is_never_anyones_leftover():
    import datetime

    now = datetime.datetime(2026, 11, 26, 12, 0, tzinfo=datetime.timezone.utc)
    assert is_stale({"created": "2026-11-26T09:59:00Z"}, now)
    assert not is_stale({"created": "2026-11-26T10:01:00Z"}, now)
    assert not is_stale({"created": "yesterday"}, now)
    me = Owner.this_process()
    assert me.is_alive_here()
    assert not Owner("another-host", me.pid, me.started).is_alive_here()   # cannot be judged from here
    assert not Owner(me.host, 999999999, "").is_alive_here()


def test_a_killed_runs_state_directory_is_found_without_asking_an_engine(tmp_path, monkeypatch):
    import json
    import tempfile

    from pytest_celery_astra.containers import coordination

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    me = Owner.this_process()
    live = tmp_path / f"{coordination.STATE_PREFIX}live"
    live.mkdir()
    (live / "owner.json").write_text(json.dumps({"host": me.host, "pid": me.pid, "started": me.started}))
    assert not coordination.dead_runs_left()
    dead = tmp_path / f"{coordination.STATE_PREFIX}dead"
    dead.mkdir()
    (dead / "owner.json").write_text(json.dumps({"host": me.host, "pid": 999999999, "started": ""}))
    assert coordination.dead_runs_left()
    assert not coordination.dead_runs_left(keep=dead)


def test_secret_repr_is_masked_but_value_is_real():
    secret = Secret("AstraCS:abc:def")
    assert repr(secret) == "'***'"
    assert repr({"password": secret}) == "{'password': '***'}"
    assert "%s" % secret == "AstraCS:abc:def"
    assert secret.encode() == b"AstraCS:abc:def"


def test_url_and_text_masking():
    assert mask_url("amqp://guest:pw@host:5672/vh") == "amqp://guest:***@host:5672/vh"
    assert mask_url("memory://localhost/") == "memory://localhost/"
    assert mask_text("token AstraCS:x:y failed", ["AstraCS:x:y"]) == "token *** failed"


def test_sent_tasks_are_recorded_from_the_publish_signal_without_a_broker():
    from celery import Celery

    from pytest_celery_astra.workers.sent_tasks import SentTasks

    app = Celery("recorded", broker="memory://", backend="cache+memory://")

    @app.task(name="recorded.add")
    def add(a, b):
        return a + b

    recorder = SentTasks().start()
    try:
        add.delay(1, b=2)
        add.apply_async((3, 4), countdown=5, queue="later")
    finally:
        recorder.stop()
    add.delay(5, 6)  # after stop: not recorded
    assert recorder.names == ["recorded.add", "recorded.add"]
    first, second = recorder
    assert (first.args, first.kwargs, first.queue, first.eta, first.countdown) == ((1,), {"b": 2}, "celery", None, None)
    assert second.queue == "later" and 4 < second.countdown <= 5 and second.id
    assert recorder.of("recorded.add") == [first, second] and recorder.of("other") == []
    assert "recorded.add(3, 4)" in repr(second)


def test_one_placement_names_everything_a_process_keeps():
    own = Placement("3f9c0a1b2e", "gw1")
    assert (own.keyspace(), own.keyspace("billing"), own.result_table()) == (
        "celery_astra_gw1", "billing_gw1", "celery_results")
    assert own.vhost() == "celery_astra_gw1" and Placement("r", "master").vhost() is None  # alone on its own broker
    assert own.redis_key_prefix() == "celery_astra_3f9c0a1b2e_gw1:"
    assert own.node_name("celery_astra_app", "process").startswith("celery_astra_3f9c0a1b2e_gw1_celery_astra_app_process@")
    shared = Placement("3f9c0a1b2e", "gw1", shares_cassandra=True, shares_broker=True)
    assert shared.keyspace() == "celery_astra_3f9c0a1b2e_gw1" and "3f9c0a1b2e" in shared.vhost()
    assert (shared.kept_keyspace(2), shared.kept_keyspace(0, "billing")) == ("celery_astra_kept_2", "billing_kept_0")
    assert shared.lease_registry() == "celery_astra_leases"
    astra = Placement("3f9c0a1b2e", "gw1", astra_keyspace="users_ks")
    assert astra.keyspace("billing") == "users_ks"                       # Astra: the user's keyspace, shared
    assert astra.result_table() == astra_table_name("celery_results", "3f9c0a1b2e", "gw1")
    assert astra.result_table("billing") == astra_table_name("billing_celery_results", "3f9c0a1b2e", "gw1")
    assert astra.of_worker("gw2").result_table() != astra.result_table()
