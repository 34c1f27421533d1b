"""A local stand-in for DataStax Astra DB's front door, on a real Cassandra node.

Astra is reached through a *secure connect bundle*: cassandra-driver reads it,
fetches ``contact_info`` from an HTTPS metadata service with the bundle's
client certificate, then connects through an SNI proxy, one TLS connection per
node, with the node's host id as the TLS server name, and logs in as user
``token`` with an ``AstraCS:...`` token as password. This package provides all
of that on 127.0.0.1 so tests run the driver's real cloud path offline::

    from tests.astra_standin import AstraStandIn, cassandra_container

    with cassandra_container() as node, AstraStandIn(node.host, node.port, workdir=tmp_path) as astra:
        cluster = Cluster(cloud={"secure_connect_bundle": astra.bundle_path},
                          auth_provider=PlainTextAuthProvider("token", astra.token))
"""

from .bundle import copy_bundle_without, read_config, write_corrupt_zip
from .cassandra_node import (
    ASTRA_TABLE_LIMIT,
    CassandraNode,
    NodeIdentity,
    astra_guardrails,
    cassandra_container,
    cassandra_image,
    connect_superuser,
)
from .standin import AstraStandIn
from .tls import client_context
from .tokens import TOKEN_USERNAME, generate_astra_token, is_astra_token, mask_token

__all__ = [
    "ASTRA_TABLE_LIMIT",
    "AstraStandIn",
    "CassandraNode",
    "NodeIdentity",
    "TOKEN_USERNAME",
    "astra_guardrails",
    "cassandra_container",
    "cassandra_image",
    "client_context",
    "connect_superuser",
    "copy_bundle_without",
    "generate_astra_token",
    "is_astra_token",
    "mask_token",
    "read_config",
    "write_corrupt_zip",
]
