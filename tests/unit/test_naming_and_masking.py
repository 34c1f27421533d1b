"""Names carry the worker id; secrets are masked. No services."""

import pytest

from pytest_celery_astra.masking import Secret, mask_text, mask_url
from pytest_celery_astra.naming import astra_table_name, keyspace_name, redis_db_number, vhost_name


def test_names_per_worker_are_distinct_and_valid_cql():
    names = {keyspace_name("celery_astra", w) for w in ("master", "gw0", "gw1", "gw10")}
    assert len(names) == 4
    assert all(n.replace("_", "").isalnum() for n in names)
    assert vhost_name("gw0") != vhost_name("gw1")


def test_astra_table_names_fit_cassandra_and_carry_run_and_worker():
    name = astra_table_name("celery_results", "0123456789", "gw12")
    assert len(name) <= 48
    assert "0123456789" in name and name.endswith("gw12")


def test_redis_database_per_worker_and_limit():
    assert redis_db_number("master") == 0
    assert redis_db_number("gw0") == 1
    with pytest.raises(pytest.UsageError, match="16"):
        redis_db_number("gw15")


def test_secret_repr_is_masked_but_value_is_real():
    secret = Secret("AstraCS:abc:def")
    assert repr(secret) == "'***'"
    assert repr({"password": secret}) == "{'password': '***'}"
    assert "%s" % secret == "AstraCS:abc:def"
    assert secret.encode() == b"AstraCS:abc:def"


def test_url_and_text_masking():
    assert mask_url("amqp://guest:pw@host:5672/vh") == "amqp://guest:***@host:5672/vh"
    assert mask_url("memory://localhost/") == "memory://localhost/"
    assert mask_text("token AstraCS:x:y failed", ["AstraCS:x:y"]) == "token *** failed"
