"""Astra DB mode: check the settings before any test runs, and find tables left by crashed runs."""

from __future__ import annotations

import datetime
import os
import zipfile

import pytest

from pytest_celery_astra.cassandra.marks import STALE_AFTER, is_stale, mark_owner, parse_mark  # noqa: F401 - STALE_AFTER re-exported
from pytest_celery_astra.settings import Settings

BUNDLE_FILES = ("config.json", "ca.crt", "cert", "key")
REFUSED_WRITE_CONSISTENCY = ("ONE", "ANY", "LOCAL_ONE")


def check_astra_settings(settings: Settings) -> None:
    """Raise :class:`pytest.UsageError` naming the first missing or invalid Astra setting. A bundle still
    to be downloaded (``--astra-db-id``) is checked by :func:`check_bundle` once it is there."""
    bundle = settings.astra_bundle
    if bundle is None and settings.astra_db_id is not None:
        if settings.astra_token is None:
            _fail("downloading the bundle for --astra-db-id (ASTRA_DB_ID) needs an application token; set "
                  "--astra-token or ASTRA_DB_APPLICATION_TOKEN, or set --astra-bundle to a downloaded bundle.")
    elif bundle is None:
        _fail("no secure connect bundle given; set --astra-bundle or ASTRA_DB_SECURE_BUNDLE_PATH "
              "to the zip downloaded from the Astra console, or --astra-db-id (ASTRA_DB_ID) to download it.")
    else:
        check_bundle(bundle)
    has_client = settings.astra_client_id is not None or settings.astra_client_secret is not None
    if settings.astra_token is None and not has_client:
        _fail("no credentials given; set --astra-token or ASTRA_DB_APPLICATION_TOKEN (an AstraCS:... token), "
             "or --astra-client-id and --astra-client-secret.")
    if settings.astra_token is not None:
        if not str(settings.astra_token).startswith("AstraCS:"):
            _fail("the application token does not start with 'AstraCS:'; set --astra-token "
                 "(ASTRA_DB_APPLICATION_TOKEN) to the token generated in the Astra console.")
    elif settings.astra_client_id is None or settings.astra_client_secret is None:
        _fail("a client id needs its client secret and the reverse; set both --astra-client-id "
             "(ASTRA_DB_CLIENT_ID) and --astra-client-secret (ASTRA_DB_CLIENT_SECRET).")
    if settings.astra_keyspace is None:
        _fail("no keyspace given; set --astra-keyspace or ASTRA_DB_KEYSPACE to an existing keyspace "
             "of the database (Astra does not create keyspaces through CQL).")
    if settings.write_consistency in REFUSED_WRITE_CONSISTENCY:
        _fail(f"Astra DB refuses writes at {settings.write_consistency}; set --celery-astra-write-consistency "
             f"to LOCAL_QUORUM.")


def _fail(message: str) -> None:
    raise pytest.UsageError(f"pytest-celery-astra (--astra): {message}")


def check_bundle(bundle: str) -> None:
    """Raise :class:`pytest.UsageError` unless ``bundle`` is a secure connect bundle."""
    if not os.path.isfile(bundle):
        _fail(f"the secure connect bundle {bundle!r} does not exist; fix --astra-bundle "
              f"(ASTRA_DB_SECURE_BUNDLE_PATH).")
    try:
        with zipfile.ZipFile(bundle) as archive:
            missing = [name for name in BUNDLE_FILES if name not in archive.namelist()]
    except zipfile.BadZipFile:
        _fail(f"{bundle!r} is not a zip file, so not a secure connect bundle; download it again from the "
              f"Astra console and fix --astra-bundle (ASTRA_DB_SECURE_BUNDLE_PATH).")
    if missing:
        _fail(f"{bundle!r} lacks {', '.join(missing)}, so it is not a secure connect bundle; fix --astra-bundle "
              f"(ASTRA_DB_SECURE_BUNDLE_PATH).")


def stale_tables(cluster, keyspace: str, run_id: str, include_old: bool,
                 now: datetime.datetime | None = None) -> list[str]:
    """Tables in ``keyspace`` marked by this plugin for another run whose process, on this host, is
    gone (a killed run); with ``include_old`` also those older than STALE_AFTER (crashed anywhere)."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    cluster.refresh_keyspace_metadata(keyspace)
    found = []
    for name, table in cluster.metadata.keyspaces[keyspace].tables.items():
        mark = parse_mark(table.options.get("comment"))
        if mark is None or mark["run"] == run_id:
            continue
        owner = mark_owner(mark)
        if owner is not None and owner.is_provably_gone():
            found.append(name)
        elif include_old and is_stale(mark, now) and (owner is None or not owner.is_alive_here()):
            found.append(name)
    return sorted(found)


# Keyspaces of Astra (and Cassandra) itself: their tables do not count against the database's limit.
SYSTEM_KEYSPACES = ("data_endpoint_auth", "datastax_sla")


def check_table_budget(cluster, run_id: str, run_tables: int, limit: int) -> None:
    """Before any test: the tables of the database (other runs' and everyone else's) plus the result
    tables this run will create (one per xdist worker) must fit Astra's limit, or the run stops now
    with one sentence instead of a raw error from the server half-way through."""
    from pytest_celery_astra.errors import DatabaseSetupError

    foreign, stale = 0, 0
    for name, keyspace in cluster.metadata.keyspaces.items():
        if name.startswith("system") or name in SYSTEM_KEYSPACES:
            continue
        for table in keyspace.tables.values():
            mark = parse_mark(table.options.get("comment"))
            if mark is not None and mark["run"] == run_id:
                continue  # this run's own, counted in run_tables
            foreign += 1
            stale += mark is not None
    if foreign + run_tables > limit:
        hint = (f"; {stale} of them were left by other runs of this plugin: drop those older than 2 hours "
                f"with --astra-drop-stale" if stale else "")
        raise DatabaseSetupError(
            f"pytest-celery-astra: this Astra DB database has {foreign} tables and this run needs {run_tables} "
            f"more (one per xdist worker), over the limit of {limit} tables per database{hint}; drop tables, "
            f"run fewer xdist workers, or set --astra-table-limit (CELERY_ASTRA_TABLE_LIMIT) if your "
            f"database allows more.")
