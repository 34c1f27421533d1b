"""testcontainers' reaper (Ryuk) is on by default with Docker, and removes a process's containers once that
process exits: under xdist, the worker that started the run's containers ends as soon as it has no tests
left while the others still use them. The plugin starts its containers without the reaper; here the
reaper's image cannot even be pulled, so a start that asked for it would fail."""

import os

import pytest

from tests.plugin.test_plugin import USER_APP, containers_of_run, run_id_of

pytestmark = pytest.mark.usefixtures("container_engine")

TESTS = '''
from myapp import add


def test_a(celery_astra_worker):
    assert add.delay(1, 2).get(timeout=30) == 3


def test_b(celery_astra_worker):
    assert add.delay(2, 2).get(timeout=30) == 4
'''


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["n0", "n2"])
def test_the_run_does_not_ask_for_the_reaper_with_testcontainers_defaults(pytester, monkeypatch, xdist):
    pytester.makepyfile(myapp=USER_APP, test_reaped=TESTS)
    (pytester.path / "pytest.ini").write_text("[pytest]\ncelery_astra_app = myapp:app\n")
    monkeypatch.delenv("TESTCONTAINERS_RYUK_DISABLED", raising=False)   # testcontainers' default: the reaper on
    monkeypatch.setenv("RYUK_CONTAINER_IMAGE", "localhost/pytest-celery-astra/no-such-reaper:0")
    assert "TESTCONTAINERS_RYUK_DISABLED" not in os.environ
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-p", "no:randomly", *xdist, timeout=300)
    result.assert_outcomes(passed=2)
    assert containers_of_run(run_id_of(result)) == []
