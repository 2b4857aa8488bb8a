"""Will messages: when they go out, when they don't, delays, properties."""
import time

import pytest

import mqttraw
from mqttraw import V5

pytestmark = pytest.mark.timeout(60)


def will_owner(broker, version, cid, will, **kw):
    r = broker.raw(version=version)
    r.connect(cid, will=will, **kw)
    return r


@pytest.mark.parametrize("will_qos", [0, 1, 2])
def test_will_on_abnormal_close(broker, version, uid, will_qos):
    """MQTT-3.1.2-8: a connection closed without DISCONNECT publishes the will."""
    topic = uid("will")
    sub = broker.client(uid("sub"), version=version)
    sub.subscribe(topic, qos=2)
    r = will_owner(broker, version, uid("owner"), {"topic": topic, "payload": b"gone", "qos": will_qos})
    r.close()
    m = sub.expect_message()
    assert (m.topic, m.payload, m.qos, m.retain) == (topic, b"gone", will_qos, False)
    sub.expect_no_message(0.3)


def test_will_on_reset(broker, version, uid):
    topic = uid("will")
    sub = broker.client(uid("sub"), version=version)
    sub.subscribe(topic, qos=1)
    r = will_owner(broker, version, uid("owner"), {"topic": topic, "payload": b"rst", "qos": 1})
    r.abort()
    assert sub.expect_message().payload == b"rst"


def test_will_retained(broker, version, uid):
    topic = uid("willret")
    r = will_owner(broker, version, uid("owner"),
                   {"topic": topic, "payload": b"last", "qos": 1, "retain": True})
    r.close()
    # Wait for it to be published, then a later subscriber finds it retained.
    watcher = broker.client(uid("watch"), version=version)
    deadline = time.monotonic() + 5
    while True:
        s = broker.raw(version=version, connect=uid("late"))
        s.subscribe(topic, qos=1)
        try:
            p = s.expect_publish(timeout=0.3)
            break
        except AssertionError:
            s.disconnect()
            assert time.monotonic() < deadline, "retained will never appeared"
    assert p.retain and p.payload == b"last"
    del watcher


def test_no_will_on_normal_disconnect(broker, version, uid):
    """MQTT-3.1.2-10 / 3.14.4: DISCONNECT (0x00) discards the will."""
    topic = uid("will")
    sub = broker.client(uid("sub"), version=version)
    sub.subscribe(topic, qos=1)
    r = will_owner(broker, version, uid("owner"), {"topic": topic, "payload": b"no", "qos": 1})
    r.disconnect()
    sub.expect_no_message(1.0)


def test_will_on_v5_disconnect_with_will_message(broker, uid):
    """3.14.2.1: DISCONNECT reason 0x04 asks the server to publish the will."""
    topic = uid("will")
    sub = broker.client(uid("sub"))
    sub.subscribe(topic, qos=1)
    r = will_owner(broker, V5, uid("owner"), {"topic": topic, "payload": b"asked", "qos": 1})
    r.disconnect(0x04)
    assert sub.expect_message().payload == b"asked"


def test_will_on_protocol_error(broker, version, uid):
    """The server closing the connection for a protocol error publishes the will."""
    topic = uid("will")
    sub = broker.client(uid("sub"), version=version)
    sub.subscribe(topic, qos=1)
    r = will_owner(broker, version, uid("owner"), {"topic": topic, "payload": b"err", "qos": 1})
    r.send(bytes([0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01]))  # PUBLISH with QoS 3
    r.wait_closed()
    assert sub.expect_message().payload == b"err"


def test_will_on_takeover_v5(broker, uid):
    """MQTT-3.1.4-3 + 3.1.2.5: the taken-over connection's will is published (delay 0)."""
    topic, cid = uid("will"), uid("owner")
    sub = broker.client(uid("sub"))
    sub.subscribe(topic, qos=1)
    r = will_owner(broker, V5, cid, {"topic": topic, "payload": b"taken", "qos": 1})
    broker.raw(connect=cid)
    r.wait_closed()  # the 0x8E itself is checked in test_takeover.py
    assert sub.expect_message().payload == b"taken"


def test_will_delay(broker, uid):
    """3.1.3.2.2: the will waits for the Will Delay Interval."""
    topic = uid("will")
    sub = broker.client(uid("sub"))
    sub.subscribe(topic, qos=1)
    r = will_owner(broker, V5, uid("owner"),
                   {"topic": topic, "payload": b"late", "qos": 1, "props": {"will_delay_interval": 3}},
                   clean=True, props={"session_expiry_interval": 60})
    r.close()
    sub.expect_no_message(1.5)
    assert sub.expect_message(timeout=5).payload == b"late"


def test_will_delay_cancelled_by_reconnect(broker, uid):
    """MQTT-3.1.3-9: a new connection to the session within the delay cancels the will."""
    topic, cid = uid("will"), uid("owner")
    sub = broker.client(uid("sub"))
    sub.subscribe(topic, qos=1)
    r = will_owner(broker, V5, cid,
                   {"topic": topic, "payload": b"cancelled", "qos": 1, "props": {"will_delay_interval": 2}},
                   clean=True, props={"session_expiry_interval": 60})
    r.close()
    time.sleep(0.3)
    r2 = broker.raw()
    assert r2.connect(cid, clean=False, props={"session_expiry_interval": 60}).session_present
    sub.expect_no_message(3.5)


def test_will_delay_with_session_expiry_zero(broker, uid):
    """Session Expiry 0 ends the session at disconnect, so the will goes out then, not after the
    delay (3.1.3.2.2: 'or the Session ends, whichever happens first'; paho test_will_delay)."""
    topic = uid("will")
    sub = broker.client(uid("sub"))
    sub.subscribe(topic, qos=1)
    r = will_owner(broker, V5, uid("owner"),
                   {"topic": topic, "payload": b"now", "qos": 1, "props": {"will_delay_interval": 30}},
                   clean=True)
    r.close()
    assert sub.expect_message(timeout=3).payload == b"now"


def test_will_delay_longer_than_session_expiry(broker, uid):
    topic = uid("will")
    sub = broker.client(uid("sub"))
    sub.subscribe(topic, qos=1)
    r = will_owner(broker, V5, uid("owner"),
                   {"topic": topic, "payload": b"session-end", "qos": 1, "props": {"will_delay_interval": 60}},
                   clean=True, props={"session_expiry_interval": 1})
    r.close()
    assert sub.expect_message(timeout=6).payload == b"session-end"


def test_will_properties_passed_through(broker, uid):
    """3.1.3.2: will properties reach subscribers unchanged (expiry counts down)."""
    topic = uid("will")
    sub = broker.client(uid("sub"))
    sub.subscribe(topic, qos=1)
    props = {
        "payload_format_indicator": 1,
        "message_expiry_interval": 100,
        "content_type": "application/json",
        "response_topic": "reply/here",
        "correlation_data": b"\x00\xffcorr",
        "user_property": [("a", "1"), ("b", "2"), ("a", "3")],
    }
    r = will_owner(broker, V5, uid("owner"),
                   {"topic": topic, "payload": b'{"bye":1}', "qos": 1, "props": props})
    r.close()
    m = sub.expect_message()
    assert m.payload == b'{"bye":1}'
    for k in ("payload_format_indicator", "content_type", "response_topic", "correlation_data",
              "user_property"):
        assert m.props.get(k) == props[k], (k, m.props)
    assert 0 < m.props.get("message_expiry_interval", 0) <= 100
