"""Certificates for the TLS tests, made with the `cryptography` package: a CA,
a server certificate for 127.0.0.1/localhost, client certificates signed by
the CA, and a second CA that the broker does not trust (for a client whose
certificate must be refused). Every file is PEM, written to `dir`."""
from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Pki:
    dir: Path
    cacert: Path
    cert: Path
    key: Path

    def client(self, cn: str, trusted: bool = True) -> tuple[Path, Path]:
        """(certfile, keyfile) of a client certificate with this CN, signed by
        the broker's CA (`trusted`) or by a CA the broker does not know."""
        ca_cert, ca_key = (self._ca if trusted else self._rogue_ca)
        return _issue(self.dir, f"client-{cn}-{'t' if trusted else 'r'}", cn, ca_cert, ca_key,
                      server=False)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ringmq tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _write_key(path: Path, key) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))


def _make_ca(dir: Path, name: str):
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(_name(name)).issuer_name(_name(name))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(_now() - datetime.timedelta(days=1))
            .not_valid_after(_now() + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                         content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .sign(key, hashes.SHA256()))
    (dir / f"{name}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert, key


def _issue(dir: Path, stem: str, cn: str, ca_cert, ca_key, server: bool) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (x509.CertificateBuilder()
               .subject_name(_name(cn)).issuer_name(ca_cert.subject)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(_now() - datetime.timedelta(days=1))
               .not_valid_after(_now() + datetime.timedelta(days=30))
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                                     else ExtendedKeyUsageOID.CLIENT_AUTH]),
                              critical=False))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName([
            x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())
    cert_path, key_path = dir / f"{stem}.crt", dir / f"{stem}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    _write_key(key_path, key)
    return cert_path, key_path


def make_pki(dir: Path) -> Pki:
    dir.mkdir(parents=True, exist_ok=True)
    ca = _make_ca(dir, "cacert")
    rogue = _make_ca(dir, "rogue-ca")
    cert, key = _issue(dir, "server", "localhost", ca[0], ca[1], server=True)
    pki = Pki(dir=dir, cacert=dir / "cacert.pem", cert=cert, key=key)
    pki._ca, pki._rogue_ca = ca, rogue
    return pki


def ssl_options(pki: Pki, verify: str = "verify_none", fail_if_no_peer_cert: bool = False) -> dict:
    return {"certfile": str(pki.cert), "keyfile": str(pki.key), "cacertfile": str(pki.cacert),
            "verify": verify, "fail_if_no_peer_cert": fail_if_no_peer_cert}
