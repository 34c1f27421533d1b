"""Bad input, as users type it: one sentence naming the setting, in seconds, once, nothing left behind,
and a distinctive secret never shown. Each row runs pytest against the real engine: a usage error in this process,
the rest in a subprocess."""

import os
import time

import docker  # noqa: F401 - imported before pytester snapshots sys.modules: a re-import inside a test breaks requests' cookies
import pytest

from tests.conftest import without_short_summary
from tests.plugin.test_dormant import CountingSocket
from tests.plugin.test_plugin import containers_of_run, run_id_of

# Nothing left behind, checked for this run only (so the cases run beside other tests under xdist): a usage
# error asks no container engine at all (DOCKER_HOST is a socket that counts callers); a run that fails later
# leaves no container labelled with its run id.
pytestmark = pytest.mark.usefixtures("container_engine")

SECRET = "Zq9-bad-input-s3cret"
USAGE = pytest.ExitCode.USAGE_ERROR
FAILED = pytest.ExitCode.TESTS_FAILED

APP = '''
from celery import Celery

app = Celery("myapp")
not_an_app = 42


@app.task(name="myapp.add")
def add(a, b):
    return a + b
'''
BROKEN_MODULE = "x = 1 / 0\n"
TESTS = '''
def test_one(celery_astra_worker):
    pass

def test_two(celery_astra_worker):
    pass
'''
ASTRA = ["--astra", "--astra-keyspace", "ks"]


def _bundle(pytester, kind):
    if kind == "missing":
        return str(pytester.path / "nowhere.zip")
    path = pytester.path / "bundle.zip"
    path.write_text("not a zip")
    return str(path)


# id, arguments, environment, exit code, what the sentence says
CASES = [
    ("broker-mode", ["--celery-astra-broker", "rabbit"], {}, USAGE, "'rabbit' is not valid for broker: expected one of"),
    ("broker-kind", ["--celery-astra-broker-kind", "kafka"], {}, USAGE, "is not valid for broker_kind"),
    ("pool", ["--celery-astra-worker-pool", "prefork"], {}, USAGE, "is not valid for worker_pool"),
    ("concurrency-zero", ["--celery-astra-worker-concurrency", "0"], {}, USAGE, "whole number above 0"),
    ("concurrency-word", ["--celery-astra-worker-concurrency", "two"], {}, USAGE, "not valid for worker_concurrency"),
    ("startup-timeout", ["--celery-astra-startup-timeout", "-1"], {}, USAGE, "above 0"),
    ("worker-timeout", ["--celery-astra-worker-timeout", "abc"], {}, USAGE, "not valid for worker_timeout"),
    ("poll-interval", ["--celery-astra-result-poll-interval", "0"], {}, USAGE, "not valid for result_poll_interval"),
    ("port-range", ["--celery-astra-cassandra-port", "70000"], {}, USAGE, "between 1 and 65535"),
    ("port-word", ["--celery-astra-cassandra-port", "http"], {}, USAGE, "not valid for cassandra_port"),
    ("keyspace-case", ["--celery-astra-keyspace", "MyTests"], {}, USAGE, "expected lower case"),
    ("keyspace-chars", ["--celery-astra-keyspace", "bad-name"], {}, USAGE, "CQL name"),
    ("table-case", ["--celery-astra-table", "Results"], {}, USAGE, "expected lower case"),
    ("read-consistency", ["--celery-astra-read-consistency", "quorum"], {}, USAGE, "not valid for read_consistency"),
    ("write-consistency", ["--celery-astra-write-consistency", "fast"], {}, USAGE, "not valid for write_consistency"),
    ("cleanup", ["--celery-astra-cleanup", "maybe"], {}, USAGE, "true or false"),
    ("reuse", ["--celery-astra-reuse-containers", "perhaps"], {}, USAGE, "true or false"),
    ("app-no-colon", ["--celery-astra-app", "myapp"], {}, USAGE, "module:attribute"),
    ("app-no-module", ["--celery-astra-app", "nosuchmodule:app"], {}, USAGE, "module 'nosuchmodule'"),
    ("url-mode-no-url", ["--celery-astra-broker", "url"], {}, USAGE, "broker mode url needs --celery-astra-broker-url"),
    ("url-transport", ["--celery-astra-broker-url", "nonsense://::"], {}, USAGE, "unknown transport 'nonsense'"),
    ("url-typo-secret", ["--celery-astra-broker-url", f"ampq://guest:{SECRET}@localhost//"], {}, USAGE,
     "broker URL ampq://guest:***@localhost// has an unknown transport"),
    ("url-port", ["--celery-astra-broker-url", f"amqp://guest:{SECRET}@localhost:port//"], {}, USAGE,
     "has a port that is not a number"),
    ("hosts-empty", ["--celery-astra-cassandra-hosts", ","], {}, USAGE, "comma-separated host names"),
    ("astra-no-bundle", ASTRA, {"ASTRA_DB_APPLICATION_TOKEN": f"AstraCS:{SECRET}"}, USAGE, "no secure connect bundle"),
    ("astra-missing-bundle", [*ASTRA, "--astra-bundle", "{missing}"], {"ASTRA_DB_APPLICATION_TOKEN": f"AstraCS:{SECRET}"},
     USAGE, "does not exist"),
    ("astra-corrupt-bundle", [*ASTRA, "--astra-bundle", "{corrupt}"], {"ASTRA_DB_APPLICATION_TOKEN": f"AstraCS:{SECRET}"},
     USAGE, "is not a zip file"),
    ("ini-inline-comment", [], {"@ini": "celery_astra_app = myapp:app   # the app"}, USAGE,
     "ini values keep inline comments; put the comment on its own line"),
    ("env-url-in-broker", [], {"CELERY_ASTRA_BROKER": f"amqp://guest:{SECRET}@localhost//"}, FAILED,
     "env CELERY_ASTRA_BROKER 'amqp://guest:***@localhost//' is not valid for broker"),
    ("env-pool", [], {"CELERY_ASTRA_WORKER_POOL": "prefork"}, FAILED, "env CELERY_ASTRA_WORKER_POOL 'prefork'"),
    ("app-missing-attribute", ["--celery-astra-app", "myapp:missing"], {}, FAILED,
     "module 'myapp' has no attribute 'missing'"),
    ("app-not-celery", ["--celery-astra-app", "myapp:not_an_app"], {}, FAILED, "is not a Celery app (found int)"),
    ("app-raises", ["--celery-astra-app", "broken:app"], {}, FAILED,
     "importing module 'broken' of --celery-astra-app 'broken:app' raised ZeroDivisionError: division by zero"),
    ("hosts-unresolvable", ["--celery-astra-broker", "memory", "--celery-astra-cassandra-hosts", "cassandra.invalid"],
     {}, FAILED, "resolves to an address; fix --celery-astra-cassandra-hosts"),
    ("hosts-refused", ["--celery-astra-broker", "memory", "--celery-astra-cassandra-hosts", "127.0.0.1",
                       "--celery-astra-cassandra-port", "1"], {}, FAILED, "does not answer CQL"),
    ("broker-refused", ["--celery-astra-broker-url", f"amqp://guest:{SECRET}@127.0.0.1:1//"], {}, FAILED,
     "the broker at amqp://guest:***@127.0.0.1:1// could not be reached"),
    ("no-engine", [], {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}, FAILED,
     "so cassandra cannot start; start Docker"),
]


ENGINE = os.environ.get("DOCKER_HOST")  # before a case points DOCKER_HOST elsewhere


@pytest.mark.parametrize("case_id, args, env, exit_code, sentence", CASES, ids=[case[0] for case in CASES])
def test_bad_input_is_one_sentence(pytester, monkeypatch, tmp_path_factory, case_id, args, env, exit_code,
                                   sentence):
    pytester.makepyfile(myapp=APP, broken=BROKEN_MODULE, test_uses=TESTS)
    ini = ["[pytest]", "pythonpath = ."]
    for name, value in env.items():
        if name == "@ini":
            ini.append(value)
        else:
            monkeypatch.setenv(name, value)
    if not any(arg.startswith("--celery-astra-app") for arg in args) and "@ini" not in env:
        ini.append("celery_astra_app = myapp:app")
    (pytester.path / "pytest.ini").write_text("\n".join(ini) + "\n")
    args = [arg.format(missing=_bundle(pytester, "missing"), corrupt=_bundle(pytester, "corrupt")) for arg in args]
    counter = None
    if exit_code == USAGE and "DOCKER_HOST" not in env:
        counter = CountingSocket(tmp_path_factory.mktemp("engine") / "engine.sock")
        monkeypatch.setenv("DOCKER_HOST", f"unix://{counter.path}")
    started = time.monotonic()
    try:
        if exit_code == USAGE:
            # Refused while pytest configures, before any test or service: in this process (a pytest subprocess
            # costs ~1.5 s of CPU to start); the cases that fail later run in a subprocess, which must leave nothing.
            result = pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)
        else:
            result = pytester.runpytest_subprocess("-p", "no:cacheprovider", *args, timeout=120)
    finally:
        if counter is not None:
            counter.close()
    seconds = time.monotonic() - started
    output = result.stdout.str() + result.stderr.str()
    print(f"BAD-INPUT {case_id} exit {int(result.ret)} in {seconds:.1f} s")
    assert result.ret == exit_code, output
    assert without_short_summary(output).count(sentence) == 1, output
    assert "Traceback" not in output
    assert SECRET not in output
    assert seconds < 20, f"{case_id} took {seconds:.1f} s"
    if counter is not None:
        assert counter.connections == 0, f"a usage error asked the container engine: {counter.peers}"
    if exit_code == FAILED:
        result.assert_outcomes(errors=1)  # once, not once per test
        assert containers_of_run(run_id_of(result), ENGINE) == [], "a container was left behind"
