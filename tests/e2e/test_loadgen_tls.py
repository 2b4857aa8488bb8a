"""ringmq-loadgen `--tls` against the broker's TLS listener: the idle
connections and connection-rate scenario (`conn`), a p2p run without loss,
client certificates for a listener that requires them, and the refusals a
wrong CA or a missing certificate get.

Needs `target/release/ringmq-loadgen` (see test_loadgen.py). Nothing here
asserts a rate: benches/run/bench.py measures TLS handshakes per second and
bytes per idle TLS connection (docs/benchmarks.md).
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from pki import make_pki
from test_loadgen import LOADGEN_BIN, assert_no_loss, loadgen, short
from transports import start_with_transports

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("lgtls"))


@pytest.fixture
def tls_broker(broker_factory, pki):
    b, ports = start_with_transports(broker_factory, pki, ("ssl",))
    return b, ports["ssl"]


def brief(port: int, *extra: str) -> list[str]:
    """Options of a run that is expected to set up no client."""
    return ["-h", "127.0.0.1", "-p", str(port), "-d", "0.2", "--connect-timeout", "10",
            "--client-id-prefix", f"lgf{os.getpid()}", *extra]


def loadgen_failing(tmp_path, *args: str) -> tuple[int, dict, str]:
    """A run expected to set up no client: (exit code, JSON report, stderr)."""
    out = tmp_path / "failing.json"
    argv = [str(LOADGEN_BIN), *args, "--quiet", "--json", str(out)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert out.exists(), f"{' '.join(argv)} exited {p.returncode} without a report:\n{p.stderr}"
    return p.returncode, json.loads(out.read_text()), p.stderr


def test_tls_conn_holds_idle_connections(tls_broker, pki, tmp_path):
    b, port = tls_broker
    r = loadgen(tmp_path, "conn", *short(port, "-c", "40", "--connect-rate", "400"),
                "--tls", "--cafile", str(pki.cacert))
    assert r["tls"] is True
    assert r["errors_total"] == 0, r["errors"]
    assert r["clients"] == {**r["clients"], "planned": 40, "ready": 40, "failed": 0}
    # Every CONNACK came after a TLS handshake and a CONNECT.
    assert r["connack_latency_us"]["count"] == 40
    b.check_alive()


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_tls_p2p_loses_nothing(tls_broker, pki, tmp_path, qos):
    b, port = tls_broker
    r = loadgen(tmp_path, "p2p", *short(port, "-c", "4", "-q", str(qos), "-r", "2000"),
                "--tls", "--cafile", str(pki.cacert), "--tls-server-name", "localhost")
    assert r["tls"] is True
    assert_no_loss(r, copies=1)


def test_tls_big_batches_cross_the_tls_buffers(tls_broker, pki, tmp_path):
    """A closed-loop run with batches larger than rustls's 64 KiB buffers."""
    b, port = tls_broker
    r = loadgen(tmp_path, "p2p", *short(port, "-c", "2", "-q", "0", "-s", "4096", "--batch", "64",
                                        "--max-outstanding", "200"),
                "--tls", "--cafile", str(pki.cacert))
    assert_no_loss(r, copies=1)


def test_tls_untrusted_server_is_refused(tls_broker, pki, tmp_path):
    """With another CA's certificate as the trust anchor every handshake fails,
    reported as a `tls` error naming the reason."""
    b, port = tls_broker
    rogue_ca = pki.dir / "rogue-ca.pem"  # a CA that did not sign the server's certificate
    rc, r, err = loadgen_failing(tmp_path, "conn", *brief(port, "-c", "3"),
                                 "--tls", "--cafile", str(rogue_ca))
    assert rc == 1, err
    assert r["clients"]["ready"] == 0 and r["clients"]["failed"] == 3
    assert r["errors"] == {"tls": 3}, r["errors"]
    assert "certificate" in err.lower(), err
    b.check_alive()


def test_tls_client_certificate_for_verify_peer(broker_factory, pki, tmp_path):
    b, ports = start_with_transports(broker_factory, pki, ("ssl",), verify_peer=True)
    port = ports["ssl"]
    cert, key = pki.client("loadgen")
    r = loadgen(tmp_path, "p2p", *short(port, "-c", "2", "-q", "1", "-r", "500"),
                "--tls", "--cafile", str(pki.cacert), "--cert", str(cert), "--key", str(key))
    assert_no_loss(r, copies=1)
    # Without a certificate the server ends the handshake (or the connection).
    rc, r, err = loadgen_failing(tmp_path, "conn", *brief(port, "-c", "2"),
                                 "--tls", "--cafile", str(pki.cacert))
    assert rc == 1, err
    assert r["clients"]["ready"] == 0 and r["clients"]["failed"] == 2
    assert set(r["errors"]) <= {"tls", "closed_by_server", "read"}, r["errors"]


def test_tls_option_errors_name_the_option(tmp_path):
    if not LOADGEN_BIN.exists():
        pytest.fail(f"ringmq-loadgen not found at {LOADGEN_BIN}", pytrace=False)
    p = subprocess.run([str(LOADGEN_BIN), "conn", "--tls", "--cafile", str(tmp_path / "nope.pem"),
                        "-p", "9", "--quiet"], capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    assert "--cafile" in p.stderr and "nope.pem" in p.stderr, p.stderr
    p = subprocess.run([str(LOADGEN_BIN), "conn", "--cafile", "x.pem", "--quiet"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode == 2 and "--tls" in p.stderr, p.stderr
