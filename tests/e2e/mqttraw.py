"""Hand-encoded MQTT 3.1.1 / 5.0 packets over a plain TCP socket.

Used where a client library would hide what the broker sent (reason codes,
DUP flags, packet ids, topic aliases) or refuse to send what a test needs
(malformed packets). Nothing here validates what it is asked to encode: a
test may build any byte sequence it likes.
"""
from __future__ import annotations

import errno
import select
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

# Control packet types.
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP = 8, 9, 10, 11, 12, 13
DISCONNECT, AUTH = 14, 15

PACKET_NAMES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
    7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
    12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH",
}

V31, V311, V5 = 3, 4, 5

# MQTT 5 properties: id -> (name, kind). Kinds: byte, u16, u32, varint, str, bin, pair.
PROPS = {
    0x01: ("payload_format_indicator", "byte"),
    0x02: ("message_expiry_interval", "u32"),
    0x03: ("content_type", "str"),
    0x08: ("response_topic", "str"),
    0x09: ("correlation_data", "bin"),
    0x0B: ("subscription_identifier", "varint"),
    0x11: ("session_expiry_interval", "u32"),
    0x12: ("assigned_client_identifier", "str"),
    0x13: ("server_keep_alive", "u16"),
    0x15: ("authentication_method", "str"),
    0x16: ("authentication_data", "bin"),
    0x17: ("request_problem_information", "byte"),
    0x18: ("will_delay_interval", "u32"),
    0x19: ("request_response_information", "byte"),
    0x1A: ("response_information", "str"),
    0x1C: ("server_reference", "str"),
    0x1F: ("reason_string", "str"),
    0x21: ("receive_maximum", "u16"),
    0x22: ("topic_alias_maximum", "u16"),
    0x23: ("topic_alias", "u16"),
    0x24: ("maximum_qos", "byte"),
    0x25: ("retain_available", "byte"),
    0x26: ("user_property", "pair"),
    0x27: ("maximum_packet_size", "u32"),
    0x28: ("wildcard_subscription_available", "byte"),
    0x29: ("subscription_identifier_available", "byte"),
    0x2A: ("shared_subscription_available", "byte"),
}
PROP_IDS = {name: (pid, kind) for pid, (name, kind) in PROPS.items()}
# Properties that may appear more than once; decoded as lists.
MULTI = {"user_property", "subscription_identifier"}


class Closed(Exception):
    """The peer closed the connection (FIN or RST)."""


class MalformedFromBroker(Exception):
    """The broker sent bytes this decoder cannot parse."""


# ---------------------------------------------------------------- encoding

def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n % 128
        n //= 128
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def mqtt_str(s: str | bytes) -> bytes:
    """Two-byte length prefixed string; bytes are sent as given (for bad UTF-8)."""
    b = s.encode("utf-8") if isinstance(s, str) else s
    return struct.pack("!H", len(b)) + b


def mqtt_bin(b: bytes | str) -> bytes:
    return mqtt_str(b)


def encode_props(props: dict[str, Any] | list[tuple[str, Any]] | None) -> bytes:
    """Encode a property dict (or an ordered list of (name, value)).

    Names are those of PROPS. `user_property` takes a list of (key, value);
    `subscription_identifier` an int or a list of ints.
    """
    if not props:
        return varint(0)
    items = props.items() if isinstance(props, dict) else props
    body = bytearray()
    for name, value in items:
        pid, kind = PROP_IDS[name]
        if name == "user_property":
            values = list(value)  # a list of (key, value) pairs
        elif name == "subscription_identifier" and isinstance(value, (list, tuple)):
            values = list(value)
        else:
            values = [value]
        for v in values:
            body.append(pid)
            if kind == "byte":
                body.append(v)
            elif kind == "u16":
                body += struct.pack("!H", v)
            elif kind == "u32":
                body += struct.pack("!I", v)
            elif kind == "varint":
                body += varint(v)
            elif kind in ("str", "bin"):
                body += mqtt_str(v)
            elif kind == "pair":
                body += mqtt_str(v[0]) + mqtt_str(v[1])
    return varint(len(body)) + bytes(body)


def fixed(ptype: int, flags: int, body: bytes) -> bytes:
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def connect(client_id: str | bytes = "", version: int = V5, clean: bool = True,
            keepalive: int = 60, props: dict | None = None, will: dict | None = None,
            username: str | None = None, password: bytes | None = None,
            proto_name: str | bytes = "MQTT", proto_level: int | None = None,
            flags_override: int | None = None) -> bytes:
    """CONNECT. `will` = dict(topic, payload, qos=0, retain=False, props=None).
    `version=V31` makes an MQTT 3.1 CONNECT ("MQIsdp", level 3) unless `proto_name` says otherwise."""
    level = version if proto_level is None else proto_level
    if version == V31 and proto_name == "MQTT":
        proto_name = "MQIsdp"
    flags = 0
    if clean:
        flags |= 0x02
    if will is not None:
        flags |= 0x04 | (will.get("qos", 0) << 3) | (0x20 if will.get("retain") else 0)
    if password is not None:
        flags |= 0x40
    if username is not None:
        flags |= 0x80
    if flags_override is not None:
        flags = flags_override
    body = mqtt_str(proto_name) + bytes([level, flags]) + struct.pack("!H", keepalive)
    if version == V5:
        body += encode_props(props)
    body += mqtt_str(client_id)
    if will is not None:
        if version == V5:
            body += encode_props(will.get("props"))
        body += mqtt_str(will["topic"]) + mqtt_bin(will.get("payload", b""))
    if username is not None:
        body += mqtt_str(username)
    if password is not None:
        body += mqtt_bin(password)
    return fixed(CONNECT, 0, body)


def publish(topic: str | bytes, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
            dup: bool = False, pid: int | None = None, props: dict | list | None = None,
            version: int = V5) -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = mqtt_str(topic)
    if qos > 0:
        body += struct.pack("!H", pid if pid is not None else 1)
    if version == V5:
        body += encode_props(props)
    return fixed(PUBLISH, flags, body + payload)


def _ack(ptype: int, flags: int, pid: int, rc: int | None, props: dict | None, version: int) -> bytes:
    body = struct.pack("!H", pid)
    if version == V5 and (rc is not None or props):
        body += bytes([rc or 0])
        if props:
            body += encode_props(props)
    return fixed(ptype, flags, body)


def puback(pid, rc=None, props=None, version=V5):
    return _ack(PUBACK, 0, pid, rc, props, version)


def pubrec(pid, rc=None, props=None, version=V5):
    return _ack(PUBREC, 0, pid, rc, props, version)


def pubrel(pid, rc=None, props=None, version=V5):
    return _ack(PUBREL, 2, pid, rc, props, version)


def pubcomp(pid, rc=None, props=None, version=V5):
    return _ack(PUBCOMP, 0, pid, rc, props, version)


def sub_options(qos: int = 0, no_local: bool = False, rap: bool = False, rh: int = 0) -> int:
    return qos | (0x04 if no_local else 0) | (0x08 if rap else 0) | (rh << 4)


def subscribe(pid: int, filters: Iterable[tuple[str | bytes, int]] | str, qos: int = 0,
              props: dict | None = None, version: int = V5, flags: int = 2) -> bytes:
    """SUBSCRIBE; `filters` is a list of (filter, options byte) or one filter string."""
    if isinstance(filters, (str, bytes)):
        filters = [(filters, qos)]
    body = struct.pack("!H", pid)
    if version == V5:
        body += encode_props(props)
    for f, opts in filters:
        body += mqtt_str(f) + bytes([opts])
    return fixed(SUBSCRIBE, flags, body)


def unsubscribe(pid: int, filters: Iterable[str] | str, props: dict | None = None,
                version: int = V5) -> bytes:
    if isinstance(filters, (str, bytes)):
        filters = [filters]
    body = struct.pack("!H", pid)
    if version == V5:
        body += encode_props(props)
    for f in filters:
        body += mqtt_str(f)
    return fixed(UNSUBSCRIBE, 2, body)


def pingreq() -> bytes:
    return b"\xc0\x00"


def disconnect(rc: int | None = None, props: dict | None = None, version: int = V5) -> bytes:
    if version != V5 or (rc is None and not props):
        return b"\xe0\x00"
    body = bytes([rc or 0])
    if props:
        body += encode_props(props)
    return fixed(DISCONNECT, 0, body)


# ---------------------------------------------------------------- decoding

@dataclass
class Packet:
    type: int
    flags: int
    raw: bytes
    # Decoded fields; which ones are set depends on the type.
    rc: int = 0
    props: dict = field(default_factory=dict)
    session_present: bool = False
    pid: int | None = None
    topic: str = ""
    payload: bytes = b""
    qos: int = 0
    retain: bool = False
    dup: bool = False
    rcs: list = field(default_factory=list)

    @property
    def name(self) -> str:
        return PACKET_NAMES.get(self.type, f"type{self.type}")

    def __repr__(self) -> str:
        bits = [self.name]
        if self.type == PUBLISH:
            bits.append(f"topic={self.topic!r} qos={self.qos} retain={self.retain} dup={self.dup} "
                        f"pid={self.pid} payload={self.payload[:40]!r}")
        elif self.type in (SUBACK, UNSUBACK):
            bits.append(f"pid={self.pid} rcs={[hex(r) for r in self.rcs]}")
        else:
            if self.pid is not None:
                bits.append(f"pid={self.pid}")
            bits.append(f"rc=0x{self.rc:02x}")
        if self.type == CONNACK:
            bits.append(f"sp={int(self.session_present)}")
        if self.props:
            bits.append(f"props={self.props}")
        return "<" + " ".join(bits) + ">"


def decode_varint(data: bytes, pos: int) -> tuple[int, int] | None:
    """(value, new pos), or None if more bytes are needed."""
    mult, value = 1, 0
    for i in range(4):
        if pos + i >= len(data):
            return None
        b = data[pos + i]
        value += (b & 0x7F) * mult
        if not b & 0x80:
            return value, pos + i + 1
        mult *= 128
    raise MalformedFromBroker("remaining length longer than 4 bytes")


def _str(data: bytes, pos: int) -> tuple[bytes, int]:
    (n,) = struct.unpack_from("!H", data, pos)
    return data[pos + 2:pos + 2 + n], pos + 2 + n


def decode_props(data: bytes, pos: int) -> tuple[dict, int]:
    r = decode_varint(data, pos)
    if r is None:
        raise MalformedFromBroker("truncated property length")
    length, pos = r
    end = pos + length
    props: dict[str, Any] = {}
    while pos < end:
        pid = data[pos]
        pos += 1
        if pid not in PROPS:
            raise MalformedFromBroker(f"unknown property 0x{pid:02x}")
        name, kind = PROPS[pid]
        if kind == "byte":
            v, pos = data[pos], pos + 1
        elif kind == "u16":
            (v,), pos = struct.unpack_from("!H", data, pos), pos + 2
        elif kind == "u32":
            (v,), pos = struct.unpack_from("!I", data, pos), pos + 4
        elif kind == "varint":
            v, pos = decode_varint(data, pos)
        elif kind == "str":
            b, pos = _str(data, pos)
            v = b.decode("utf-8")
        elif kind == "bin":
            v, pos = _str(data, pos)
        else:
            k, pos = _str(data, pos)
            val, pos = _str(data, pos)
            v = (k.decode("utf-8"), val.decode("utf-8"))
        if name in MULTI:
            props.setdefault(name, []).append(v)
        else:
            if name in props:
                raise MalformedFromBroker(f"property {name} repeated")
            props[name] = v
    if pos != end:
        raise MalformedFromBroker("property length mismatch")
    return props, end


def decode(first: int, body: bytes, version: int) -> Packet:
    ptype, flags = first >> 4, first & 0x0F
    p = Packet(ptype, flags, bytes([first]) + varint(len(body)) + body)
    v5 = version == V5
    if ptype == CONNACK:
        p.session_present = bool(body[0] & 1)
        p.rc = body[1]
        if v5 and len(body) > 2:
            p.props, _ = decode_props(body, 2)
    elif ptype == PUBLISH:
        p.qos = (flags >> 1) & 3
        p.retain = bool(flags & 1)
        p.dup = bool(flags & 8)
        t, pos = _str(body, 0)
        p.topic = t.decode("utf-8")
        if p.qos:
            (p.pid,) = struct.unpack_from("!H", body, pos)
            pos += 2
        if v5:
            p.props, pos = decode_props(body, pos)
        p.payload = body[pos:]
    elif ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        (p.pid,) = struct.unpack_from("!H", body, 0)
        if v5 and len(body) > 2:
            p.rc = body[2]
            if len(body) > 3:
                p.props, _ = decode_props(body, 3)
    elif ptype in (SUBACK, UNSUBACK):
        (p.pid,) = struct.unpack_from("!H", body, 0)
        pos = 2
        if v5:
            p.props, pos = decode_props(body, pos)
        p.rcs = list(body[pos:])
    elif ptype in (DISCONNECT, AUTH):
        if v5 and body:
            p.rc = body[0]
            if len(body) > 1:
                p.props, _ = decode_props(body, 1)
    return p


# ---------------------------------------------------------------- client

class RawClient:
    """One TCP connection speaking hand-made MQTT. Not thread safe.

    recv_packet() raises Closed when the broker closed the connection and
    TimeoutError when nothing complete arrived in time.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", version: int = V5,
                 timeout: float = 5.0, rcvbuf: int | None = None):
        self.version = version
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        # Packets read while looking for a specific one (see ack()); returned first.
        self.backlog: list[Packet] = []
        self.closed = False
        self.next_pid = 1
        self.connack: Packet | None = None

    # -- plumbing
    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def try_send(self, data: bytes) -> bool:
        """Send, returning False instead of raising if the broker already closed."""
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, deadline: float) -> None:
        if self.closed:
            raise Closed()
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError()
        r, _, _ = select.select([self.sock], [], [], remaining)
        if not r:
            raise TimeoutError()
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED):
                chunk = b""
            else:
                raise
        if not chunk:
            self.closed = True
            raise Closed()
        self.buf += chunk

    def _parse_one(self) -> Packet | None:
        if len(self.buf) < 2:
            return None
        r = decode_varint(self.buf, 1)
        if r is None:
            return None
        length, pos = r
        if len(self.buf) < pos + length:
            return None
        first = self.buf[0]
        body = bytes(self.buf[pos:pos + length])
        del self.buf[:pos + length]
        return decode(first, body, self.version)

    def recv_packet(self, timeout: float | None = None) -> Packet:
        if self.backlog:
            return self.backlog.pop(0)
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            p = self._parse_one()
            if p is not None:
                return p
            self._fill(deadline)

    def expect(self, ptype: int, timeout: float | None = None) -> Packet:
        try:
            p = self.recv_packet(timeout)
        except Closed:
            raise AssertionError(f"expected {PACKET_NAMES[ptype]}, connection closed") from None
        except TimeoutError:
            raise AssertionError(f"expected {PACKET_NAMES[ptype]}, nothing arrived") from None
        assert p.type == ptype, f"expected {PACKET_NAMES[ptype]}, got {p!r}"
        return p

    def expect_publish(self, timeout: float | None = None) -> Packet:
        return self.expect(PUBLISH, timeout)

    def expect_nothing(self, timeout: float = 0.5) -> None:
        """Assert that no packet arrives (and the connection stays open) for `timeout`."""
        try:
            p = self.recv_packet(timeout)
        except TimeoutError:
            return
        except Closed:
            raise AssertionError("connection closed unexpectedly") from None
        raise AssertionError(f"expected nothing, got {p!r}")

    def wait_closed(self, timeout: float = 5.0) -> list[Packet]:
        """Wait until the broker closes the connection; return the packets it sent first."""
        got = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                got.append(self.recv_packet(max(0.0, deadline - time.monotonic())))
            except Closed:
                return got
            except TimeoutError:
                raise AssertionError(
                    f"connection still open after {timeout}s; received {got!r}") from None

    def expect_disconnect(self, rc: int | set | None = None, timeout: float = 5.0) -> Packet | None:
        """Wait for the broker to close the connection.

        For MQTT 5, a DISCONNECT (with reason `rc`, if given) must come first.
        For 3.1.1 the broker just closes. Returns the DISCONNECT, if any.
        """
        got = self.wait_closed(timeout)
        discs = [p for p in got if p.type == DISCONNECT]
        if self.version == V5 and rc is not None:
            assert discs, f"expected DISCONNECT 0x{rc if isinstance(rc, int) else 0:02x} before close, got {got!r}"
            want = {rc} if isinstance(rc, int) else rc
            assert discs[-1].rc in want, f"expected DISCONNECT rc in {[hex(r) for r in want]}, got {discs[-1]!r}"
        if self.version != V5:
            assert not discs, f"3.1.1 has no server DISCONNECT, got {got!r}"
        return discs[-1] if discs else None

    def close(self) -> None:
        """Drop the TCP connection without an MQTT DISCONNECT (abnormal close)."""
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    def abort(self) -> None:
        """Close with RST (SO_LINGER 0)."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    # -- MQTT conveniences
    def pid(self) -> int:
        p = self.next_pid
        self.next_pid = p % 65535 + 1
        return p

    def connect(self, client_id: str = "", expect_rc: int | None = 0, **kw) -> Packet:
        kw.setdefault("version", self.version)
        self.send(connect(client_id, **kw))
        ack = self.expect(CONNACK)
        if expect_rc is not None:
            assert ack.rc == expect_rc, f"CONNACK rc 0x{ack.rc:02x}, expected 0x{expect_rc:02x}: {ack!r}"
        self.connack = ack
        return ack

    def subscribe(self, filters, qos: int = 0, props: dict | None = None, **kw) -> Packet:
        """Subscribe and wait for the SUBACK (other packets arriving first are an error)."""
        pid = self.pid()
        self.send(subscribe(pid, filters, qos=qos, props=props, version=self.version, **kw))
        return self.wait_for(SUBACK, pid)

    def unsubscribe(self, filters, props: dict | None = None) -> Packet:
        pid = self.pid()
        self.send(unsubscribe(pid, filters, props=props, version=self.version))
        return self.wait_for(UNSUBACK, pid)

    def publish(self, topic, payload=b"", qos=0, retain=False, props=None, pid=None, dup=False,
                wait: bool = True) -> int | None:
        """Publish; with `wait`, complete the QoS 1/2 handshake. Returns the packet id."""
        if qos and pid is None:
            pid = self.pid()
        self.send(publish(topic, payload, qos=qos, retain=retain, dup=dup, pid=pid, props=props,
                          version=self.version))
        if wait and qos == 1:
            ack = self.wait_for(PUBACK, pid)
            assert ack.rc < 0x80, ack
        elif wait and qos == 2:
            rec = self.wait_for(PUBREC, pid)
            assert rec.rc < 0x80, rec
            self.send(pubrel(pid, version=self.version))
            comp = self.wait_for(PUBCOMP, pid)
            assert comp.rc == 0, comp
        return pid

    def publish_many(self, messages, qos: int = 1, window: int | None = None, retain: bool = False) -> None:
        """Publish (topic, payload) pairs in order, pipelined, keeping at most `window`
        unacknowledged (default: the broker's Receive Maximum, or 16 for 3.1.1)."""
        if window is None:
            window = (self.connack.props.get("receive_maximum", 65535)
                      if self.version == V5 and self.connack else 16)
        messages = list(messages)
        pending: set[int] = set()
        stash: list[Packet] = []
        i = 0
        try:
            while i < len(messages) or pending:
                while i < len(messages) and (qos == 0 or len(pending) < window):
                    topic, payload = messages[i]
                    pid = self.pid() if qos else None
                    self.send(publish(topic, payload, qos=qos, retain=retain, pid=pid, version=self.version))
                    if qos:
                        pending.add(pid)
                    i += 1
                if not pending:
                    break
                try:
                    p = self.recv_packet()
                except (Closed, TimeoutError) as e:
                    raise AssertionError(f"publish_many: {len(pending)} unacknowledged ({e!r})") from None
                if p.type in (PUBACK, PUBCOMP) and p.pid in pending:
                    assert p.rc < 0x80, p
                    pending.discard(p.pid)
                elif p.type == PUBREC and p.pid in pending:
                    assert p.rc < 0x80, p
                    self.send(pubrel(p.pid, version=self.version))
                else:
                    stash.append(p)
        finally:
            self.backlog[:0] = stash

    def ack(self, p: Packet) -> None:
        """Acknowledge a received PUBLISH (PUBACK, or PUBREC+PUBREL/PUBCOMP for QoS 2)."""
        if p.qos == 1:
            self.send(puback(p.pid, version=self.version))
        elif p.qos == 2:
            self.send(pubrec(p.pid, version=self.version))
            self.wait_for(PUBREL, p.pid)
            self.send(pubcomp(p.pid, version=self.version))

    def wait_for(self, ptype: int, pid: int | None = None, timeout: float | None = None) -> Packet:
        """Read until a packet of `ptype` (with `pid`) arrives; others are kept for later reads."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        skipped = []
        try:
            while True:
                try:
                    p = self.recv_packet(max(0.0, deadline - time.monotonic()))
                except Closed:
                    raise AssertionError(f"waiting for {PACKET_NAMES[ptype]} {pid}: connection closed") from None
                except TimeoutError:
                    raise AssertionError(f"waiting for {PACKET_NAMES[ptype]} {pid}: not received; "
                                         f"got {skipped!r}") from None
                if p.type == ptype and (pid is None or p.pid == pid):
                    return p
                skipped.append(p)
        finally:
            self.backlog[:0] = skipped

    def ping(self) -> None:
        self.send(pingreq())
        self.expect(PINGRESP)

    def disconnect(self, rc: int | None = None, props: dict | None = None) -> None:
        self.try_send(disconnect(rc, props, version=self.version))
        self.close()
