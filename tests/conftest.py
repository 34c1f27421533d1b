"""Shared helpers for the project's own tests."""

import os
import re
import shutil

import pytest

REAL_SERVICE_ENV = ("DOCKER_HOST", "TESTCONTAINERS_RYUK_DISABLED", "TESTCONTAINERS_CONNECTION_MODE")


@pytest.fixture(scope="session")
def container_engine():
    """Fail (never skip) when no container engine answers: CI must run the integration tests."""
    from pytest_celery_astra.containers.engine import probe_engine

    probe = probe_engine()
    if not probe.answers:
        pytest.fail(f"no container engine answers at {probe.docker_host} ({probe.detail}); "
                    f"run scripts/container-engine (see README)", pytrace=False)
    return probe


def image(service: str) -> str:
    """The image the plugin would use for ``service`` (env override, else the official one)."""
    from pytest_celery_astra.settings import SETTINGS_BY_NAME

    setting = SETTINGS_BY_NAME[f"{service}_image"]
    return os.environ.get(setting.env_var, setting.default)


def without_short_summary(output: str) -> str:
    """``output`` without pytest's "short test summary info" section.

    That section repeats each error's message, in full when pytest runs on CI (env ``CI`` or
    ``BUILD_NUMBER`` set) and cut to the terminal width elsewhere; counting a sentence "once" means once
    in the report proper, whatever the machine.
    """
    kept, skipping = [], False
    for line in output.splitlines():
        if re.match(r"^=+ short test summary info =+$", line):
            skipping = True
        elif skipping and re.match(r"^(=|!)+ .* (=|!)+$", line):
            skipping = False
        if not skipping:
            kept.append(line)
    return "\n".join(kept)


def podman_or_docker() -> str:
    return shutil.which("podman") or shutil.which("docker") or "docker"
