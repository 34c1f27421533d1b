"""Tests of the Astra stand-in itself, against one real Cassandra node.

The driver is exercised on its real cloud path (secure connect bundle →
metadata service → SNI proxy → Cassandra with PasswordAuthenticator); the
negative cases check that each gate refuses what Astra would refuse.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest
from cassandra import AuthenticationFailed, ConsistencyLevel, DriverException, Unauthorized
from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster, NoHostAvailable, Session
from cassandra.connection import SniEndPoint
from cassandra.query import SimpleStatement
from cryptography import x509

from pytest_celery_astra.containers.cql_probe import read_exactly
from tests.astra_standin import (
    AstraStandIn,
    CassandraNode,
    cassandra_container,
    client_context,
    copy_bundle_without,
    generate_astra_token,
    is_astra_token,
    read_config,
    write_corrupt_zip,
)
from tests.astra_standin.cql_frames import FRAME_HEADER, decode_string_multimap
from tests.astra_standin.pki import CertificateAuthority, IssuedCertificate

KEYSPACE = "astra_ks"


@pytest.fixture(scope="module")
def cassandra_node() -> Iterator[CassandraNode]:
    with cassandra_container() as node:
        yield node


@pytest.fixture(scope="module")
def astra(cassandra_node: CassandraNode, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AstraStandIn]:
    workdir = tmp_path_factory.mktemp("astra")
    with AstraStandIn(cassandra_node.host, cassandra_node.port, keyspace=KEYSPACE, workdir=workdir) as standin:
        yield standin


@pytest.fixture(scope="module")
def session(astra: AstraStandIn) -> Iterator[Session]:
    # Spelled out as users write it, rather than astra.new_cluster().
    cluster = Cluster(
        cloud={"secure_connect_bundle": astra.bundle_path},
        auth_provider=PlainTextAuthProvider("token", astra.token),
    )
    try:
        yield cluster.connect()
    finally:
        cluster.shutdown()


# -- helpers -------------------------------------------------------------------


def _proxy_endpoint(astra: AstraStandIn) -> tuple[str, int]:
    host, port = astra.sni_proxy_address.rsplit(":", 1)
    return host, int(port)


def _tls_to_proxy(astra: AstraStandIn, server_name: str, identity: Optional[IssuedCertificate]) -> ssl.SSLSocket:
    context = client_context(astra.ca_pem, identity)
    raw = socket.create_connection(_proxy_endpoint(astra), timeout=10)
    try:
        return context.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise




def _cql_options(sock: ssl.SSLSocket) -> dict[str, list[str]]:
    """Send a protocol v4 OPTIONS and decode the SUPPORTED answer."""
    sock.sendall(FRAME_HEADER.pack(0x04, 0, 1, 0x05, 0))
    header = read_exactly(sock, FRAME_HEADER.size)
    version, _flags, stream, opcode, length = FRAME_HEADER.unpack(header)
    assert (version, stream, opcode) == (0x84, 1, 0x06)
    return decode_string_multimap(read_exactly(sock, length))


def _is_refused(sock: ssl.SSLSocket) -> bool:
    """True if the peer ends the connection instead of answering a CQL request."""
    try:
        sock.sendall(FRAME_HEADER.pack(0x04, 0, 1, 0x05, 0))
        return sock.recv(1) == b""
    except (ssl.SSLError, ConnectionError):
        return True


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# -- the bundle -------------------------------------------------------------------


def test_bundle_has_astra_layout_and_config(astra: AstraStandIn, session: Session) -> None:
    with zipfile.ZipFile(astra.bundle_path) as bundle:
        assert {"config.json", "ca.crt", "cert", "key", "cert.pfx", "cqlshrc"} <= set(bundle.namelist())
        ca = x509.load_pem_x509_certificate(bundle.read("ca.crt"))
        client = x509.load_pem_x509_certificate(bundle.read("cert"))
    client.verify_directly_issued_by(ca)

    config = read_config(astra.bundle_path)
    local = session.execute("SELECT data_center FROM system.local").one()
    assert config["host"] == "127.0.0.1"
    assert f"https://{config['host']}:{config['port']}/metadata" == astra.metadata_url
    assert config["keyspace"] == KEYSPACE
    assert config["localDC"] == local.data_center
    assert config["cql_port"] == _proxy_endpoint(astra)[1]


def test_token_has_astra_shape() -> None:
    token = generate_astra_token()
    assert is_astra_token(token)
    assert token != generate_astra_token()


def test_repr_masks_the_token(astra: AstraStandIn) -> None:
    text = repr(astra)
    assert astra.token not in text
    assert astra.token.split(":")[2] not in text
    assert "AstraCS:***" in text and KEYSPACE in text


def test_driver_rejects_a_corrupt_bundle(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="Unable to open the zip file"):
        Cluster(cloud={"secure_connect_bundle": write_corrupt_zip(tmp_path / "corrupt.zip")})


def test_driver_rejects_a_bundle_without_config(astra: AstraStandIn, tmp_path: Path) -> None:
    incomplete = copy_bundle_without(astra.bundle_path, tmp_path / "no-config.zip", "config.json")
    # The driver does not wrap this one: a bare FileNotFoundError for config.json.
    with pytest.raises(FileNotFoundError, match="config.json"):
        Cluster(cloud={"secure_connect_bundle": incomplete})


# -- the metadata service ---------------------------------------------------------


def test_metadata_service_returns_contact_info(astra: AstraStandIn, session: Session) -> None:
    context = client_context(astra.ca_pem, astra.client_identity)
    with urllib.request.urlopen(astra.metadata_url, context=context, timeout=5) as response:
        assert response.status == 200
        document = json.loads(response.read())
    local = session.execute("SELECT host_id, data_center FROM system.local").one()
    contact_info = document["contact_info"]
    assert contact_info["local_dc"] == local.data_center
    assert contact_info["contact_points"] == [str(local.host_id)]
    assert contact_info["sni_proxy_address"] == astra.sni_proxy_address


def test_metadata_service_rejects_a_client_without_certificate(astra: AstraStandIn) -> None:
    context = client_context(astra.ca_pem)  # trusts the server, presents nothing
    with pytest.raises((urllib.error.URLError, ssl.SSLError, ConnectionError)):
        urllib.request.urlopen(astra.metadata_url, context=context, timeout=5).read()


def test_foreign_client_certificate_fails_at_metadata_fetch(astra: AstraStandIn, tmp_path: Path) -> None:
    bad_bundle = astra.make_bundle_with_foreign_client_cert(tmp_path / "foreign.zip")
    with pytest.raises(DriverException, match="Unable to connect to the metadata service"):
        Cluster(
            cloud={"secure_connect_bundle": bad_bundle},
            auth_provider=PlainTextAuthProvider("token", astra.token),
        )


# -- the driver's cloud path -----------------------------------------------------


def test_driver_connects_through_the_sni_proxy(astra: AstraStandIn, session: Session) -> None:
    row = session.execute("SELECT host_id, release_version FROM system.local").one()
    assert row.release_version
    proxy_host, proxy_port = _proxy_endpoint(astra)
    hosts = session.cluster.metadata.all_hosts()
    assert [host.endpoint for host in hosts] == [SniEndPoint(proxy_host, str(row.host_id), proxy_port)]
    # The proxy says PRODUCT_TYPE=DATASTAX_APOLLO, as Astra does, so the
    # driver treats this as Astra and defaults to LOCAL_QUORUM.
    assert session.cluster.metadata.dbaas is True
    assert session.default_consistency_level == ConsistencyLevel.LOCAL_QUORUM


def test_token_can_create_and_use_a_table_at_local_quorum(session: Session) -> None:
    session.execute(f"CREATE TABLE IF NOT EXISTS {KEYSPACE}.standin_rw (id uuid PRIMARY KEY, body text)")
    key = uuid.uuid4()
    session.execute(
        SimpleStatement(
            f"INSERT INTO {KEYSPACE}.standin_rw (id, body) VALUES (%s, %s)",
            consistency_level=ConsistencyLevel.LOCAL_QUORUM,
        ),
        (key, "hello"),
    )
    row = session.execute(
        SimpleStatement(
            f"SELECT body FROM {KEYSPACE}.standin_rw WHERE id = %s", consistency_level=ConsistencyLevel.LOCAL_QUORUM
        ),
        (key,),
    ).one()
    assert row.body == "hello"
    session.execute(f"ALTER TABLE {KEYSPACE}.standin_rw ADD extra int")
    session.execute(f"DROP TABLE {KEYSPACE}.standin_rw")


def test_token_cannot_create_a_keyspace(session: Session) -> None:
    with pytest.raises(Unauthorized):
        session.execute(
            "CREATE KEYSPACE not_allowed WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        )


def test_wrong_token_fails_authentication(astra: AstraStandIn) -> None:
    cluster = Cluster(
        cloud={"secure_connect_bundle": astra.bundle_path},
        auth_provider=PlainTextAuthProvider("token", generate_astra_token()),
    )
    try:
        with pytest.raises(NoHostAvailable) as caught:
            cluster.connect()
    finally:
        cluster.shutdown()
    assert any(isinstance(error, AuthenticationFailed) for error in caught.value.errors.values())


# -- the SNI proxy -----------------------------------------------------------------


def test_proxy_refuses_an_unknown_server_name(astra: AstraStandIn) -> None:
    # The proxy fails the handshake; asyncio drops the connection without
    # flushing the "unrecognized name" alert, so the client sees an EOF.
    with pytest.raises((ssl.SSLError, ConnectionError)):
        _tls_to_proxy(astra, str(uuid.uuid4()), astra.client_identity).close()


def test_proxy_refuses_a_foreign_client_certificate(astra: AstraStandIn, session: Session) -> None:
    host_id = str(session.execute("SELECT host_id FROM system.local").one().host_id)
    foreign = CertificateAuthority("Foreign CA").issue("intruder", client=True)
    try:
        sock = _tls_to_proxy(astra, host_id, foreign)
    except (ssl.SSLError, ConnectionError):
        return  # refused during the handshake (TLS 1.2)
    with sock:
        assert _is_refused(sock)  # TLS 1.3: refused right after the client's side of the handshake


def test_proxy_serves_many_concurrent_connections(astra: AstraStandIn, session: Session) -> None:
    host_id = str(session.execute("SELECT host_id FROM system.local").one().host_id)
    baseline = astra.open_connections
    count = 48

    def open_and_ask(_: int) -> tuple[ssl.SSLSocket, dict[str, list[str]]]:
        sock = _tls_to_proxy(astra, host_id, astra.client_identity)
        return sock, _cql_options(sock)

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(open_and_ask, range(count)))
    try:
        assert all(options["PRODUCT_TYPE"] == ["DATASTAX_APOLLO"] for _, options in results)
        assert all("PROTOCOL_VERSIONS" in options for _, options in results)
        assert astra.open_connections == baseline + count  # all held open at once
    finally:
        for sock, _ in results:
            sock.close()
    assert _wait_for(lambda: astra.open_connections == baseline), astra.open_connections


def test_close_with_live_connections_leaves_no_threads_or_ports(
    astra: AstraStandIn, cassandra_node: CassandraNode, tmp_path: Path
) -> None:
    threads_before = set(threading.enumerate())
    # Same token: the role has one password, shared by every stand-in on the node.
    second = AstraStandIn(
        cassandra_node.host, cassandra_node.port, keyspace=KEYSPACE, workdir=tmp_path, token=astra.token
    ).start()
    cluster = second.new_cluster()
    try:
        cluster.connect().execute("SELECT release_version FROM system.local")
        assert second.open_connections > 0
        loop_thread = second.loop_thread
        proxy = _proxy_endpoint(second)
        metadata_port = int(second.metadata_url.rsplit(":", 1)[1].split("/")[0])
        second.close()
        second.close()  # idempotent
    finally:
        cluster.shutdown()
        second.close()
    assert loop_thread is not None and not loop_thread.is_alive()
    assert "stopped" in repr(second)
    for port in (proxy[1], metadata_port):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
    leftover = [t for t in set(threading.enumerate()) - threads_before if t.name.startswith("astra-standin")]
    assert leftover == []
