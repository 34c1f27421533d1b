"""find_reusable: which kept containers are reused, left alone or removed (fakes for the engine)."""

from __future__ import annotations

import pytest

from pytest_celery_astra.containers import reuse
from pytest_celery_astra.containers.engine import ListedContainer
from pytest_celery_astra.containers.services import (
    LABEL_CONFIG_HASH,
    LABEL_REUSE,
    LABEL_SERVICE,
    ContainerSpec,
    RunningService,
)


@pytest.fixture
def spec():
    return ContainerSpec(name="rabbitmq", image="example/rabbitmq:1", port=5672)


def kept(container_id, config_hash, running):
    labels = {LABEL_REUSE: "1", LABEL_SERVICE: "rabbitmq", LABEL_CONFIG_HASH: config_hash}
    return ListedContainer(id=container_id, labels=labels, running=running)


@pytest.fixture
def engine(monkeypatch):
    listed: list[ListedContainer] = []
    removed: list[str] = []
    monkeypatch.setattr(reuse, "list_containers", lambda labels: list(listed))
    monkeypatch.setattr(reuse, "remove_container", removed.append)
    monkeypatch.setattr(reuse, "_answering", lambda container, spec: RunningService(
        name=spec.name, image=spec.image, container_id=container.id, host="127.0.0.1", port=1,
        seconds_to_ready=0.0, reused=True))
    return listed, removed


def test_a_running_container_of_another_configuration_is_left_running(spec, engine):
    listed, removed = engine
    listed.append(kept("other-project-live", "a-different-hash", running=True))
    assert reuse.find_reusable(spec, timeout=1) is None
    assert removed == []


def test_a_stopped_kept_container_is_removed_whatever_its_configuration(spec, engine):
    listed, removed = engine
    listed.extend([kept("stopped-same", spec.config_hash, running=False),
                   kept("stopped-other", "a-different-hash", running=False)])
    assert reuse.find_reusable(spec, timeout=1) is None
    assert removed == ["stopped-same", "stopped-other"]


def test_the_running_match_is_reused_and_nothing_else_is_touched(spec, engine):
    listed, removed = engine
    listed.extend([kept("other", "a-different-hash", running=True), kept("mine", spec.config_hash, running=True)])
    found = reuse.find_reusable(spec, timeout=1)
    assert found is not None and found.container_id == "mine" and found.reused
    assert removed == []
