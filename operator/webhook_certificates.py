"""A CA and a server certificate for the admission webhook, for clusters without a certificate manager.

The API server calls webhooks over HTTPS only, and checks the server's certificate against the
`caBundle` of the webhook configuration: so the CA is what goes into the configuration, and the
certificate (signed by it, naming the address the API server dials) and its key are what the
operator serves. Generated with `cryptography` (kopf's own generator needs `certbuilder`, which this
project does not ship). ECDSA P-256: quick to generate, accepted by kube-apiserver.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_FILE, CERT_FILE, KEY_FILE = "ca.crt", "tls.crt", "tls.key"  # the names `kubectl create secret tls` mounts


@dataclass(frozen=True)
class WebhookCertificate:
    ca_pem: bytes  # the webhook configuration's caBundle (base64 of this)
    cert_pem: bytes
    key_pem: bytes

    def write(self, directory: Path) -> None:
        """ca.crt, tls.crt and tls.key in `directory`; the key readable by its owner only."""
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CA_FILE).write_bytes(self.ca_pem)
        (directory / CERT_FILE).write_bytes(self.cert_pem)
        key = directory / KEY_FILE
        key.touch(mode=0o600)
        key.write_bytes(self.key_pem)


def _subject_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def issue_webhook_certificate(hosts: Sequence[str], days: int = 365) -> WebhookCertificate:
    """A fresh CA, and a server certificate it signs for `hosts` (DNS names or IP addresses: the
    host of the webhook URL, or the Service's `NAME.NAMESPACE.svc`)."""
    if not hosts:
        raise ValueError("a webhook certificate needs at least one host name or address")
    now = datetime.now(UTC)
    start, end = now - timedelta(minutes=5), now + timedelta(days=days)  # 5 min: clock skew
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("promoter admission webhook CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(signs_certificates=True), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(hosts[0]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(signs_certificates=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(_subject_names(hosts)), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return WebhookCertificate(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        cert_pem=certificate.public_bytes(serialization.Encoding.PEM),
        key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def _key_usage(*, signs_certificates: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=signs_certificates,
        crl_sign=signs_certificates,
        encipher_only=False,
        decipher_only=False,
    )
