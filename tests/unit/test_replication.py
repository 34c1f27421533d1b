"""The test keyspace's replication: the setting, auto for a cluster, what is refused. No services."""

import pytest

from pytest_celery_astra.cassandra.replication import Replication, parse, resolve, unavailable_sentence
from pytest_celery_astra.settings import resolve_settings


@pytest.mark.parametrize("text, parsed", [
    ("auto", "auto"), ("3", "3"), (" 1 ", "1"), ("dc1:3", "dc1:3"), ("dc1:3, dc2:2", "dc1:3,dc2:2"),
    ("datacenter1:1", "datacenter1:1")])
def test_accepted_values(text, parsed):
    assert parse(text) == parsed


@pytest.mark.parametrize("text", ["0", "three", "dc1", "dc1:0", "dc1:3,dc1:2", ":3", "dc1:x", "-1", "dc'1:3", ""])
def test_refused_values_name_the_setting_and_the_forms(text):
    with pytest.raises(pytest.UsageError) as raised:
        resolve_settings({"replication": text}, {}, {})
    message = str(raised.value)
    assert "--celery-astra-replication" in message and "CELERY_ASTRA_REPLICATION" in message
    assert "dc1:3,dc2:2" in message or "at least 1" in message


def test_default_is_auto_from_every_door():
    settings = resolve_settings({}, {"CELERY_ASTRA_REPLICATION": "2"}, {"replication": "3"})
    assert (settings.replication, settings.sources["replication"]) == ("2", "env CELERY_ASTRA_REPLICATION")
    assert resolve_settings({}, {}, {}).replication == "auto"


def test_auto_is_one_replica_on_a_container_of_this_run():
    replication = resolve("auto", "default", own_container=True, host_data_centers=["datacenter1"])
    assert replication.cql() == "{'class': 'SimpleStrategy', 'replication_factor': 1}"


@pytest.mark.parametrize("nodes, expected", [
    (["datacenter1"], "{'class': 'NetworkTopologyStrategy', 'datacenter1': 1}"),
    (["datacenter1"] * 2, "{'class': 'NetworkTopologyStrategy', 'datacenter1': 2}"),
    (["datacenter1"] * 3, "{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}"),
    (["datacenter1"] * 6, "{'class': 'NetworkTopologyStrategy', 'datacenter1': 3}"),
    (["east"] * 4 + ["west"] * 2, "{'class': 'NetworkTopologyStrategy', 'east': 3, 'west': 2}"),
])
def test_auto_on_an_existing_cluster_is_min_3_nodes_per_data_center(nodes, expected):
    replication = resolve("auto", "default", own_container=False, host_data_centers=nodes)
    assert replication.cql() == expected
    assert "auto" in replication.describe()


def test_explicit_factor_and_data_centers():
    assert resolve("2", "option --celery-astra-replication", False, ["dc"] * 3).cql() == \
        "{'class': 'SimpleStrategy', 'replication_factor': 2}"
    replication = resolve("east:3,west:1", "ini celery_astra_replication", False, ["east"] * 3 + ["west"])
    assert replication.cql() == "{'class': 'NetworkTopologyStrategy', 'east': 3, 'west': 1}"
    assert replication.lowest_factor == 1


def test_more_replicas_than_nodes_is_refused_in_one_sentence():
    with pytest.raises(ValueError) as raised:
        resolve("3", "option --celery-astra-replication", own_container=True, host_data_centers=["datacenter1"])
    message = str(raised.value)
    assert message.count(".") <= 2 and "\n" not in message
    assert "replication factor 3" in message and "1 node," in message and "--celery-astra-replication" in message


def test_unknown_or_small_data_center_is_refused():
    with pytest.raises(ValueError, match="data center 'dc9' .* not in the cluster, whose data centers are east"):
        resolve("dc9:1", "default", False, ["east"])
    with pytest.raises(ValueError, match="3 replicas in data center 'west' .* more than its 1 node"):
        resolve("east:1,west:3", "default", False, ["east", "west"])


def test_unavailable_sentence_names_the_factor_and_the_setting():
    error = Exception("Error from server: code=1000 [Unavailable exception] message=\"Cannot achieve consistency "
                      "level QUORUM\" info={'consistency': 'QUORUM', 'required_replicas': 1, 'alive_replicas': 0}")
    one = unavailable_sentence("ks_master", Replication(1, source="option --celery-astra-replication"), error)
    assert "replication factor 1" in one and "--celery-astra-replication" in one and "ks_master" in one
    assert "\n" not in one
    three = unavailable_sentence("ks_master", Replication(data_centers=(("dc1", 3),), source="auto"), error)
    assert "more than one node is down" in three


def test_a_no_host_available_without_a_per_host_dict_is_not_an_unavailable_and_not_a_crash():
    """The driver also raises NoHostAvailable(message, "a plain message"): explaining a failure must not turn it
    into an INTERNALERROR of pytest (seen on driver 3.28 in a worker process test)."""
    from cassandra import ConsistencyLevel, Unavailable
    from cassandra.cluster import NoHostAvailable

    from pytest_celery_astra.cassandra.replication import unavailable_cause

    assert unavailable_cause(NoHostAvailable("Unable to connect to any servers", "no host")) is None
    unavailable = Unavailable("too few", consistency=ConsistencyLevel.QUORUM, required_replicas=2, alive_replicas=1)
    assert unavailable_cause(NoHostAvailable("x", {"10.0.0.1": unavailable})) is unavailable
