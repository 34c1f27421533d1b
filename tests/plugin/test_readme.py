"""The README and the docs are the contract: every snippet a user would paste runs here, verbatim, against
real services.

Snippets are marked in README.md and docs/*.md with ``<!-- readme-test: GROUP/PATH -->`` right above the
fenced block;
each group becomes a pytester project (next to the sortWords example's tasks.py and celeryconfig.py)
with each block written, unchanged, to PATH.
"""

import json
import re
from pathlib import Path

import pytest

from tests.plugin.test_plugin import containers_of_run, run_id_of

pytestmark = pytest.mark.usefixtures("container_engine")

ROOT = Path(__file__).resolve().parents[2]
# The README and every docs page, each pastable block checked in its own page.
PAGES = {path.relative_to(ROOT).as_posix(): path.read_text()
         for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]}
README = "\n".join(PAGES.values())
EXAMPLE = ROOT / "examples" / "sortwords"
MARKED = re.compile(r"<!-- readme-test: (?P<path>\S+)[^>]*-->\n```[\w-]*\n(?P<body>.*?)```", re.S)
FENCE = re.compile(r"^```(?P<lang>[\w-]*)\n", re.M)
PASTABLE = {"python", "ini", "toml"}


def snippets(group: str) -> dict[str, str]:
    found = {m["path"].split("/", 1)[1]: m["body"] for m in MARKED.finditer(README) if m["path"].startswith(group + "/")}
    assert found, f"no README snippet in group {group!r}"
    return found


def project_with(pytester, group: str, *, example_files: bool = True, excerpts: tuple = ()) -> dict[str, str]:
    if example_files:
        for name in ("tasks.py", "celeryconfig.py"):
            (pytester.path / name).write_text((EXAMPLE / name).read_text())
    files = snippets(group)
    for path, body in files.items():
        if path in excerpts:
            continue  # an excerpt of the example's own file, checked by the test
        target = pytester.path / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(body)
    return files


def assert_nothing_left(result) -> None:
    assert containers_of_run(run_id_of(result)) == []


def test_every_pastable_block_is_tested():
    """A python/ini/toml block without a readme-test marker would be a promise nobody checks."""
    untested = []
    for page, text in PAGES.items():
        for fence in FENCE.finditer(text):
            if fence["lang"] not in PASTABLE:
                continue
            before = text[:fence.start()].rstrip().splitlines()[-1]
            if not before.startswith("<!-- readme-test:"):
                untested.append(f"{page}: {text[fence.end():fence.end() + 60].splitlines()[0]}")
    assert untested == []
    assert len(PAGES) > 10  # README.md and the docs pages


def test_quickstart_as_written(pytester):
    # The README's own tasks.py, alone: nothing of the example beside it.
    project_with(pytester, "quickstart", example_files=False)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["celery-astra worker: *app tasks:app (ini celery_astra_app)*"])
    assert_nothing_left(result)


def test_quickstart_with_an_inline_comment_is_one_sentence(pytester):
    project_with(pytester, "quickstart")
    (pytester.path / "pytest.ini").write_text(
        "[pytest]\ncelery_astra_app = tasks:app     # your app, as module:attribute\npythonpath = .\n")
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")  # refused at configure
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "*ini celery_astra_app * is not valid for app: ini values keep inline comments; "
        "put the comment on its own line; fix --celery-astra-app*"])


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
def test_own_tables_as_written(pytester):
    files = project_with(pytester, "own-data", excerpts=("tasks.py",))
    # The README's tasks.py part is the example app's own code, verbatim.
    assert files["tasks.py"] in (EXAMPLE / "tasks.py").read_text()
    (pytester.path / "pytest.ini").write_text(snippets("quickstart")["pytest.ini"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", timeout=300)
    result.assert_outcomes(passed=2)
    assert_nothing_left(result)


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_second_app_keyspace_and_worker_as_written(pytester, xdist):
    project_with(pytester, "factories", example_files=False)
    # Not from the README: proof that the second keyspace is the billing one and is emptied after each test.
    pytester.makepyfile(**{"tests/test_zz_billing_is_cleaned": '''
        from billing.tasks import send_invoice

        def test_writes(billing_worker, billing_database):
            assert billing_database.keyspace.startswith("billing_")
            send_invoice.delay(1).get(timeout=30)
            assert billing_database.session.execute(f"SELECT COUNT(*) FROM {billing_database.result_table}").one()[0] == 1

        def test_finds_empty(billing_database):
            assert billing_database.session.execute(f"SELECT * FROM {billing_database.result_table}").one() is None
    '''})
    (pytester.path / "pytest.ini").write_text("[pytest]\npythonpath = .\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *xdist, timeout=300)
    result.assert_outcomes(passed=3)
    assert_nothing_left(result)


@pytest.mark.parametrize("group, header", [
    ("settings-ini", [
        "celery-astra broker: container redis*",
        "celery-astra cassandra: *keyspace sortwords_tests_master (ini celery_astra_keyspace)*",
        "celery-astra worker: pool threads (ini *), concurrency 4 (ini *), queues * + celery,reports*",
    ]),
    ("settings-toml", ["celery-astra worker: pool threads (ini *), concurrency 2 (ini *)*"]),
], ids=["pytest.ini", "pyproject.toml"])
def test_settings_as_written(pytester, group, header):
    project_with(pytester, group)
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_tasks.py").write_text(snippets("quickstart")["tests/test_tasks.py"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(header)
    assert_nothing_left(result)


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
def test_sent_tasks_as_written(pytester):
    project_with(pytester, "sent")
    (pytester.path / "pytest.ini").write_text(snippets("quickstart")["pytest.ini"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=300)
    result.assert_outcomes(passed=1)
    assert_nothing_left(result)


FAULTED_CONTAINERS = """
import json
import os


def pytest_runtest_teardown(item):
    services = item.funcargs.get("celery_astra_services")
    if services is not None:
        with open(os.environ["FAULTED"], "a") as out:
            out.write(json.dumps([os.environ.get("PYTEST_XDIST_WORKER", "master"),
                                  services.broker.service.container_id,
                                  services.cassandra.service.container_id]) + "\\n")
"""


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_faults_as_written(pytester, monkeypatch, xdist):
    """Under xdist an xdist worker that may run a fault test has containers of its own: the tests pass, and no
    container one xdist worker faulted is another's."""
    project_with(pytester, "faults")
    pytester.makeconftest(FAULTED_CONTAINERS)   # beside the README's files: which containers each test faulted
    faulted = pytester.path / "faulted.jsonl"
    monkeypatch.setenv("FAULTED", str(faulted))
    (pytester.path / "pytest.ini").write_text(snippets("quickstart")["pytest.ini"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", "-rs", *xdist,
                                           timeout=600)
    result.assert_outcomes(passed=2)
    rows = [json.loads(line) for line in faulted.read_text().splitlines()]
    assert len(rows) == 2, rows
    holders: dict[str, set] = {}
    for worker, *containers in rows:
        for container in containers:
            holders.setdefault(container, set()).add(worker)
    assert all(len(workers) == 1 for workers in holders.values()), rows
    assert_nothing_left(result)


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")   # skipped before any fault: shared services do
@pytest.mark.parametrize("args, reason", [
    ([], "*celery_astra_services faults containers kept for reuse (--celery-astra-reuse-containers), which other "
         "runs on this host may be using*"),
    (["-n", "2", "--celery-astra-xdist-faults", "skip"],
     "*celery_astra_services faults the run's containers, which every xdist worker shares (xdist_faults = skip)*"),
], ids=["reused-containers", "xdist-faults-skip"])
def test_faults_are_skipped_with_the_reason(pytester, args, reason):
    project_with(pytester, "faults")
    (pytester.path / "pytest.ini").write_text(snippets("quickstart")["pytest.ini"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", *args, timeout=600)
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines([reason])
    assert_nothing_left(result)


def test_the_fork_safe_pattern_is_the_examples_own_code():
    assert snippets("forksafe")["tasks.py"] in (EXAMPLE / "tasks.py").read_text()


def test_the_crashed_child_fix_is_the_examples_own_code():
    # Run as written by tests/plugin/test_process_worker.py (a child that crashes, on both brokers).
    assert snippets("crashfix")["tasks.py"] in (EXAMPLE / "tasks.py").read_text()


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_several_brokers_as_written(pytester, xdist):
    project_with(pytester, "brokers")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", *xdist, timeout=300)
    result.assert_outcomes(passed=2)
    output = result.stdout.str()
    for kind in ("rabbitmq", "redis"):
        assert f"tests/test_brokers.py::test_sorts_on_every_broker[{kind}]" in output
    result.stdout.fnmatch_lines(["celery-astra broker: container rabbitmq (image *), redis (image *); *"])
    assert_nothing_left(result)


@pytest.mark.usefixtures("shared_cassandra", "shared_brokers")
@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_celery_contrib_style_as_written(pytester, xdist):
    project_with(pytester, "contrib")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", *xdist, timeout=300)
    result.assert_outcomes(passed=3)
    assert_nothing_left(result)
