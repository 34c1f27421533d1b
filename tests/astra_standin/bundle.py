"""Secure connect bundles in Astra's layout, plus deliberately broken ones.

cassandra-driver (``cassandra/datastax/cloud``) unzips the bundle next to the
zip file, reads ``config.json`` (``host`` and ``port`` of the metadata
service, ``keyspace``, ``localDC``) and loads ``ca.crt``, ``cert`` and ``key``
into one SSL context. The other members (``cert.pfx``, ``cqlshrc``) are what
Astra also ships, for other tools; the Java keystores (``identity.jks``,
``trustStore.jks``) are left out because nothing in Python reads them.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass
from typing import Any

from .pki import IssuedCertificate

CONFIG_MEMBER = "config.json"
CA_MEMBER = "ca.crt"
CERT_MEMBER = "cert"
KEY_MEMBER = "key"
PFX_MEMBER = "cert.pfx"
CQLSHRC_MEMBER = "cqlshrc"


@dataclass(frozen=True)
class BundleSpec:
    """Everything a bundle says about where and how to connect."""

    metadata_host: str
    metadata_port: int
    cql_port: int
    keyspace: str
    local_dc: str
    ca_pem: bytes
    client: IssuedCertificate
    pfx: bytes
    pfx_password: str


def config_json(spec: BundleSpec) -> dict[str, Any]:
    """The ``config.json`` document, with the keys Astra uses."""
    return {
        "host": spec.metadata_host,
        "port": spec.metadata_port,
        "cql_port": spec.cql_port,
        "keyspace": spec.keyspace,
        "localDC": spec.local_dc,
        "caCertLocation": f"./{CA_MEMBER}",
        "keyLocation": f"./{KEY_MEMBER}",
        "certLocation": f"./{CERT_MEMBER}",
        "pfxCertPassword": spec.pfx_password,
    }


def _cqlshrc(spec: BundleSpec) -> str:
    return (
        "[connection]\n"
        f"hostname = {spec.metadata_host}\n"
        f"port = {spec.cql_port}\n"
        "ssl = true\n\n"
        "[ssl]\n"
        "validate = true\n"
        f"certfile = ./{CA_MEMBER}\n"
        f"userkey = ./{KEY_MEMBER}\n"
        f"usercert = ./{CERT_MEMBER}\n"
    )


def write_bundle(path: str | os.PathLike[str], spec: BundleSpec) -> str:
    """Write a secure connect bundle zip and return its absolute path."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        bundle.writestr(CONFIG_MEMBER, json.dumps(config_json(spec), indent=2))
        bundle.writestr(CA_MEMBER, spec.ca_pem)
        bundle.writestr(CERT_MEMBER, spec.client.cert_pem)
        bundle.writestr(KEY_MEMBER, spec.client.key_pem)
        bundle.writestr(PFX_MEMBER, spec.pfx)
        bundle.writestr(CQLSHRC_MEMBER, _cqlshrc(spec))
    # The bundle holds a private key: keep it private like a downloaded one should be.
    os.chmod(path, 0o600)
    return path


def write_corrupt_zip(path: str | os.PathLike[str]) -> str:
    """Write a file that is not a zip archive (the driver raises ValueError)."""
    path = os.path.abspath(path)
    with open(path, "wb") as stream:
        stream.write(b"this is not a secure connect bundle\n")
    return path


def copy_bundle_without(
    bundle_path: str | os.PathLike[str], dest_path: str | os.PathLike[str], member: str
) -> str:
    """Copy a bundle, leaving out one member (e.g. ``config.json`` or ``ca.crt``)."""
    dest_path = os.path.abspath(dest_path)
    with zipfile.ZipFile(bundle_path) as source, zipfile.ZipFile(dest_path, "w") as dest:
        if member not in source.namelist():
            raise KeyError(f"{member!r} is not in the bundle")
        for info in source.infolist():
            if info.filename != member:
                dest.writestr(info, source.read(info))
    return dest_path


def read_config(bundle_path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read ``config.json`` back out of a bundle (for tests and debugging)."""
    with zipfile.ZipFile(bundle_path) as bundle:
        return json.loads(bundle.read(CONFIG_MEMBER))
