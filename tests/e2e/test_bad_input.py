"""Malformed and out-of-order input on raw sockets. After each case the broker must
still serve other clients (broker.check_alive), and the offending connection must be
closed with the reason code the spec gives (MQTT 5: DISCONNECT before closing)."""
import struct
import time

import pytest

import mqttraw
from conftest import IS_MOSQUITTO
from mqttraw import CONNACK, DISCONNECT, PUBCOMP, V311, V5

pytestmark = pytest.mark.timeout(60)


def closed_quietly_or_with_error(r, timeout=5.0):
    """The connection closes; anything sent first is an error CONNACK/DISCONNECT."""
    got = r.wait_closed(timeout)
    for p in got:
        assert p.type in (CONNACK, DISCONNECT) and p.rc >= 0x01, f"unexpected before close: {got}"
        if p.type == DISCONNECT:
            assert p.rc >= 0x80, got
    return got


# ---------------------------------------------------------------- before / at CONNECT

@pytest.mark.parametrize("data", [
    b"\xff\xff\xff\xff\x7fgarbage",
    b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    b"\x00\x00",
    b"\x10\xff\xff\xff\xff\x01",  # remaining length longer than 4 bytes
], ids=["binary", "http", "type0", "varint5"])
def test_garbage_before_connect_closes(broker, data):
    r = broker.raw()
    r.send(data)
    closed_quietly_or_with_error(r)
    broker.check_alive()


@pytest.mark.parametrize("first", [
    mqttraw.pingreq(),
    mqttraw.subscribe(1, "t", qos=0, version=V311),
    mqttraw.publish("t", b"x", qos=0, version=V311),
    mqttraw.disconnect(version=V311),
], ids=["pingreq", "subscribe", "publish", "disconnect"])
def test_packet_before_connect_closes(broker, first):
    """MQTT-3.1.0-1: the first packet must be CONNECT."""
    r = broker.raw(version=V311)
    r.send(first)
    got = r.wait_closed()
    assert not [p for p in got if p.type != DISCONNECT], f"broker answered a pre-CONNECT packet: {got}"
    broker.check_alive()


def test_second_connect(broker, version, uid):
    """MQTT-3.1.0-2: a second CONNECT is a Protocol Error (v5: DISCONNECT 0x82)."""
    r = broker.raw(version=version, connect=uid("c"))
    r.send(mqttraw.connect(uid("c2"), version=version))
    r.expect_disconnect(0x82)
    broker.check_alive()


def test_bad_protocol_name(broker, version, uid):
    """MQTT-3.1.2-1: wrong protocol name -> the server may close (possibly after a refusal)."""
    r = broker.raw(version=version)
    r.send(mqttraw.connect(uid("c"), version=version, proto_name="MQTX"))
    got = closed_quietly_or_with_error(r)
    assert not any(p.type == CONNACK and p.rc == 0 for p in got)
    broker.check_alive()


def test_unknown_protocol_level_6(broker, uid):
    """MQTT 5 3.1.2.2 / MQTT-3.1.2-2: unsupported level -> CONNACK 0x84 (Unsupported Protocol
    Version); a 3.1.1-style reply would be return code 0x01. Then close."""
    r = broker.raw(version=V5)
    r.send(mqttraw.connect(uid("c"), version=V5, proto_level=6))
    got = r.wait_closed()
    acks = [p for p in got if p.type == CONNACK]
    assert acks, f"expected a refusing CONNACK before close, got {got}"
    if IS_MOSQUITTO:
        assert acks[0].rc in (0x01, 0x84), acks
    else:
        assert acks[0].rc == 0x84, acks
    broker.check_alive()


def test_mqtt_name_with_level_3(broker, uid):
    """MQTT-3.1.2-2 (3.1.1): protocol level not supported -> CONNACK return code 0x01, close."""
    r = broker.raw(version=V311)
    r.send(mqttraw.connect(uid("c"), version=V311, proto_level=3))
    got = r.wait_closed()
    acks = [p for p in got if p.type == CONNACK]
    assert acks and acks[0].rc == 0x01, got
    broker.check_alive()


@pytest.mark.parametrize("flags,why", [
    (0x03, "reserved bit 0 set (MQTT-3.1.2-3)"),
    (0x1A, "will QoS 3 (MQTT-3.1.2-14)"),
    (0x0A, "will QoS without will flag (MQTT-3.1.2-13)"),
    (0x22, "will retain without will flag (MQTT-3.1.2-15)"),
], ids=["reserved", "willqos3", "willqos-noflag", "willretain-noflag"])
def test_bad_connect_flags(broker, version, uid, flags, why):
    r = broker.raw(version=version)
    will = {"topic": "w", "payload": b"x"} if flags & 0x04 else None
    r.send(mqttraw.connect(uid("c"), version=version, will=will, flags_override=flags))
    got = closed_quietly_or_with_error(r)
    assert not any(p.type == CONNACK and p.rc == 0 for p in got), why
    broker.check_alive()


def test_v311_password_without_username(broker, uid):
    """MQTT-3.1.2-22: 3.1.1 forbids the password flag without the user name flag."""
    r = broker.raw(version=V311)
    r.send(mqttraw.connect(uid("c"), version=V311, password=b"secret"))
    got = closed_quietly_or_with_error(r)
    assert not any(p.type == CONNACK and p.rc == 0 for p in got)
    broker.check_alive()


# ---------------------------------------------------------------- malformed after CONNECT

def test_qos3_publish(broker, version, uid):
    """MQTT-3.3.1-4: QoS 3 is a Malformed Packet."""
    r = broker.raw(version=version, connect=uid("c"))
    topic = mqttraw.mqtt_str("t")
    body = topic + b"\x00\x01" + (b"\x00" if version == V5 else b"") + b"x"
    r.send(mqttraw.fixed(mqttraw.PUBLISH, 0x06, body))
    r.expect_disconnect(0x81)
    broker.check_alive()


def test_garbage_after_connect(broker, version, uid):
    r = broker.raw(version=version, connect=uid("c"))
    r.send(b"\x00\x03abc")  # reserved packet type 0
    closed_quietly_or_with_error(r)
    broker.check_alive()


def test_subscribe_with_bad_fixed_header_flags(broker, version, uid):
    """MQTT-3.8.1-1: SUBSCRIBE fixed header flags must be 0010."""
    r = broker.raw(version=version, connect=uid("c"))
    r.send(mqttraw.subscribe(1, "t", qos=0, version=version, flags=0))
    r.expect_disconnect(0x81)
    broker.check_alive()


def test_subscribe_without_filters(broker, version, uid):
    """MQTT-3.8.3-3: a SUBSCRIBE with no topic filter is a Protocol Error."""
    r = broker.raw(version=version, connect=uid("c"))
    r.send(mqttraw.subscribe(1, [], version=version))
    closed_quietly_or_with_error(r)
    broker.check_alive()


@pytest.mark.parametrize("topic", ["a/+", "a/#", "+", "#"])
def test_wildcard_in_publish_topic(broker, version, uid, topic):
    """MQTT-3.3.2-2: a Topic Name must not contain wildcards (v5: 0x90 Topic Name invalid)."""
    sub = broker.client(uid("sub"), version=version)
    sub.subscribe("#", qos=1)
    r = broker.raw(version=version, connect=uid("c"))
    r.send(mqttraw.publish(topic, b"x", qos=1, pid=1, version=version))
    r.expect_disconnect(0x90)
    sub.expect_no_message(0.3)
    broker.check_alive()


@pytest.mark.parametrize("topic", [b"a/\xff\xfe", b"a/\xc0\xaf", b"a/\xed\xa0\x80", b"a/\x00b"],
                         ids=["ff", "overlong", "surrogate", "nul"])
def test_invalid_utf8_topic(broker, version, uid, topic):
    """1.5.4 / MQTT-1.5.4-1/-2: ill-formed UTF-8 or U+0000 in a topic is a Malformed Packet (0x81)."""
    r = broker.raw(version=version, connect=uid("c"))
    r.send(mqttraw.publish(topic, b"x", qos=1, pid=1, version=version))
    r.expect_disconnect(0x81)
    broker.check_alive()


def test_invalid_utf8_subscribe_filter(broker, version, uid):
    r = broker.raw(version=version, connect=uid("c"))
    r.send(mqttraw.subscribe(1, [(b"a/\xff", 0)], version=version))
    r.expect_disconnect(0x81)
    broker.check_alive()


def test_empty_topic_without_alias(broker, version, uid):
    """MQTT-4.7.3-1 (3.1.1) / 3.3.2.1 (5): an empty Topic Name with no Topic Alias is an error."""
    r = broker.raw(version=version, connect=uid("c"))
    r.send(mqttraw.publish("", b"x", qos=0, version=version))
    if version == V5:
        r.expect_disconnect(0x82)
    else:
        r.wait_closed()
    broker.check_alive()


@pytest.mark.parametrize("flt", ["a/#/b", "a/b#", "a+/b"])
def test_invalid_subscribe_filter_refused(broker, version, uid, flt):
    """4.7.1: misplaced wildcards. Refused with SUBACK 0x80/0x8F or a disconnect; never granted."""
    r = broker.raw(version=version, connect=uid("c"))
    r.send(mqttraw.subscribe(1, [(flt, 1)], version=version))
    try:
        p = r.recv_packet()
    except mqttraw.Closed:
        p = None
    if p is not None and p.type == mqttraw.SUBACK:
        assert p.rcs and p.rcs[0] >= 0x80, p
    elif p is not None:
        assert p.type == DISCONNECT and p.rc >= 0x80, p
    broker.check_alive()


def test_pubrel_unknown_packet_id(broker, version, uid):
    """MQTT 5 3.7.2.1: PUBREL for an unknown id -> PUBCOMP 0x92 (Packet Identifier not found);
    3.1.1 answers PUBCOMP. Not a disconnect."""
    r = broker.raw(version=version, connect=uid("c"))
    r.send(mqttraw.pubrel(4242, version=version))
    comp = r.expect(PUBCOMP)
    assert comp.pid == 4242
    if version == V5:
        assert comp.rc == 0x92, comp
    r.ping()
    r.disconnect()


# ---------------------------------------------------------------- size limits

@pytest.fixture
def small_broker(broker_factory):
    return broker_factory(config={"mqtt": {"max_packet_size": 1024}})


def test_oversize_packet_rejected_before_body(small_broker, version, uid):
    """MQTT-3.1.2-24 / 3.2.2.3.6: a packet over the server's Maximum Packet Size -> v5 DISCONNECT
    0x95, close. The length is checked from the header: the body is never sent here."""
    r = small_broker.raw(version=version, connect=uid("c"))
    header = bytes([0x30]) + mqttraw.varint(1_000_000)
    r.send(header + mqttraw.mqtt_str("t") + b"x" * 16)
    r.expect_disconnect(0x95, timeout=3)
    small_broker.check_alive()


def test_packet_at_limit_accepted(small_broker, version, uid):
    topic = uid("t")
    sub = small_broker.raw(version=version, connect=uid("s"))
    sub.subscribe(topic, qos=1)
    r = small_broker.raw(version=version, connect=uid("c"))
    overhead = len(mqttraw.publish(topic, b"", qos=1, pid=1, version=version))
    size = 1024 - overhead - 2  # stays <= 1024 with a 3-byte remaining length
    r.publish(topic, b"p" * size, qos=1)
    p = sub.expect_publish()
    assert len(p.payload) == size


def test_oversize_connect(small_broker, version, uid):
    r = small_broker.raw(version=version)
    r.send(mqttraw.connect(uid("c"), version=version, will={"topic": "w", "payload": b"x" * 4000}))
    got = closed_quietly_or_with_error(r)
    assert not any(p.type == CONNACK and p.rc == 0 for p in got)
    small_broker.check_alive()


def test_many_bad_clients_do_not_hurt_good_ones(broker, uid):
    topic = uid("t")
    good = broker.client(uid("good"))
    good.subscribe(topic, qos=1)
    bad = []
    for i in range(30):
        r = broker.raw()
        r.send([b"\xff" * 10, mqttraw.connect(uid("x"), proto_name="XXXX"), mqttraw.pingreq()][i % 3])
        bad.append(r)
    for r in bad:
        r.wait_closed()
    broker.client(uid("pub")).publish(topic, "ok", qos=1)
    assert good.expect_message().text == "ok"
