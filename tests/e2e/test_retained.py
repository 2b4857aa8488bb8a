"""Retained messages: store, replace, clear, lookup on subscribe, flags, Retain Handling, RAP."""
import time

import pytest

from mqttraw import sub_options

pytestmark = pytest.mark.timeout(60)


def test_retained_set_replace_clear(broker, version, uid):
    topic = uid("ret")
    pub = broker.client(uid("pub"), version=version)
    pub.publish(topic, "v1", qos=1, retain=True)
    a = broker.raw(version=version, connect=uid("a"))
    a.subscribe(topic, qos=1)
    p = a.expect_publish()
    assert (p.payload, p.retain, p.qos) == (b"v1", True, 1)
    a.ack(p)
    a.expect_nothing(0.3)

    pub.publish(topic, "v2", qos=1, retain=True)
    # The live copy to the existing subscriber is not flagged retained (MQTT-3.3.1-9/-12).
    p = a.expect_publish()
    assert (p.payload, p.retain) == (b"v2", False)
    a.ack(p)
    b = broker.raw(version=version, connect=uid("b"))
    b.subscribe(topic, qos=1)
    p = b.expect_publish()
    assert (p.payload, p.retain) == (b"v2", True), "replaced retained message"
    b.ack(p)
    b.expect_nothing(0.3)

    # Empty payload clears (MQTT-3.3.1-10) and is itself not stored (MQTT-3.3.1-11),
    # but goes to current subscribers like any message.
    pub.publish(topic, b"", qos=1, retain=True)
    p = a.expect_publish()
    assert p.payload == b"" and p.retain is False
    a.ack(p)
    c = broker.raw(version=version, connect=uid("c"))
    c.subscribe(topic, qos=1)
    c.expect_nothing(0.5)


@pytest.mark.parametrize("pub_qos,sub_qos", [(2, 1), (0, 2), (1, 2)])
def test_retained_qos_is_min(broker, version, uid, pub_qos, sub_qos):
    topic = uid("retq")
    pub = broker.client(uid("pub"), version=version)
    pub.publish(topic, "r", qos=pub_qos, retain=True)
    s = broker.raw(version=version, connect=uid("s"))
    s.subscribe(topic, qos=sub_qos)
    p = s.expect_publish()
    assert p.retain and p.qos == min(pub_qos, sub_qos)
    s.ack(p)


def test_retained_wildcard_lookup(broker, version, uid):
    p = uid("retw")
    pub = broker.client(uid("pub"), version=version)
    topics = [f"{p}/a", f"{p}/b/c", f"{p}/b/d", f"{p}/e/c", f"{p}"]
    for t in topics:
        pub.publish(t, t, qos=1, retain=True)
    cases = {
        f"{p}/#": topics,
        f"{p}/+": [f"{p}/a"],
        f"{p}/b/+": [f"{p}/b/c", f"{p}/b/d"],
        f"{p}/+/c": [f"{p}/b/c", f"{p}/e/c"],
        f"{p}/x/#": [],
        "+": [f"{p}"],  # single-level topic
        "+/+/+/+": [],
    }
    for flt, want in cases.items():
        s = broker.raw(version=version, connect=uid("s"))
        s.subscribe(flt, qos=1)
        got = []
        for _ in want:
            m = s.expect_publish()
            assert m.retain and m.payload == m.topic.encode()
            got.append(m.topic)
            s.ack(m)
        s.expect_nothing(0.3)
        assert sorted(got) == sorted(want), flt
        s.disconnect()


def test_retained_on_every_new_subscribe_v311(broker, uid):
    """3.1.1 has no Retain Handling: a repeated SUBSCRIBE resends retained messages (MQTT-3.8.4-3)."""
    topic = uid("resub")
    broker.client(uid("pub"), version=4).publish(topic, "r", qos=1, retain=True)
    s = broker.raw(version=4, connect=uid("s"))
    for _ in range(2):
        s.subscribe(topic, qos=1)
        p = s.expect_publish()
        assert p.retain and p.payload == b"r"
        s.ack(p)


@pytest.mark.parametrize("rh", [0, 1, 2])
def test_retain_handling_v5(broker, uid, rh):
    """3.8.3.1: 0 = send on every subscribe, 1 = only if the subscription is new, 2 = never."""
    topic = uid("rh")
    broker.client(uid("pub")).publish(topic, "r", qos=1, retain=True)
    s = broker.raw(connect=uid("s"))
    for attempt, should_send in enumerate({0: (True, True), 1: (True, False), 2: (False, False)}[rh]):
        s.subscribe([(topic, sub_options(qos=1, rh=rh))])
        if should_send:
            p = s.expect_publish()
            assert p.retain and p.payload == b"r"
            s.ack(p)
        s.expect_nothing(0.4)


@pytest.mark.parametrize("rap", [False, True])
def test_retain_as_published_v5(broker, uid, rap):
    """MQTT-3.3.1-12/-13: live delivery keeps RETAIN=1 only with Retain As Published."""
    topic = uid("rap")
    s = broker.client(uid("s"))
    s.subscribe(topic, qos=1, rap=rap)
    pub = broker.client(uid("pub"))
    pub.publish(topic, "retained", qos=1, retain=True)
    pub.publish(topic, "plain", qos=1, retain=False)
    a, b = s.expect_messages(2)
    assert (a.text, a.retain) == ("retained", rap)
    assert (b.text, b.retain) == ("plain", False)
    # A retained message sent because of a new subscription always has RETAIN=1.
    s2 = broker.client(uid("s2"))
    s2.subscribe(topic, qos=1, rap=rap)
    m = s2.expect_message()
    assert m.text == "retained" and m.retain


def test_retained_properties_kept_v5(broker, uid):
    topic = uid("retp")
    props = {"content_type": "text/plain", "user_property": [("k", "v"), ("k", "w")],
             "payload_format_indicator": 1, "response_topic": "resp/x", "correlation_data": b"\x01\x02"}
    broker.client(uid("pub")).publish(topic, "r", qos=1, retain=True, props=props)
    s = broker.client(uid("s"))
    s.subscribe(topic, qos=1)
    m = s.expect_message()
    assert m.retain
    for k, v in props.items():
        assert m.props.get(k) == v, (k, m.props)


def test_retained_message_expiry_v5(broker, uid):
    """MQTT-3.3.2-5: an expired retained message is no longer sent to new subscribers."""
    topic = uid("retexp")
    pub = broker.client(uid("pub"))
    pub.publish(topic + "/short", "gone", qos=1, retain=True, props={"message_expiry_interval": 1})
    pub.publish(topic + "/long", "kept", qos=1, retain=True, props={"message_expiry_interval": 100})
    time.sleep(2.2)
    s = broker.client(uid("s"))
    s.subscribe(topic + "/#", qos=1)
    m = s.expect_message()
    assert m.text == "kept"
    assert m.props.get("message_expiry_interval", 0) <= 98, m.props
    s.expect_no_message(0.5)


def test_retained_latest_value_when_filter_already_subscribed(broker, uid):
    """A SUBSCRIBE to a filter that other clients on its shard already hold
    changes no routing interest; it must still see the retained value whose
    PUBACK the publisher already has (replicated from the publisher's shard),
    never an older one."""
    topic = uid("latest")
    # Holders on (very likely) both shards keep the filter's interest up.
    holders = [broker.raw(connect=uid(f"h{i}")) for i in range(8)]
    for h in holders:
        h.subscribe(topic, qos=0)
    pub = broker.raw(connect=uid("pub"))
    for k in range(30):
        pub.publish(topic, str(k).encode(), qos=1, retain=True)  # returns after PUBACK
        s = broker.raw(connect=uid(f"s{k}"))
        s.subscribe(topic, qos=0)
        p = s.expect_publish()
        assert (p.payload, p.retain) == (str(k).encode(), True), f"iteration {k}: got {p}"
        s.disconnect()
