"""pytest-celery-astra's entry point: pytest hooks and options only. The fixtures are in fixtures.py, the
machinery in the domain packages (containers, brokers, cassandra, astra, workers, run)."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from pytest_celery_astra.brokers.choice import check_broker_url, choose_broker
from pytest_celery_astra.containers.coordination import RunState, dead_runs_left, reap_dead_runs, warn_reaped
from pytest_celery_astra.errors import CeleryAstraError

# The public fixtures, registered with this plugin (pytest collects fixtures from a plugin's namespace).
from pytest_celery_astra.fixtures import (  # noqa: E402,F401
    _celery_astra_per_test,
    celery_astra_app,
    celery_astra_broker_kind,
    celery_astra_broker_url,
    celery_astra_cassandra,
    celery_astra_cleanup,
    celery_astra_database,
    celery_astra_sent_tasks,
    celery_astra_services,
    celery_astra_settings,
    celery_astra_worker,
    celery_astra_worker_process,
)
from pytest_celery_astra.naming import is_xdist_worker, worker_id
from pytest_celery_astra.run import per_test, registry
from pytest_celery_astra.run.context import RUN_CONTEXT_KEY, RunContext
from pytest_celery_astra.run.header import describe_run
from pytest_celery_astra.settings import register_options, settings_from_config


def pytest_addoption(parser: pytest.Parser) -> None:
    register_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "astra_live: run only against a live Astra DB (--astra); skipped otherwise")
    settings = settings_from_config(config)
    # Settings the project gave (command line, ini file) are checked now; a bad value in the
    # environment waits until a test uses the plugin, so unrelated suites are not affected.
    if settings.astra and _given_by_project(settings, "astra"):
        from pytest_celery_astra.astra.preflight import check_astra_settings

        check_astra_settings(settings)
    if settings.app is not None and _given_by_project(settings, "app"):
        _check_app_module(settings.app)
    try:
        if settings.broker_url is not None and _given_by_project(settings, "broker_url"):
            check_broker_url(settings.broker_url)
        if settings.broker != "auto" and _given_by_project(settings, "broker"):
            choose_broker(settings, None)  # without "auto" it probes nothing; refuses url mode without a URL
    except ValueError as error:
        raise pytest.UsageError(f"pytest-celery-astra: {error}.") from None
    if is_xdist_worker(config):
        workerinput = config.workerinput  # type: ignore[attr-defined]  # set by xdist
        state, owns_state = RunState.from_workerinput(workerinput), False
    else:
        state, owns_state = RunState.create(), True
    context = config.stash[RUN_CONTEXT_KEY] = RunContext(settings, worker_id(config), state, owns_state)
    if owns_state:
        # SIGTERM like Ctrl-C once the run has containers to remove; until then signals are untouched.
        context.interrupts.install(state.has_something_to_clean, state.stop_all)
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(_XdistController(state), "celery_astra_xdist")


def _given_by_project(settings, name: str) -> bool:
    return settings.sources[name].startswith(("option ", "ini "))


def _check_app_module(reference: str) -> None:
    module = reference.partition(":")[0]
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise pytest.UsageError(
            f"pytest-celery-astra: module {module!r} of --celery-astra-app {reference!r} cannot be found; "
            f"fix the setting or add its directory to pytest's pythonpath ini option.")


class _XdistController:
    """Hands the run's shared state to each xdist worker."""

    def __init__(self, state: RunState):
        self.state = state

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        node.workerinput.update(self.state.to_workerinput())


def pytest_unconfigure(config: pytest.Config) -> None:
    try:
        _remove_what_the_run_made(config)
    finally:
        context = config.stash.get(RUN_CONTEXT_KEY, None)
        if context is not None:
            context.interrupts.cleanup_finished()


def _remove_what_the_run_made(config: pytest.Config) -> None:
    context = config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None:
        return
    context.in_flight.disconnect()  # Celery's signals are process-wide: a later run in this process has its own
    context.journal.disconnect()
    if context.bundle_copy is not None:  # every process made its own
        from pytest_celery_astra.astra.bundle import remove_copy

        remove_copy(context.bundle_copy)
    if context.owns_state:
        # After the last xdist worker finished (or pytest itself, without xdist):
        # remove every container of the run, also after failures, Ctrl-C and SIGTERM;
        # a second Ctrl-C or SIGTERM now is ignored rather than leaving containers half-removed.
        context.interrupts.shield_cleanup()
    context.stop_starting()  # a start no test waited for gives up; what it made is recorded first
    if not context.owns_state:
        return
    for problem in context.state.stop_all():
        sys.stderr.write(f"pytest-celery-astra: {problem}\n")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    """Before the header: remove what killed runs on this host left (containers, state directories).

    Only when the temp directory holds a state directory whose owner is provably gone, so a run with
    nothing to reap asks no container engine. Said in the header, or as a warning when it is hidden."""
    context = session.config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None or not context.owns_state or not dead_runs_left(keep=context.state.directory):
        return
    context.reaped = reap_dead_runs(keep=context.state.directory)
    if getattr(session.config.option, "verbose", 0) < 0 or getattr(session.config.option, "no_header", False):
        warn_reaped(context.reaped)


def pytest_report_header(config: pytest.Config) -> list[str]:
    context = config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None:
        return []
    reaped = [f"celery-astra reaped what killed runs left: {'; '.join(context.reaped)}"] if context.reaped else []
    if not context.settings.configured:
        # Dormant: nothing is probed or started until a test requests a plugin fixture.
        return [f"celery-astra: defaults, services start only for tests that use celery_astra_* fixtures "
                f"(run id {context.run_id})", *reaped]
    return [*describe_run(context, _xdist_workers(config)), *reaped]


def _xdist_workers(config: pytest.Config) -> list[str]:
    """The xdist worker ids this run will have, as far as the controller knows them."""
    count = getattr(config.option, "numprocesses", None)
    if is_xdist_worker(config) or not isinstance(count, int) or count <= 0 or getattr(config.option, "dist", "no") == "no":
        return [worker_id(config)]
    return [f"gw{index}" for index in range(count)]


@pytest.hookimpl(hookwrapper=True)
def pytest_assertrepr_compare(config: pytest.Config, op: str, left: object, right: object):
    """A failing comparison with the broker URL shows reprs, which mask the password: pytest's own
    text diff would print the characters (also into ``pytest --debug``'s log, hence a wrapper)."""
    outcome = yield
    from pytest_celery_astra.masking import MaskedUrl

    if isinstance(left, MaskedUrl) or isinstance(right, MaskedUrl):
        outcome.force_result([[f"{left!r} {op} {right!r}", "(pytest-celery-astra: the broker URL's password is masked)"]])


_TASKS_REPORTED_KEY = pytest.StashKey[bool]()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call):
    """A failing test gets what each task it sent did (run/timeline.py), the log of every worker process
    running (the thread worker logs to pytest), and one that failed because too few Cassandra replicas were
    alive, the keyspace's replication."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        if not item.stash.get(_TASKS_REPORTED_KEY, False):  # once: the first failing phase
            item.stash[_TASKS_REPORTED_KEY] = True
            from pytest_celery_astra.run.timeline import report_section

            section = report_section(item.config)
            if section is not None:
                report.sections.append(section)
        for worker in item.config.stash.get(registry.RUNNING_WORKERS_KEY, []):
            if hasattr(worker, "log_tail"):
                report.sections.append((f"celery worker process {worker.hostname}", worker.log_tail()))
        if call.excinfo is not None and "cassandra" in type(call.excinfo.value).__module__:
            _explain_unavailable(item.config, report, call.excinfo.value)


def _explain_unavailable(config: pytest.Config, report: pytest.TestReport, error: BaseException) -> None:
    from pytest_celery_astra.cassandra.replication import unavailable_cause, unavailable_sentence

    unavailable = unavailable_cause(error)
    databases = [db for db in config.stash.get(registry.DATABASES_KEY, {}).values() if db.replication is not None]
    if unavailable is not None and databases:
        report.sections.append(("pytest-celery-astra", unavailable_sentence(
            databases[0].keyspace, databases[0].replication, unavailable)))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under xdist, a worker whose tests (as selected) fault services gets containers of its own."""
    context = session.config.stash.get(RUN_CONTEXT_KEY, None)
    if context is not None:
        context.uses_own_containers(getattr(item, "fixturenames", ()) for item in session.items)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.stash[RUN_CONTEXT_KEY].settings.astra:
        return
    skip = pytest.mark.skip(reason="needs a live Astra DB: run with --astra")
    for item in items:
        if item.get_closest_marker("astra_live") is not None:
            item.add_marker(skip)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "celery_astra_broker_kind" not in metafunc.fixturenames:
        return
    kinds = _broker_kinds(metafunc.config)
    if len(kinds) > 1:
        metafunc.parametrize("celery_astra_broker_kind", kinds, indirect=True, ids=kinds, scope="session")


def _broker_kinds(config: pytest.Config) -> tuple[str, ...]:
    """Several brokers only in container mode; resolving ``auto`` probes the engine, once per process."""
    context = config.stash.get(RUN_CONTEXT_KEY, None)
    if context is None or "," not in context.settings.broker_kind:
        return ()
    try:
        return context.broker.kinds
    except CeleryAstraError:
        return ()  # the fixture reports it, with the test that needs it


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Before the test's fixtures: the run's journal of tasks begins afresh (workers/journal.py); only the
    running workers it asked for consume (workers/standby.py)."""
    context = item.config.stash.get(RUN_CONTEXT_KEY, None)
    if context is not None:
        context.journal.begin()
    running: list = item.config.stash.get(registry.RUNNING_WORKERS_KEY, [])
    if running:
        from pytest_celery_astra.workers.standby import consume_as_requested

        consume_as_requested(set(getattr(item, "fixturenames", ())), list(running))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Function):
    """During the test itself, tell the backend when every result row in its tables was stored by this
    process since they were created: a task id it has not stored has no row (ResultRows.known_absent).
    With cleanup on, the janitor deletes other writers' rows after their test; with cleanup off they stay,
    so after one such test the backend reads first again until the end of the run."""
    yield from per_test.call_with_rows_known(item)
