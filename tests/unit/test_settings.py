"""Settings: three doors, precedence, sources, clear errors, secrets masked. No services."""

import pytest

from pytest_celery_astra.settings import SETTINGS, resolve_settings


def resolve(cli=None, env=None, ini=None):
    return resolve_settings(cli or {}, env or {}, ini or {})


def test_defaults_and_their_source():
    settings = resolve()
    assert settings.broker == "auto"
    assert settings.worker_pool == "solo"
    assert settings.cleanup is True
    assert settings.sources["broker"] == "default"


def test_cli_beats_env_beats_ini():
    settings = resolve(cli={"keyspace": "from_cli"}, env={"CELERY_ASTRA_KEYSPACE": "from_env"},
                       ini={"keyspace": "from_ini"})
    assert settings.keyspace == "from_cli"
    assert settings.sources["keyspace"] == "option --celery-astra-keyspace"
    settings = resolve(env={"CELERY_ASTRA_KEYSPACE": "from_env"}, ini={"keyspace": "from_ini"})
    assert (settings.keyspace, settings.sources["keyspace"]) == ("from_env", "env CELERY_ASTRA_KEYSPACE")
    settings = resolve(ini={"keyspace": "from_ini"})
    assert (settings.keyspace, settings.sources["keyspace"]) == ("from_ini", "ini celery_astra_keyspace")


def test_false_and_empty_values_still_override():
    # `is not None`, not truthiness: "false" from env must beat a "true" in ini.
    settings = resolve(env={"CELERY_ASTRA_CLEANUP": "false"}, ini={"cleanup": "true"})
    assert settings.cleanup is False
    settings = resolve(env={"CELERY_ASTRA_QUEUES": ""}, ini={"queues": "a,b"})
    assert settings.queues == ()


def test_astra_names_astra_users_know():
    settings = resolve(env={"ASTRA_DB_SECURE_BUNDLE_PATH": "/b.zip", "ASTRA_DB_KEYSPACE": "ks",
                            "ASTRA_DB_APPLICATION_TOKEN": "AstraCS:abc"})
    assert settings.astra_bundle == "/b.zip"
    assert settings.astra_keyspace == "ks"
    assert str(settings.astra_token) == "AstraCS:abc"


@pytest.mark.parametrize("name, value, needle", [
    ("broker", "rabbit", "expected one of auto, container, url, memory"),
    ("worker_pool", "prefork", "expected one of solo, threads"),
    ("read_consistency", "quorum", "expected one of"),
    ("startup_timeout", "-1", "above 0"),
    ("cassandra_port", "70000", "between 1 and 65535"),
    ("keyspace", "bad-name", "CQL name"),
    ("app", "tasks", "module:attribute"),
    ("cleanup", "maybe", "true or false"),
])
def test_bad_value_names_the_setting_and_its_doors(name, value, needle):
    with pytest.raises(pytest.UsageError) as raised:
        resolve(cli={name: value})
    message = str(raised.value)
    assert needle in message
    assert f"--celery-astra-{name.replace('_', '-')}" in message
    assert f"CELERY_ASTRA_{name.upper()}" in message


def test_secret_values_are_masked_in_repr_and_errors():
    settings = resolve(env={"ASTRA_DB_APPLICATION_TOKEN": "AstraCS:supersecret",
                            "CELERY_ASTRA_CASSANDRA_PASSWORD": "hunter2"})
    assert "supersecret" not in repr(settings)
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in repr(settings.values)
    assert str(settings.cassandra_password) == "hunter2"  # drivers still get the real value


def test_every_setting_has_three_doors_and_help():
    for setting in SETTINGS:
        assert setting.cli_option.startswith("--")
        assert setting.env_var.isupper()
        assert setting.ini_key.islower()
        assert setting.help.endswith(".")
    assert len({s.env_var for s in SETTINGS}) == len(SETTINGS)


def test_the_docs_settings_table_names_every_setting_as_it_is_spelled():
    """Each setting has a row; its CLI option, ini key and env var are written in that row."""
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "docs" / "settings.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in readme.splitlines() if line.startswith("| ")}
    missing = [f"{setting.name}: {door}" for setting in SETTINGS
               for door in (setting.cli_option, setting.ini_key, setting.env_var)
               if f"`{door}`" not in rows.get(setting.name, "")]
    assert missing == []


def test_the_typed_settings_have_one_attribute_per_setting_and_its_defaults_fit_their_types():
    """Settings is typed by hand, one attribute per SETTINGS row: this holds the two together (the
    annotations are read as text: Python 3.9 cannot evaluate ``str | None``)."""
    import dataclasses

    from pytest_celery_astra.masking import Secret
    from pytest_celery_astra.settings import Settings

    fields = {field.name: field.type for field in dataclasses.fields(Settings)}
    assert [name for name in fields if name not in ("sources", "deferred_problem")] == [s.name for s in SETTINGS]
    kinds = {"str": str, "int": int, "float": float, "bool": bool, "tuple[str, ...]": tuple, "Secret": Secret,
             "None": type(None)}
    defaults = resolve_settings({}, {}, {})
    for setting in SETTINGS:
        allowed = tuple(kinds[part.strip()] for part in str(fields[setting.name]).split("|"))
        value = getattr(defaults, setting.name)
        assert isinstance(value, allowed), (setting.name, value, fields[setting.name])
        assert (setting.secret and value is not None) <= isinstance(value, Secret)
