"""ringmq-loadgen `--reconnect` (issue 14, item 7): clients the server disconnects come back, to
the Server Reference when one is given (MQTT 5) or to `--reconnect-addr` (MQTT 3.1.1, whose
evicted connection is just closed), with their client ids, and the report says how many times
each client was disconnected. Two independent brokers: A is evacuated, B takes the clients."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from test_ctl import wait_nodes_connections
from test_loadgen import LOADGEN_BIN
from test_redirection import api

pytestmark = [pytest.mark.timeout(120), pytest.mark.ringmq_only("evacuation, admin API")]


@pytest.mark.parametrize("version", [5, 4])
def test_evicted_clients_reconnect_once_each_and_are_counted(broker_factory, tmp_path, version):
    a = broker_factory()
    b = broker_factory(config={"node": {"name": "other@127.0.0.1"}})
    at_a, at_b = f"127.0.0.1:{a.listen_port}", f"127.0.0.1:{b.listen_port}"
    report = tmp_path / "conn.json"
    argv = [str(LOADGEN_BIN), "conn", "-c", "12", "-d", "60s", "-V", str(version),
            "--client-id-prefix", f"rc{os.getpid()}v{version}", "--clean-start", "false",
            "--session-expiry", "300", "--pub-addrs", at_a, "--reconnect", "--quiet",
            "--json", str(report)]
    if version == 4:
        argv += ["--reconnect-addr", at_b]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_nodes_connections(a, 12, timeout=15)
        body = {"conn_evict_rate": 20, "wait_health_check": 0, "wait_takeover": 60}
        if version == 5:
            body["redirect_to"] = at_b
        code, answer, _ = api(a, "POST", "/api/v5/load_rebalance/test@127.0.0.1/evacuation/start", body)
        assert code == 200, answer
        # Every client moves to B, once.
        wait_nodes_connections(b, 12, timeout=20)
        wait_nodes_connections(a, 0, timeout=5)
    finally:
        p.send_signal(2)  # SIGINT: the run reports what it had
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    r = json.loads(report.read_text())
    ev = r["evictions"]
    assert (ev["clients"], ev["clients_more_than_once"], ev["max_per_client"]) == (12, 0, 1), ev
    assert ev["by_count"] == {"1": 12}, ev
    assert r["redirects"]["connected_by_server"] == {at_a: 12, at_b: 12}, r["redirects"]
    assert r["errors_total"] == 0, r["errors"]


@pytest.mark.parametrize("version", [5, 4])
def test_a_refused_reconnect_is_tried_again_after_a_backoff(broker_factory, tmp_path, version):
    """The clients come back to the evacuating node itself (no Server Reference, `--reconnect-addr`
    names it): it refuses them (MQTT 5: CONNACK 0x9C, 3.1.1: return code 3) until the evacuation
    stops; they keep trying, as real clients do, and are all back once it stops. Without the
    retries each refused client would end as an error."""
    a = broker_factory()
    at_a = f"127.0.0.1:{a.listen_port}"
    report = tmp_path / "retry.json"
    argv = [str(LOADGEN_BIN), "conn", "-c", "12", "-d", "60s", "-V", str(version),
            "--client-id-prefix", f"rr{os.getpid()}v{version}", "--clean-start", "false",
            "--session-expiry", "300", "--pub-addrs", at_a, "--reconnect",
            "--reconnect-addr", at_a, "--quiet", "--json", str(report)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_nodes_connections(a, 12, timeout=15)
        body = {"conn_evict_rate": 50, "wait_health_check": 0, "wait_takeover": 60}
        code, answer, _ = api(a, "POST", "/api/v5/load_rebalance/test@127.0.0.1/evacuation/start", body)
        assert code == 200, answer
        assert wait_nodes_connections(a, 0, timeout=10)[0]["connections"] == 0
        # Refused for a while: nobody gets in.
        code, status, _ = api(a, "GET", "/api/v5/load_rebalance/status")
        assert code == 200 and status["process"] == "evacuation", status
        code, answer, _ = api(a, "POST", "/api/v5/load_rebalance/test@127.0.0.1/evacuation/stop")
        assert code == 200, answer
        assert wait_nodes_connections(a, 12, timeout=20)[0]["connections"] == 12
    finally:
        p.send_signal(2)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    r = json.loads(report.read_text())
    ev = r["evictions"]
    assert (ev["clients"], ev["max_per_client"]) == (12, 1), ev
    assert sum(ev["refused_reconnects_retried"].values()) >= 12, ev
    assert r["errors_total"] == 0, r["errors"]


class _FakeBroker:
    """A hand-made MQTT 5 server for one test: it plays a broker that disconnects a publisher
    before acknowledging what it sent, to see what the client sends on its next connection."""

    def __init__(self):
        import socket
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(4)
        self.listener.settimeout(15)
        self.port = self.listener.getsockname()[1]

    def accept(self):
        conn, _ = self.listener.accept()
        conn.settimeout(10)
        return _Conn(conn)


class _Conn:
    def __init__(self, sock):
        self.sock, self.buf = sock, b""

    def packet(self):
        """The next packet, or None at the end of the stream."""
        import mqttraw
        while True:
            if len(self.buf) >= 2:
                got = mqttraw.decode_varint(self.buf, 1)
                if got is not None:
                    length, pos = got
                    if len(self.buf) >= pos + length:
                        first, body = self.buf[0], self.buf[pos:pos + length]
                        self.buf = self.buf[pos + length:]
                        return mqttraw.decode(first, body, mqttraw.V5)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def send(self, data: bytes):
        self.sock.sendall(data)


def test_unacknowledged_publishes_are_sent_again_after_a_reconnect(tmp_path):
    """MQTT-4.4.0-1: a client that reconnects to its session sends again, with DUP and the same
    packet ids, every QoS 1 PUBLISH the server did not acknowledge. The load generator does (with
    `--reconnect`), so its "lost" counts only what a broker lost after acknowledging it. The
    server here acknowledges nothing on the first connection, disconnects the client with 0x9C,
    and on the second expects the same PUBLISHes first, flagged DUP."""
    import mqttraw
    server = _FakeBroker()
    report = tmp_path / "pub.json"
    p = subprocess.Popen([str(LOADGEN_BIN), "pub", "-c", "1", "-q", "1", "-r", "200", "-d", "60s",
                          "--warmup", "0s", "--client-id-prefix", f"resend{os.getpid()}",
                          "--clean-start", "false", "--session-expiry", "300", "--port",
                          str(server.port), "--reconnect", "--quiet", "--json", str(report)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = server.accept()
        assert first.packet().type == mqttraw.CONNECT
        first.send(mqttraw.fixed(mqttraw.CONNACK, 0, b"\x00\x00\x00"))
        sent = []
        while len(sent) < 5:
            pkt = first.packet()
            assert pkt is not None and pkt.type == mqttraw.PUBLISH, pkt
            assert not pkt.dup
            sent.append(pkt)
        first.send(mqttraw.disconnect(0x9C))
        while (pkt := first.packet()) is not None:  # what was on its way, until it closes
            if pkt.type == mqttraw.PUBLISH:
                sent.append(pkt)
        second = server.accept()
        assert second.packet().type == mqttraw.CONNECT
        second.send(mqttraw.fixed(mqttraw.CONNACK, 0, b"\x01\x00\x00"))  # session present
        again = [second.packet() for _ in sent]
        assert [(q.type, q.dup, q.pid, q.payload) for q in again] == \
            [(mqttraw.PUBLISH, True, q.pid, q.payload) for q in sent]
        for q in again:
            second.send(mqttraw.puback(q.pid))
        # New messages follow, not flagged, numbered on.
        new = second.packet()
        assert new.type == mqttraw.PUBLISH and not new.dup and new.pid not in {q.pid for q in sent}
    finally:
        p.send_signal(2)
        out, err = p.communicate(timeout=30)
    r = json.loads(report.read_text())
    assert r["evictions"]["resent_after_reconnect"] >= len(sent), r["evictions"]
