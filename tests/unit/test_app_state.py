"""The plugin's state for an app lives in the app's configuration, and is put back after a nested run."""

from __future__ import annotations

import pickle

import pytest
from celery import Celery

from pytest_celery_astra.cassandra import app_state
from pytest_celery_astra.cassandra.app_state import AppState, attach, restore, rows_of, state_of
from pytest_celery_astra.cassandra.result_rows import ResultRows


@pytest.fixture
def app():
    app = Celery("unit", set_as_current=False)
    yield app
    app.close()


def test_the_state_the_fixture_attached_is_what_the_backend_finds(app):
    rows = ResultRows()
    before = attach(app, AppState(rows=rows))
    assert before is None
    assert rows_of(app) is rows and app.conf[app_state.CONF_KEY] is state_of(app)
    assert not any(name.startswith("celery_astra") for name in vars(app))   # nothing set on the app object


def test_an_app_wired_elsewhere_gets_a_state_of_its_own_once(app):
    first = state_of(app)
    assert state_of(app) is first and isinstance(first.rows, ResultRows)


def test_a_nested_run_puts_the_outer_state_back(app):
    outer = AppState()
    attach(app, outer)
    inner = AppState()
    before = attach(app, inner)
    assert state_of(app) is inner
    restore(app, before)
    assert state_of(app) is outer
    restore(app, None)
    assert app_state.CONF_KEY not in app.conf.changes


def test_the_state_is_process_local_and_prints_nothing_private(app):
    state = state_of(app)
    state.stores_here = True
    copy = pickle.loads(pickle.dumps(state))          # in another process: afresh, not a copy of locks
    assert copy is not state and copy.stores_here is False
    assert repr(state) == "AppState(stores_here=True, wired=False)"
    assert "AppState(" in app.conf.humanize()           # Celery's `celery report` lists it harmlessly


def test_each_worker_process_start_gets_a_node_name_of_its_own():
    from pytest_celery_astra.run.context import RunContext

    context = RunContext(None, "master", None, False)  # type: ignore[arg-type]  # only its node-name counter is used
    names = [context.unique_node_name("celery_astra_x_process@host") for _ in range(3)]
    assert names == ["celery_astra_x_process@host", "celery_astra_x_process_2@host", "celery_astra_x_process_3@host"]
    assert context.unique_node_name("celery_astra_y_process@host") == "celery_astra_y_process@host"
