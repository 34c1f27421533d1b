"""The app a process worker runs: ``celery -A pytest_celery_astra.workers.process_app worker ...``.

Importing this module imports the user's app (``module:attribute``) and wires it to the test broker and
Cassandra exactly as the test process's app fixture did, from the :class:`~pytest_celery_astra.workers.wiring.Wiring`
that :class:`~pytest_celery_astra.workers.process.ProcessWorker` handed it (a private file, secrets in the environment).
Everything else is Celery's own worker command line: pool, concurrency, node name, queues.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
import uuid
from pathlib import Path

from celery.worker.control import control_command

from pytest_celery_astra.celery_app import configure_app, load_app
from pytest_celery_astra.masking import MaskedUrl
from pytest_celery_astra.workers.held import DROP_HELD_COMMAND, drop_held_tasks
from pytest_celery_astra.workers.process import BACKEND_PROBE, IMPORT_PROBLEMS
from pytest_celery_astra.workers.wiring import CONFIG_ENV, Wiring


def _wired_app():
    wiring = Wiring.read()
    app = load_app(wiring.app)
    import_task_modules(wiring.task_modules)
    if wiring.default_queue:
        app.conf.task_default_queue = wiring.default_queue
    return configure_app(
        app, MaskedUrl(wiring.broker_url).unmasked(), wiring.transport_options, wiring.target.celery_settings(),
        wiring.keyspace, wiring.table, wiring.read_consistency, wiring.write_consistency, wiring.poll_interval)


def import_task_modules(modules: dict[str, list[str]]) -> None:
    """Import the modules that define the app's tasks in the test process (test modules among them). One
    that cannot be imported here is one sentence, in the worker's log and in a file beside the wiring that
    the test process turns into a warning: the worker drops those tasks as unregistered."""
    problems = []
    for module, tasks in modules.items():
        if module in sys.modules:
            continue
        try:
            importlib.import_module(module)
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as error:  # pytest's skip at module level is a BaseException too
            problems.append(
                f"pytest-celery-astra: the worker process cannot import module {module!r}, which defines task(s) "
                f"{', '.join(tasks)} ({type(error).__name__}: {error}); it drops them as unregistered: make the "
                f"module importable by that name in a fresh process (a package with __init__.py, or pytest's "
                f"pythonpath ini option), or define the tasks in your app's modules.")
    if problems:
        sys.stderr.write("\n".join(problems) + "\n")
        Path(os.environ[CONFIG_ENV]).with_name(IMPORT_PROBLEMS).write_text("\n".join(problems))


app = _wired_app()


@app.task(name=BACKEND_PROBE, ignore_result=True)
def _backend_probe(barrier: str, children: int, timeout: float) -> None:
    """ProcessWorker.probe_backends: this child's (or thread's) result backend answers a read — the driver
    reconnects meanwhile — then the child holds until every child has answered one, so none takes two."""
    deadline = time.monotonic() + timeout
    probe_id = f"celery-astra-probe-{uuid.uuid4().hex}"
    while True:
        try:
            app.backend.get_task_meta(probe_id, cache=False)
            break
        except Exception:  # noqa: BLE001 - not reconnected yet
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
    folder = Path(barrier)
    try:
        (folder / f"answered-{os.getpid()}-{threading.get_ident()}").touch()
    except FileNotFoundError:  # the test process stopped waiting
        return
    while folder.exists() and len(list(folder.glob("answered-*"))) < children and time.monotonic() < deadline:
        time.sleep(0.01)


@control_command(name=DROP_HELD_COMMAND)
def _drop_held(state) -> list[str]:
    """ProcessWorker.settle: drop the tasks held for an ETA or countdown, in the consumer (workers/held.py)."""
    return drop_held_tasks(state.consumer)
