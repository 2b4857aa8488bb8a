"""MQTT over WebSocket ([listeners.ws.<name>]) and WebSocket over TLS
([listeners.wss.<name>]): paho over ws:// and wss://, one publisher on TCP
reaching subscribers on TLS, WS and WSS at once, and RFC 6455 / MQTT 5.0
section 6 enforcement with a raw WebSocket client: a wrong path or
subprotocol, a text frame, an unmasked frame and an oversized frame each close
that one connection while the others keep working; a stalled upgrade is closed
after handshake_timeout."""
from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import struct
import time

import pytest

import mqttraw
from clients import MqttClient
from conftest import free_port
from pki import make_pki, ssl_options

pytestmark = [pytest.mark.timeout(90), pytest.mark.ringmq_only("WebSocket listeners")]

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x1, 0x2, 0x8, 0x9, 0xA


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def transports_broker(broker_factory, pki, mqtt=None, log_level="info", **ws_listener):
    """A broker with ssl, ws and wss listeners besides its TCP one."""
    ports = {kind: free_port() for kind in ("ssl", "ws", "wss")}
    config = {"listeners": {
        "ssl": {"default": {"bind": f"127.0.0.1:{ports['ssl']}", "ssl_options": ssl_options(pki)}},
        "ws": {"default": {"bind": f"127.0.0.1:{ports['ws']}", **ws_listener}},
        "wss": {"default": {"bind": f"127.0.0.1:{ports['wss']}", "ssl_options": ssl_options(pki),
                            **ws_listener}},
    }}
    if mqtt:
        config["mqtt"] = mqtt
    b = broker_factory(config=config, log_level=log_level)
    b.ports = ports
    return b


def client_on(b, pki, kind, client_id, **kw):
    if kind == "tcp":
        c = MqttClient(b.port, client_id, **kw)
    elif kind == "ssl":
        c = MqttClient(b.ports["ssl"], client_id, tls={"ca_certs": str(pki.cacert)}, **kw)
    elif kind == "ws":
        c = MqttClient(b.ports["ws"], client_id, transport="websockets", **kw)
    else:
        c = MqttClient(b.ports["wss"], client_id, transport="websockets",
                       tls={"ca_certs": str(pki.cacert)}, **kw)
    b.clients.append(c)
    return c


@pytest.mark.parametrize("kind", ["ws", "wss"])
@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_paho_over_websocket(broker_factory, pki, uid, kind, version):
    b = transports_broker(broker_factory, pki)
    sub = client_on(b, pki, kind, uid("sub"), version=version)
    pub = client_on(b, pki, kind, uid("pub"), version=version)
    topic = uid("ws/t")
    sub.subscribe(topic, qos=1)
    # Larger than one TLS record and several TCP segments.
    payload = os.urandom(100_000)
    pub.publish(topic, payload, qos=1)
    assert sub.expect_message(topic=topic).payload == payload


def test_publisher_on_tcp_reaches_tls_ws_and_wss_subscribers(broker_factory, pki, uid):
    b = transports_broker(broker_factory, pki)
    topic = uid("fan/t")
    subs = {kind: client_on(b, pki, kind, uid(kind)) for kind in ("ssl", "ws", "wss")}
    for s in subs.values():
        s.subscribe(topic, qos=1)
    pub = client_on(b, pki, "tcp", uid("pub"))
    for i in range(20):
        pub.publish(topic, f"m{i}", qos=1)
    for kind, s in subs.items():
        got = [s.expect_message(topic=topic).payload for _ in range(20)]
        assert got == [f"m{i}".encode() for i in range(20)], kind


# ---------------------------------------------------------------- a raw WebSocket client

class RawWs:
    def __init__(self, port: int, path: str = "/mqtt", protocol: str | None = "mqtt",
                 tls_ca: str | None = None):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        if tls_ca:
            ctx = ssl.create_default_context(cafile=tls_ca)
            sock = ctx.wrap_socket(sock, server_hostname="localhost")
        self.sock = sock
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                   f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")
        if protocol is not None:
            request += f"Sec-WebSocket-Protocol: {protocol}\r\n"
        sock.sendall((request + "\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = sock.recv(4096)
            if not chunk:
                break
            self.buf += chunk
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        self.head = head.decode(errors="replace")
        self.status = int(self.head.split(" ", 2)[1]) if self.head else 0
        self.accept_expected = base64.b64encode(
            hashlib.sha1((key + WS_GUID).encode()).digest()).decode()

    def header(self, name: str) -> str | None:
        for line in self.head.split("\r\n")[1:]:
            k, _, v = line.partition(":")
            if k.strip().lower() == name.lower():
                return v.strip()
        return None

    def send_frame(self, opcode: int, payload: bytes, mask: bool = True, fin: bool = True,
                   declared_len: int | None = None) -> None:
        n = len(payload) if declared_len is None else declared_len
        head = bytes([(0x80 if fin else 0) | opcode])
        mbit = 0x80 if mask else 0
        if n < 126:
            head += bytes([mbit | n])
        elif n < 65536:
            head += bytes([mbit | 126]) + struct.pack(">H", n)
        else:
            head += bytes([mbit | 127]) + struct.pack(">Q", n)
        if mask:
            key = os.urandom(4)
            head += key
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        self.sock.sendall(head + payload)

    def _need(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise mqttraw.Closed("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_frame(self, timeout: float = 5) -> tuple[int, bytes]:
        self.sock.settimeout(timeout)
        b0, b1 = self._need(2)
        assert not b1 & 0x80, "server frames are never masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._need(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._need(8))[0]
        return b0 & 0x0F, self._need(n)

    def wait_closed(self, timeout: float = 5) -> tuple[list[tuple[int, bytes]], float]:
        """Frames received until the connection closed; and how long it took."""
        start = time.monotonic()
        frames = []
        try:
            while time.monotonic() - start < timeout:
                frames.append(self.recv_frame(timeout))
        except (mqttraw.Closed, ConnectionResetError, BrokenPipeError, ssl.SSLError):
            return frames, time.monotonic() - start
        except socket.timeout:
            pass
        raise AssertionError(f"still open after {timeout}s; frames {frames}")

    def close(self):
        self.sock.close()


def connect_mqtt(ws: RawWs, client_id: str) -> None:
    packet = mqttraw.connect(client_id)
    # Split over two frames: a packet may span frames (MQTT 5.0 section 6).
    ws.send_frame(OP_BINARY, packet[:5])
    ws.send_frame(OP_BINARY, packet[5:])
    opcode, data = ws.recv_frame()
    assert opcode == OP_BINARY and data[0] == 0x20, (opcode, data)


@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_raw_upgrade_negotiates_mqtt_and_frames_are_binary(broker_factory, pki, uid, kind):
    b = transports_broker(broker_factory, pki)
    ws = RawWs(b.ports[kind], tls_ca=str(pki.cacert) if kind == "wss" else None)
    assert ws.status == 101, ws.head
    assert ws.header("Sec-WebSocket-Protocol") == "mqtt"
    assert ws.header("Sec-WebSocket-Accept") == ws.accept_expected
    connect_mqtt(ws, uid("raw"))
    ws.send_frame(OP_PING, b"hi")
    assert ws.recv_frame() == (OP_PONG, b"hi")
    ws.send_frame(OP_BINARY, mqttraw.pingreq())
    assert ws.recv_frame() == (OP_BINARY, b"\xd0\x00")
    # A Close frame ends the connection (the server answers and closes).
    ws.send_frame(OP_CLOSE, struct.pack(">H", 1000))
    frames, _ = ws.wait_closed()
    assert frames and frames[0][0] == OP_CLOSE, frames
    ws.close()


@pytest.mark.parametrize("path,protocol,status", [
    ("/other", "mqtt", 404),
    ("/mqtt", None, 400),
    ("/mqtt", "chat, superchat", 400),
], ids=["wrong-path", "no-subprotocol", "wrong-subprotocol"])
def test_bad_upgrade_is_refused_and_others_keep_working(broker_factory, pki, uid, path, protocol,
                                                        status):
    b = transports_broker(broker_factory, pki)
    sub = client_on(b, pki, "ws", uid("sub"))
    topic = uid("t")
    sub.subscribe(topic, qos=1)
    bad = RawWs(b.ports["ws"], path=path, protocol=protocol)
    assert bad.status == status, bad.head
    bad.wait_closed()
    bad.close()
    client_on(b, pki, "tcp", uid("pub")).publish(topic, "ok", qos=1)
    assert sub.expect_message(topic=topic).payload == b"ok"


BAD_FRAME_REASONS = {
    "text-frame": "text frame",
    "unmasked-frame": "unmasked frame",
    "oversized-frame": "Message too long",
}


@pytest.mark.parametrize("case", list(BAD_FRAME_REASONS))
@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_bad_frame_closes_only_that_connection(broker_factory, pki, uid, case, kind):
    b = transports_broker(broker_factory, pki, mqtt={"max_packet_size": 4096}, log_level="debug")
    sub = client_on(b, pki, kind, uid("sub"))
    topic = uid("t")
    sub.subscribe(topic, qos=1)
    ws = RawWs(b.ports[kind], tls_ca=str(pki.cacert) if kind == "wss" else None)
    assert ws.status == 101, ws.head
    connect_mqtt(ws, uid("bad"))
    if case == "text-frame":
        ws.send_frame(OP_TEXT, mqttraw.pingreq())
    elif case == "unmasked-frame":
        ws.send_frame(OP_BINARY, mqttraw.pingreq(), mask=False)
    else:
        # Only the header of a 1 MB frame: refused before its payload.
        ws.send_frame(OP_BINARY, b"", declared_len=1 << 20)
    frames, _ = ws.wait_closed()
    assert all(op != OP_BINARY for op, _ in frames), frames
    ws.close()
    b.wait_log(BAD_FRAME_REASONS[case])
    pub = client_on(b, pki, "tcp", uid("pub"))
    pub.publish(topic, "others fine", qos=1)
    assert sub.expect_message(topic=topic).payload == b"others fine"


@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_stalled_upgrade_is_closed_after_handshake_timeout(broker_factory, pki, uid, kind):
    b = transports_broker(broker_factory, pki, handshake_timeout="1s")
    sock = socket.create_connection(("127.0.0.1", b.ports[kind]), timeout=10)
    if kind == "wss":
        sock = ssl.create_default_context(cafile=str(pki.cacert)).wrap_socket(
            sock, server_hostname="localhost")
    sock.sendall(b"GET /mqtt HTTP/1.1\r\nHost: x\r\n")
    start = time.monotonic()
    sock.settimeout(10)
    try:
        while sock.recv(4096):
            pass
    except (ConnectionResetError, ssl.SSLError):
        pass
    took = time.monotonic() - start
    sock.close()
    assert 0.5 <= took < 5, took
    c = client_on(b, pki, kind, uid("after"))
    assert c.is_connected()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ws", "wss"])
def test_idle_websocket_connection_memory(broker_factory, pki, uid, kind):
    """Broker memory per idle MQTT-over-WebSocket connection (memory, not
    time: a busy machine does not move it). Bound: 16 KiB; the figure is in
    docs/benchmarks.md."""
    from test_tls import rss_kib
    b = transports_broker(broker_factory, pki)
    tls_ca = str(pki.cacert) if kind == "wss" else None

    def open_idle() -> RawWs:
        ws = RawWs(b.ports[kind], tls_ca=tls_ca)
        assert ws.status == 101, ws.head
        connect_mqtt(ws, uid("idle"))
        return ws

    warm = [open_idle() for _ in range(50)]
    time.sleep(1.5)
    before = rss_kib(b.proc.pid)
    count = 300
    conns = [open_idle() for _ in range(count)]
    time.sleep(1.5)
    per_conn_b = (rss_kib(b.proc.pid) - before) * 1024 / count
    print(f"idle {kind} connection: {per_conn_b:.0f} B each ({count} connections)")
    assert per_conn_b < 16 * 1024, per_conn_b
    for ws in conns + warm:
        ws.close()
