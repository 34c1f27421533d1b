"""A throw-away certificate authority for the Astra stand-in.

Astra signs everything in a secure connect bundle with one per-database CA:
the client certificate the driver presents, and the server certificates of the
metadata service and of the SNI proxy. This module produces the same shape of
PKI with the ``cryptography`` package, in memory, as PEM bytes.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from typing import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Astra's bundles carry RSA keys; 2048 bits keeps generation ~30 ms per key.
_KEY_SIZE = 2048
# Back-date certificates so a clock that is a little behind still accepts them.
_BACKDATE = datetime.timedelta(days=1)
_VALIDITY = datetime.timedelta(days=30)


@dataclass(frozen=True)
class IssuedCertificate:
    """A certificate and its private key, both PEM-encoded."""

    cert_pem: bytes
    key_pem: bytes


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=_KEY_SIZE)


def _key_pem(key: rsa.RSAPrivateKey) -> bytes:
    # Unencrypted PKCS#8: the driver loads `key` with no password.
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pytest-celery-astra stand-in"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


class CertificateAuthority:
    """A self-signed CA that issues server and client certificates."""

    def __init__(self, common_name: str = "Astra stand-in CA") -> None:
        self._key = _new_key()
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = _name(common_name)
        self._cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self._key.public_key()), critical=False)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate (what a bundle ships as ``ca.crt``)."""
        return self._cert.public_bytes(serialization.Encoding.PEM)

    def issue(
        self,
        common_name: str,
        *,
        server: bool = False,
        client: bool = False,
        dns_names: Iterable[str] = (),
        ip_addresses: Iterable[str] = (),
    ) -> IssuedCertificate:
        """Issue a leaf certificate for TLS server and/or client authentication."""
        if not (server or client):
            raise ValueError("a certificate must be good for server or client auth (or both)")
        key = _new_key()
        now = datetime.datetime.now(datetime.timezone.utc)
        usages = ([ExtendedKeyUsageOID.SERVER_AUTH] if server else []) + (
            [ExtendedKeyUsageOID.CLIENT_AUTH] if client else []
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
        )
        alt_names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
        alt_names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
        if alt_names:
            builder = builder.add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return IssuedCertificate(cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))

    def pkcs12(self, issued: IssuedCertificate, password: bytes) -> bytes:
        """Package a client identity as PKCS#12, like the bundle's ``cert.pfx``."""
        from cryptography.hazmat.primitives.serialization import pkcs12

        key = serialization.load_pem_private_key(issued.key_pem, password=None)
        cert = x509.load_pem_x509_certificate(issued.cert_pem)
        return pkcs12.serialize_key_and_certificates(
            b"astra-client",
            key,  # type: ignore[arg-type]  # always RSA here
            cert,
            [self._cert],
            serialization.BestAvailableEncryption(password),
        )
