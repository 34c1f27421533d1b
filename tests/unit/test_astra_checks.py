"""--astra refuses bad settings before any test runs, naming what to fix. No services."""

import datetime
import zipfile

import pytest

from pytest_celery_astra.astra.preflight import check_astra_settings
from pytest_celery_astra.cassandra.marks import parse_mark, result_table_ddl, table_mark
from pytest_celery_astra.settings import resolve_settings


@pytest.fixture
def bundle(tmp_path):
    path = tmp_path / "secure-connect-db.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for name in ("config.json", "ca.crt", "cert", "key"):
            archive.writestr(name, "x")
    return str(path)


def astra(**env):
    return resolve_settings({"astra": "true"}, env, {})


def test_valid_settings_pass(bundle):
    check_astra_settings(astra(ASTRA_DB_SECURE_BUNDLE_PATH=bundle, ASTRA_DB_APPLICATION_TOKEN="AstraCS:a:b",
                               ASTRA_DB_KEYSPACE="ks"))


@pytest.mark.parametrize("env, needle", [
    ({}, "ASTRA_DB_SECURE_BUNDLE_PATH"),
    ({"ASTRA_DB_SECURE_BUNDLE_PATH": "/nope.zip"}, "does not exist"),
])
def test_missing_bundle(env, needle):
    with pytest.raises(pytest.UsageError, match=needle):
        check_astra_settings(astra(**env))


def test_corrupt_bundle(tmp_path):
    path = tmp_path / "bundle.zip"
    path.write_bytes(b"not a zip")
    with pytest.raises(pytest.UsageError, match="not a zip file"):
        check_astra_settings(astra(ASTRA_DB_SECURE_BUNDLE_PATH=str(path)))


def test_bundle_without_certificates(tmp_path):
    path = tmp_path / "bundle.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", "{}")
    with pytest.raises(pytest.UsageError, match="lacks ca.crt, cert, key"):
        check_astra_settings(astra(ASTRA_DB_SECURE_BUNDLE_PATH=str(path)))


@pytest.mark.parametrize("env, needle", [
    ({}, "no credentials"),
    ({"ASTRA_DB_APPLICATION_TOKEN": "secret-but-not-astra"}, "AstraCS:"),
    ({"ASTRA_DB_CLIENT_ID": "id"}, "client secret"),
    ({"ASTRA_DB_APPLICATION_TOKEN": "AstraCS:a:b"}, "ASTRA_DB_KEYSPACE"),
    ({"ASTRA_DB_APPLICATION_TOKEN": "AstraCS:a:b", "ASTRA_DB_KEYSPACE": "ks",
      "CELERY_ASTRA_WRITE_CONSISTENCY": "ONE"}, "refuses writes at ONE"),
])
def test_credentials_keyspace_and_consistency(bundle, env, needle):
    with pytest.raises(pytest.UsageError, match=needle) as raised:
        check_astra_settings(astra(ASTRA_DB_SECURE_BUNDLE_PATH=bundle, **env))
    assert "secret-but-not-astra" not in str(raised.value)


def test_marks_round_trip_and_foreign_comments_are_not_marks():
    mark = parse_mark(table_mark("run1", "gw0"))
    assert mark["run"] == "run1" and mark["worker"] == "gw0"
    datetime.datetime.strptime(mark["created"], "%Y-%m-%dT%H:%M:%SZ")
    assert parse_mark("") is None
    assert parse_mark("my own table") is None
    assert parse_mark("pytest-celery-astra but no fields") is None


def test_result_table_ddl_is_celerys_schema_with_the_mark():
    from celery.backends.cassandra import Q_CREATE_RESULT_TABLE

    ddl = result_table_ddl("ks", "results", "pytest-celery-astra run=r worker=w created=c")
    assert ddl.startswith(Q_CREATE_RESULT_TABLE.format(table="ks.results").strip().rstrip(";"))
    assert ddl.endswith("comment = 'pytest-celery-astra run=r worker=w created=c'")
