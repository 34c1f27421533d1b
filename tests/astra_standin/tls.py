"""SSL contexts for mutual TLS against the bundle's CA.

Astra's front door authenticates the *client* by its certificate before any
CQL is spoken; both the metadata service and the SNI proxy therefore demand
a client certificate signed by the bundle's CA (``CERT_REQUIRED``).
"""

from __future__ import annotations

import os
import ssl
import tempfile
from typing import Optional

from .pki import IssuedCertificate


def _load_identity(context: ssl.SSLContext, identity: IssuedCertificate) -> None:
    # ssl can only load a certificate chain from files, so stage the PEMs in a
    # private temporary directory that is gone once the context holds them.
    with tempfile.TemporaryDirectory(prefix="astra-tls-") as tmp:
        cert_path = os.path.join(tmp, "cert.pem")
        key_path = os.path.join(tmp, "key.pem")
        with open(cert_path, "wb") as stream:
            stream.write(identity.cert_pem)
        with open(os.open(key_path, os.O_WRONLY | os.O_CREAT, 0o600), "wb") as stream:
            stream.write(identity.key_pem)
        context.load_cert_chain(cert_path, key_path)


def mutual_tls_server_context(ca_pem: bytes, server: IssuedCertificate) -> ssl.SSLContext:
    """A server context that presents ``server`` and requires a client cert from ``ca_pem``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    _load_identity(context, server)
    return context


def client_context(ca_pem: bytes, identity: Optional[IssuedCertificate] = None) -> ssl.SSLContext:
    """A client context trusting ``ca_pem``, presenting ``identity`` if given.

    Hostnames are not checked, exactly like the driver's own bundle context
    (``SSLContext(PROTOCOL_TLS)`` leaves ``check_hostname`` off).
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    if identity is not None:
        _load_identity(context, identity)
    return context
