"""The secure connect bundle, copied where the driver can use it.

cassandra-driver unzips the bundle into a new directory *next to the bundle*, which fails for a bundle
in a read-only secrets mount, and Celery opens the bundle lazily, so a relative path breaks once a test
changes directory. Each pytest process therefore copies the bundle into a private (0700) temp
directory and hands that absolute path to the plugin and Celery alike. The copy holds the client's
key: it carries its owner like a state directory (a later run reaps it if this one is killed) and is
removed at the end of the process.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

from pytest_celery_astra.host import Owner

PREFIX = "pytest-celery-astra-bundle-"  # starts like a state directory: reaped the same way


def private_directory() -> Path:
    """A new private (0700) directory for this process's bundle, marked with its owner."""
    directory = Path(tempfile.mkdtemp(prefix=PREFIX))  # mode 0700
    (directory / "owner.json").write_text(json.dumps(dataclasses.asdict(Owner.this_process())))
    return directory


def private_copy(bundle: str) -> Path:
    """Copy ``bundle`` into a new private directory; return the copy's absolute path."""
    copy = private_directory() / "secure-connect-bundle.zip"
    shutil.copyfile(bundle, copy)
    copy.chmod(0o600)
    return copy


def remove_copy(copy: Path) -> None:
    shutil.rmtree(copy.parent, ignore_errors=True)
