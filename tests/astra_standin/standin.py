"""AstraStandIn: Astra DB's front door, locally, in front of a real Cassandra node.

Assembles the pieces: provisions the node (keyspace, role ``token``), creates
a PKI, starts the SNI proxy and the metadata service on one background event
loop, and writes a secure connect bundle pointing at them. With it,
cassandra-driver's real cloud path works unchanged::

    Cluster(cloud={"secure_connect_bundle": astra.bundle_path},
            auth_provider=PlainTextAuthProvider("token", astra.token))
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
from typing import Any, Optional

from cassandra.auth import PlainTextAuthProvider
from cassandra.cluster import Cluster

from .bundle import BundleSpec, write_bundle
from .cassandra_node import (
    SUPERUSER_NAME,
    SUPERUSER_PASSWORD,
    NodeIdentity,
    connect_superuser,
    read_node_identity,
    wait_for_login,
)
from .event_loop import BackgroundLoop
from .metadata_service import MetadataService, metadata_document
from .pki import CertificateAuthority, IssuedCertificate
from .provisioning import provision_keyspace_and_token, validate_keyspace
from .sni_proxy import SniProxy
from .tls import mutual_tls_server_context
from .tokens import TOKEN_USERNAME, generate_astra_token, mask_token

BUNDLE_FILENAME = "secure-connect-astra-standin.zip"
_LISTEN_HOST = "127.0.0.1"
_SERVER_NAMES = ("localhost",)


class AstraStandIn:
    """A local Astra DB front door (bundle + metadata service + SNI proxy).

    Use as a context manager, or call :meth:`start` and :meth:`close`.
    One stand-in per Cassandra node at a time, unless they share ``token``:
    the role ``token`` has one password, and each stand-in sets it.
    """

    username = TOKEN_USERNAME

    def __init__(
        self,
        cassandra_host: str,
        cassandra_port: int,
        *,
        workdir: str | os.PathLike[str],
        keyspace: str = "astra_ks",
        token: Optional[str] = None,
        superuser: tuple[str, str] = (SUPERUSER_NAME, SUPERUSER_PASSWORD),
        connect_timeout: float = 60.0,
    ) -> None:
        self.cassandra_host = cassandra_host
        self.cassandra_port = int(cassandra_port)
        self.workdir = os.path.abspath(workdir)
        self.keyspace = validate_keyspace(keyspace)
        self.token = token or generate_astra_token()
        self._superuser = superuser
        self._connect_timeout = connect_timeout
        self.bundle_path: str = ""
        self.node: Optional[NodeIdentity] = None
        self._ca: Optional[CertificateAuthority] = None
        self._client: Optional[IssuedCertificate] = None
        self._pfx_password = secrets.token_urlsafe(12)
        self._loop: Optional[BackgroundLoop] = None
        self._proxy: Optional[SniProxy] = None
        self._metadata: Optional[MetadataService] = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> "AstraStandIn":
        """Provision the node, start both services and write the bundle."""
        if self._loop is not None:
            raise RuntimeError("AstraStandIn already started")
        try:
            self.node = self._provision()
            self._start_services(self.node)
            self.bundle_path = self._write_bundle(os.path.join(self.workdir, BUNDLE_FILENAME), self._client_identity)
        except BaseException:
            self.close()
            raise
        return self

    def _provision(self) -> NodeIdentity:
        username, password = self._superuser
        cluster, session = connect_superuser(
            self.cassandra_host, self.cassandra_port, username=username, password=password, timeout=self._connect_timeout
        )
        try:
            node = read_node_identity(session)
            provision_keyspace_and_token(session, self.keyspace, self.token)
        finally:
            cluster.shutdown()
        # The node caches credentials (credentials_validity, 2 s by default):
        # right after the password of an existing role changes, the new token
        # is refused for a moment. Started means the token logs in.
        wait_for_login(self.cassandra_host, self.cassandra_port, self.username, self.token, self._connect_timeout)
        return node

    def _start_services(self, node: NodeIdentity) -> None:
        self._ca = CertificateAuthority()
        self._client = self._ca.issue("astra-standin-client", client=True)
        # The driver does not check hostnames against these certificates (its
        # bundle context leaves check_hostname off), but give them true names
        # anyway, as Astra's do, so stricter clients work too.
        proxy_cert = self._ca.issue(
            "astra-standin-sni-proxy",
            server=True,
            dns_names=(*_SERVER_NAMES, node.host_id),
            ip_addresses=(_LISTEN_HOST,),
        )
        metadata_cert = self._ca.issue(
            "astra-standin-metadata", server=True, dns_names=_SERVER_NAMES, ip_addresses=(_LISTEN_HOST,)
        )
        self._loop = BackgroundLoop()
        self._proxy = SniProxy(
            self._loop,
            mutual_tls_server_context(self._ca.cert_pem, proxy_cert),
            routes={node.host_id: (self.cassandra_host, self.cassandra_port)},
            host=_LISTEN_HOST,
        )
        self._proxy.start()
        self._metadata = MetadataService(
            self._loop,
            mutual_tls_server_context(self._ca.cert_pem, metadata_cert),
            metadata_document(node.data_center, [node.host_id], self._proxy.address),
            host=_LISTEN_HOST,
        )
        self._metadata.start()

    @property
    def _client_identity(self) -> IssuedCertificate:
        if self._client is None:
            raise RuntimeError("AstraStandIn not started")
        return self._client

    def close(self) -> None:
        """Stop both services and the loop thread. Idempotent; leaves the node's data alone."""
        try:
            for server in (self._metadata, self._proxy):
                if server is not None:
                    server.close()
        finally:
            self._metadata = None
            self._proxy = None
            if self._loop is not None:
                self._loop.close()
                self._loop = None

    def __enter__(self) -> "AstraStandIn":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # -- bundles -----------------------------------------------------------

    def _write_bundle(self, path: str | os.PathLike[str], client: IssuedCertificate) -> str:
        if self._ca is None or self._metadata is None or self._proxy is None or self.node is None:
            raise RuntimeError("AstraStandIn not started")
        ca = self._ca
        spec = BundleSpec(
            metadata_host=self._metadata.host,
            metadata_port=self._metadata.port,
            cql_port=self._proxy.port,
            keyspace=self.keyspace,
            local_dc=self.node.data_center,
            ca_pem=ca.cert_pem,
            client=client,
            pfx=ca.pkcs12(client, self._pfx_password.encode()),
            pfx_password=self._pfx_password,
        )
        return write_bundle(path, spec)

    def make_bundle(self, path: str | os.PathLike[str]) -> str:
        """Write another valid bundle (same CA and client identity) at ``path``."""
        return self._write_bundle(path, self._client_identity)

    def make_bundle_with_foreign_client_cert(self, path: str | os.PathLike[str]) -> str:
        """Write a bundle whose client certificate is signed by a different CA.

        Everything else is right (config, the real CA to verify the servers),
        so the metadata service's client-certificate check is what refuses it.
        """
        foreign_ca = CertificateAuthority("Foreign CA (not Astra's)")
        return self._write_bundle(path, foreign_ca.issue("astra-standin-client", client=True))

    # -- Astra's rules --------------------------------------------------------

    def add_client(self, rights: str = "all") -> tuple[str, str]:
        """A client id and client secret that log in (Astra's older credentials), whose role has
        ``rights`` on the keyspace: "all", or "read-write" (no CREATE or DROP). Returns (id, secret)."""
        from .provisioning import provision_client

        client_id = "client" + secrets.token_hex(8)
        secret = secrets.token_urlsafe(24).replace("-", "x").replace("_", "y")
        username, password = self._superuser
        cluster, session = connect_superuser(self.cassandra_host, self.cassandra_port, username=username,
                                             password=password, timeout=self._connect_timeout)
        try:
            provision_client(session, self.keyspace, client_id, secret, rights)
        finally:
            cluster.shutdown()
        wait_for_login(self.cassandra_host, self.cassandra_port, client_id, secret, self._connect_timeout)
        return client_id, secret

    @contextlib.contextmanager
    def hibernated(self, status: str = "503 Service Unavailable"):
        """While inside, the metadata service answers ``status``, as Astra's does for a hibernated database."""
        if self._metadata is None:
            raise RuntimeError("AstraStandIn not started")
        self._metadata.failure = status
        try:
            yield
        finally:
            if self._metadata is not None:
                self._metadata.failure = None

    # -- connecting ----------------------------------------------------------

    @property
    def cloud_config(self) -> dict[str, str]:
        """The ``cloud=`` argument for ``Cluster``."""
        return {"secure_connect_bundle": self.bundle_path}

    @property
    def auth_provider(self) -> PlainTextAuthProvider:
        """``PlainTextAuthProvider('token', <token>)``, as Astra expects."""
        return PlainTextAuthProvider(self.username, self.token)

    def new_cluster(self, **cluster_kwargs: Any) -> Cluster:
        """A driver ``Cluster`` on the cloud path (the caller shuts it down)."""
        return Cluster(cloud=self.cloud_config, auth_provider=self.auth_provider, **cluster_kwargs)

    @property
    def metadata_url(self) -> str:
        """``https://127.0.0.1:<port>/metadata``."""
        if self._metadata is None:
            raise RuntimeError("AstraStandIn not started")
        return self._metadata.url

    @property
    def sni_proxy_address(self) -> str:
        """``127.0.0.1:<port>`` of the SNI proxy."""
        if self._proxy is None:
            raise RuntimeError("AstraStandIn not started")
        return self._proxy.address

    @property
    def ca_pem(self) -> bytes:
        """The bundle's CA certificate (for tests that talk TLS themselves)."""
        if self._ca is None:
            raise RuntimeError("AstraStandIn not started")
        return self._ca.cert_pem

    @property
    def client_identity(self) -> IssuedCertificate:
        """The bundle's client certificate and key."""
        return self._client_identity

    @property
    def open_connections(self) -> int:
        """TLS connections currently open on the proxy and the metadata service."""
        return sum(server.connection_count for server in (self._proxy, self._metadata) if server is not None)

    @property
    def loop_thread(self) -> Optional[threading.Thread]:
        """The background loop's thread while running (tests check it ends on close)."""
        return self._loop.thread if self._loop is not None else None

    def __repr__(self) -> str:
        # Never the token itself: reprs end up in logs and pytest failure output.
        running = self._loop is not None
        where = ""
        if self._metadata is not None and self._proxy is not None:
            where = f" metadata={self._metadata.url} sni_proxy={self._proxy.address}"
        return (
            f"<AstraStandIn keyspace={self.keyspace!r} cassandra={self.cassandra_host}:{self.cassandra_port}"
            f"{where} username={self.username!r} token={mask_token(self.token)!r}"
            f" {'running' if running else 'stopped'}>"
        )
