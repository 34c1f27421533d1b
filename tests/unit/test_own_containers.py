"""Under xdist, a worker whose tests fault services gets containers of its own (RunContext.uses_own_containers),
recorded under its own name in the run's state directory (RunState.obtain's ``holder``)."""

from __future__ import annotations

import dataclasses
import json

import pytest

from pytest_celery_astra.containers.coordination import RunState
from pytest_celery_astra.containers.services import RunningService, cassandra_spec
from pytest_celery_astra.run.context import RunContext
from pytest_celery_astra.settings import resolve_settings

FAULTS = [("celery_astra_worker",), ("celery_astra_services", "celery_astra_database")]
NO_FAULTS = [("celery_astra_worker",), ("celery_astra_database",)]


def context(worker: str, **settings) -> RunContext:
    return RunContext(resolve_settings(settings, {}, {}), worker, RunState.create(), owns_state=worker == "master")


@pytest.mark.parametrize("worker, settings, tests, own", [
    ("gw0", {}, FAULTS, True),                                  # may run a fault test: its own containers
    ("gw1", {}, NO_FAULTS, False),                              # none among its tests: the run's shared ones
    ("master", {}, FAULTS, False),                              # without xdist the run's containers are its own
    ("gw0", {"reuse_containers": "1"}, FAULTS, False),          # kept containers: the fixture refuses instead
    ("gw0", {"xdist_faults": "skip"}, FAULTS, False),           # the user keeps one set: the fault tests skip
], ids=["xdist-faults", "xdist-no-faults", "no-xdist", "reuse", "xdist-faults-skip"])
def test_own_containers_only_where_a_fault_could_reach_another_worker(worker, settings, tests, own):
    run = context(worker, **settings)
    assert run.uses_own_containers(iter(tests)) is own
    assert run.own_containers is own


def service(container_id: str) -> RunningService:
    return RunningService(name="cassandra", image="img", container_id=container_id, host="127.0.0.1", port=9042,
                          seconds_to_ready=1.0)


def test_a_holders_container_is_recorded_apart_from_the_shared_one(tmp_path):
    state = RunState(tmp_path / "state", "run1")
    state.ensure_directory()
    # Started before (by another worker, and by gw1 for itself): obtain() reads the record, starts nothing.
    for key, container_id in (("cassandra", "shared"), ("cassandra-gw1", "gw1s-own")):
        (state.directory / f"{key}.json").write_text(json.dumps({**dataclasses.asdict(service(container_id)),
                                                                 "keep": False}))
    (state.directory / "reaped").write_text("")
    spec = cassandra_spec("img")
    assert state.obtain(spec, timeout=1).container_id == "shared"
    assert state.obtain(spec, timeout=1, holder="gw1").container_id == "gw1s-own"


def test_the_runs_end_removes_the_holders_containers_too(tmp_path, monkeypatch):
    from pytest_celery_astra.containers import coordination

    state = RunState(tmp_path / "state", "run1")
    state.ensure_directory()
    for key, container_id in (("cassandra", "shared"), ("cassandra-gw0", "gw0s-own"), ("rabbitmq-gw0", "mq")):
        (state.directory / f"{key}.json").write_text(json.dumps({**dataclasses.asdict(service(container_id)),
                                                                 "keep": False}))
    removed = []
    monkeypatch.setattr(coordination, "remove_container", removed.append)
    assert state.stop_all() == []
    assert sorted(removed) == ["gw0s-own", "mq", "shared"]
    assert not state.directory.exists()
