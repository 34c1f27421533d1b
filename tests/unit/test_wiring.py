"""The worker process's wiring: typed, versioned, and no secret in its file."""

from __future__ import annotations

import json

import pytest

from pytest_celery_astra.cassandra.target import CassandraTarget
from pytest_celery_astra.errors import ConfigurationError
from pytest_celery_astra.masking import MaskedUrl, Secret
from pytest_celery_astra.workers.wiring import CONFIG_ENV, SECRETS_ENV, VERSION, Wiring

BROKER_PASSWORD = "br0ker-Pa55-9c1e"
CASSANDRA_PASSWORD = "c4ss-Pa55-77ad"


def wiring(**changes) -> Wiring:
    values = dict(
        app="tasks:app", broker_url=MaskedUrl(f"amqp://user:{BROKER_PASSWORD}@localhost:5672/celery_astra_gw0"),
        transport_options={"confirm_publish": True},
        target=CassandraTarget(hosts=("10.0.0.1", "10.0.0.2"), port=9043, username="cassandra",
                              password=Secret(CASSANDRA_PASSWORD), protocol_version=5),
        keyspace="celery_astra_gw0", table="celery_results", read_consistency="QUORUM",
        write_consistency="QUORUM", poll_interval=0.01, default_queue="celery", broker_mode="container",
        task_modules={"tests.test_tasks": ["tests.test_tasks.add"]})
    values.update(changes)
    return Wiring(**values)


def test_what_is_written_is_read_back_whole(tmp_path):
    given = wiring()
    environ = given.write(tmp_path / "config.json")
    read = Wiring.read(environ)
    assert read == given
    assert read.broker_url.unmasked() == given.broker_url.unmasked()
    assert isinstance(read.target.password, Secret) and isinstance(read.broker_url, MaskedUrl)


def test_the_file_holds_no_secret_and_only_its_owner_reads_it(tmp_path):
    path = tmp_path / "config.json"
    environ = wiring().write(path)
    text = path.read_text()
    assert BROKER_PASSWORD not in text and CASSANDRA_PASSWORD not in text
    assert path.stat().st_mode & 0o077 == 0
    assert BROKER_PASSWORD in environ[SECRETS_ENV] and environ[CONFIG_ENV] == str(path)


def test_a_wiring_without_secrets_reads_back_without_them(tmp_path):
    given = wiring(broker_url=MaskedUrl("redis://localhost:6379/0"),
                   target=CassandraTarget(hosts=("127.0.0.1",)))
    assert Wiring.read(given.write(tmp_path / "config.json")) == given


def test_another_releases_wiring_is_one_sentence(tmp_path):
    path = tmp_path / "config.json"
    environ = wiring().write(path)
    values = json.loads(path.read_text())
    values["version"] = VERSION + 1
    path.write_text(json.dumps(values))
    with pytest.raises(ConfigurationError, match=r"another release of the plugin \(wiring version 2"):
        Wiring.read(environ)


def test_the_log_masker_gets_both_passwords_and_the_repr_shows_neither():
    given = wiring()
    assert set(given.secrets()) == {BROKER_PASSWORD, CASSANDRA_PASSWORD}
    assert BROKER_PASSWORD not in repr(given) and CASSANDRA_PASSWORD not in repr(given)
