"""Test certificates made with the openssl CLI: a CA, a server certificate for
localhost / 127.0.0.1 and client certificates signed by the CA.

    pki = make_pki(tmp_path)            # Pki(dir, ca, server_cert, server_key)
    cert, key = pki.client("alice")     # a client certificate with CN=alice

Every file is PEM. Keys are EC P-256 (fast to make and to handshake with).
The server certificate carries subjectAltName DNS:localhost and IP:127.0.0.1,
so clients that check the name (rustls, Node, Chromium, paho with
tls_insecure_set(False)) accept it for either.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

OPENSSL = shutil.which("openssl") or "/usr/bin/openssl"
DAYS = "3"


def _openssl(*args: str, cwd: Path) -> None:
    p = subprocess.run([OPENSSL, *args], cwd=cwd, capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed ({p.returncode}):\n{p.stderr}")


def _key(path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path), cwd=path.parent)


def _sign(d: Path, name: str, subject: str, extensions: str) -> tuple[Path, Path]:
    """A key and a certificate for `subject`, signed by the CA in `d`."""
    key, csr, cert, ext = (d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem",
                           d / f"{name}.ext")
    _key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", subject, "-out", str(csr), cwd=d)
    ext.write_text(extensions)
    _openssl("x509", "-req", "-in", str(csr), "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", DAYS, "-sha256", "-extfile", str(ext),
             "-out", str(cert), cwd=d)
    return cert, key


@dataclass
class Pki:
    dir: Path
    ca: Path            # the CA certificate (clients trust it; cacertfile)
    server_cert: Path   # CN=localhost, SAN localhost and 127.0.0.1
    server_key: Path

    def client(self, cn: str) -> tuple[Path, Path]:
        """(certificate, key) of a client certificate with CN=cn, signed by the CA."""
        return _sign(self.dir, f"client-{cn}", f"/CN={cn}",
                     "basicConstraints=critical,CA:FALSE\n"
                     "keyUsage=critical,digitalSignature\n"
                     "extendedKeyUsage=clientAuth\n")


def make_pki(directory: Path) -> Pki:
    d = Path(directory).resolve() / "pki"
    d.mkdir(parents=True, exist_ok=True)
    _key(d / "ca.key")
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=ringmq test CA",
             "-days", DAYS, "-sha256",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-out", "ca.pem", cwd=d)
    cert, key = _sign(d, "server", "/CN=localhost",
                      "basicConstraints=critical,CA:FALSE\n"
                      "keyUsage=critical,digitalSignature\n"
                      "extendedKeyUsage=serverAuth\n"
                      "subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    return Pki(dir=d, ca=d / "ca.pem", server_cert=cert, server_key=key)
