"""Installed but unused, the plugin changes nothing: no engine probe, no temp files, no failure from
the environment, one header line. Used, a bad environment value stops the run once, before any container."""

import os
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

from tests.conftest import without_short_summary

UNRELATED = '''
def test_arithmetic():
    assert 1 + 1 == 2
'''
BAD_ENVIRONMENT = {
    "CELERY_ASTRA_WORKER_POOL": "prefork",
    "CELERY_ASTRA_USE_ASTRA": "true",
    "ASTRA_DB_APPLICATION_TOKEN": "not-a-token-d0rmant-s3cret",
    "CELERY_ASTRA_BROKER_URL": "ampq://guest:d0rmant-s3cret@localhost//",
}


class CountingSocket:
    """A fake DOCKER_HOST that counts who knocks: an engine probe would connect here.

    Only other processes count (the peer's pid, from SO_PEERCRED): DOCKER_HOST is set in this test process
    too, where a thread of an earlier test on this xdist worker (a container stopping) may still connect."""

    def __init__(self, path):
        self.path, self.peers = str(path), []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        self.server.listen(8)
        self.server.settimeout(0.2)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopped.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                continue
            pid, _, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                                 struct.calcsize("3i")))
            if pid != os.getpid():
                self.peers.append(_command_of(pid))
            connection.close()

    @property
    def connections(self):
        return len(self.peers)

    def close(self):
        self.stopped.set()
        self.thread.join()
        self.server.close()


def _command_of(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        command = "gone"
    return f"{pid}: {command}"


@pytest.fixture
def isolated(pytester, monkeypatch, tmp_path_factory):
    """An unrelated project, a private TMPDIR and a counting DOCKER_HOST."""
    tmpdir = tmp_path_factory.mktemp("tmpdir")
    sock_dir = tmp_path_factory.mktemp("sock")
    counter = CountingSocket(sock_dir / "engine.sock")
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    monkeypatch.setenv("DOCKER_HOST", f"unix://{counter.path}")
    pytester.makepyfile(test_unrelated=UNRELATED)
    yield pytester, tmpdir, counter
    counter.close()


@pytest.mark.parametrize("environment", [{}, BAD_ENVIRONMENT], ids=["clean-env", "bad-env"])
def test_unrelated_suite_is_unchanged(isolated, monkeypatch, environment):
    pytester, tmpdir, counter = isolated
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", timeout=60)
    result.assert_outcomes(passed=1)
    header = [line for line in result.outlines if line.startswith("celery-astra")]
    assert len(header) <= 1, header
    assert counter.connections == 0, f"the plugin probed the container engine: {counter.peers}"
    assert [p.name for p in tmpdir.iterdir() if "celery-astra" in p.name] == []
    assert "d0rmant-s3cret" not in result.stdout.str() + result.stderr.str()


def test_unrelated_suite_under_xdist_is_unchanged(isolated):
    pytester, tmpdir, counter = isolated
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", timeout=120)
    result.assert_outcomes(passed=1)
    assert counter.connections == 0, counter.peers
    assert [p.name for p in tmpdir.iterdir() if "celery-astra" in p.name] == []


def test_bad_environment_value_stops_a_suite_that_uses_the_plugin_once(isolated, monkeypatch):
    pytester, tmpdir, counter = isolated
    monkeypatch.setenv("CELERY_ASTRA_WORKER_POOL", "prefork")
    pytester.makepyfile(test_uses='''
        def test_one(celery_astra_cassandra):
            pass

        def test_two(celery_astra_cassandra):
            pass
    ''')
    started = time.monotonic()
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "test_uses.py", timeout=60)
    assert time.monotonic() - started < 30
    result.assert_outcomes(errors=1)
    sentence = "env CELERY_ASTRA_WORKER_POOL 'prefork' is not valid for worker_pool"
    assert without_short_summary(result.stdout.str()).count(sentence) == 1, result.stdout.str()
    assert counter.connections == 0, "a container engine was asked although the settings were wrong"


def test_bad_setting_on_the_command_line_is_still_a_usage_error(isolated):
    pytester, _, _ = isolated
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--celery-astra-worker-pool", "prefork",
                                           timeout=60)
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_every_plugin_fixture_is_documented(pytester):
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--fixtures", timeout=60)
    lines = result.outlines
    names = [i for i, line in enumerate(lines) if line.startswith("celery_astra")]
    assert {lines[i].split()[0] for i in names} >= {
        "celery_astra_app", "celery_astra_worker", "celery_astra_database", "celery_astra_cassandra",
        "celery_astra_cleanup", "celery_astra_broker_url", "celery_astra_settings"}
    undocumented = [lines[i] for i in names if "no docstring available" in lines[i + 1]]
    assert undocumented == []


def test_the_plugin_imports_without_fcntl():
    code = ("import sys; sys.modules['fcntl'] = None; "
            "import pytest_celery_astra.plugin, pytest_celery_astra.containers.coordination; print('imported')")
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                               env={**os.environ})
    assert completed.stdout.strip() == "imported", completed.stderr
