"""Connect, publish/subscribe at every QoS, ordering, wildcards, $-topics, unsubscribe."""
import pytest

from conftest import IS_MOSQUITTO
import mqttraw
from mqttraw import PUBLISH, V5

pytestmark = pytest.mark.timeout(60)


def test_connect_connack(broker, version, uid):
    r = broker.raw(version=version)
    ack = r.connect(uid("cid"), clean=True)
    assert ack.rc == 0 and not ack.session_present
    r.ping()
    r.disconnect()


def test_paho_connect(broker, version, uid):
    c = broker.client(uid("paho"), version=version)
    assert c.connack_rc == 0 and c.session_present is False
    c.disconnect()


@pytest.mark.parametrize("sub_qos", [0, 1, 2])
def test_qos_delivery_is_min_of_sub_and_pub(broker, version, uid, sub_qos):
    """MQTT-3.8.4-6 / 3.3.4: delivered QoS = min(publish QoS, granted QoS); each message exactly once."""
    topic = uid("qos")
    sub = broker.raw(version=version, connect=uid("sub"))
    ack = sub.subscribe(topic, qos=sub_qos)
    assert ack.rcs == [sub_qos]
    pub = broker.client(uid("pub"), version=version)
    for q in (0, 1, 2):
        pub.publish(topic, f"q{q}", qos=q)
    got = {}
    for _ in range(3):
        p = sub.expect_publish()
        assert p.topic == topic
        assert p.payload not in got, f"duplicate delivery {p!r}"
        got[p.payload] = p
        assert not p.dup
        sub.ack(p)
    for q in (0, 1, 2):
        assert got[f"q{q}".encode()].qos == min(q, sub_qos), got
    sub.expect_nothing(0.5)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_order_per_publisher(broker, version, uid, qos):
    """4.6: messages from one publisher on one topic arrive in the order sent."""
    topic = uid("order")
    n = 100
    sub = broker.client(uid("sub"), version=version)
    sub.subscribe(topic, qos=2)
    pub = broker.raw(version=version, connect=uid("pub"))
    pub.publish_many([(topic, str(i).encode()) for i in range(n)], qos=qos)
    got = sub.expect_messages(n, timeout=10)
    assert [m.text for m in got] == [str(i) for i in range(n)]
    assert all(m.qos == qos for m in got)
    sub.expect_no_message(0.3)


WILDCARD_CASES = [
    # filter, topic, matches
    ("{p}/+/c", "{p}/b/c", True),
    ("{p}/+/c", "{p}/b/c/d", False),
    ("{p}/+/c", "{p}/c", False),
    ("{p}/+", "{p}/", True),            # empty level matches +
    ("{p}/#", "{p}", True),             # parent level matches /# (MQTT-4.7.1-2 note)
    ("{p}/#", "{p}/x/y/z", True),
    ("{p}/+/+", "{p}/a", False),
    ("+/{p}/x", "a/{p}/x", True),
    ("{p}/a", "{p}/A", False),          # case sensitive
    ("{p}/a b", "{p}/a b", True),       # spaces are ordinary characters
    ("{p}//x", "{p}//x", True),
    ("{p}/+/+/d", "{p}/a//d", True),
]


def test_wildcards(broker, version, uid):
    p = uid("wild")
    subs = []
    for i, (flt, _topic, _m) in enumerate(WILDCARD_CASES):
        s = broker.client(uid(f"w{i}"), version=version)
        s.subscribe(flt.format(p=p), qos=1)
        subs.append(s)
    pub = broker.client(uid("pub"), version=version)
    for i, (_flt, topic, _m) in enumerate(WILDCARD_CASES):
        pub.publish(topic.format(p=p), f"case{i}", qos=1)
    # Every subscriber gets exactly the cases whose topic its filter matches; cases
    # sharing a filter string are matched by each other's subscribers too.
    for i, (flt, _topic, _m) in enumerate(WILDCARD_CASES):
        expected = sorted(f"case{j}" for j, (f2, t2, m2) in enumerate(WILDCARD_CASES)
                          if _matches(flt.format(p=p), t2.format(p=p)))
        assert (f"case{i}" in expected) == WILDCARD_CASES[i][2], "table and matcher disagree"
        got = sorted(m.text for m in subs[i].expect_messages(len(expected))) if expected else []
        subs[i].expect_no_message(0.2)
        assert got == expected, f"filter {flt.format(p=p)!r}"


def _matches(flt: str, topic: str) -> bool:
    f, t = flt.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)


def test_dollar_topics_not_matched_by_leading_wildcards(broker, version, uid):
    """MQTT-4.7.2-1: # and + at the start do not match topics beginning with $."""
    name = uid("dollar").replace("-", "")
    hash_sub = broker.client(uid("hash"), version=version)
    hash_sub.subscribe("#", qos=1)
    plus_sub = broker.client(uid("plus"), version=version)
    plus_sub.subscribe(["+/bar", "+/+", "+"], qos=1)
    explicit = broker.client(uid("explicit"), version=version)
    explicit.subscribe(f"${name}/#", qos=1)
    pub = broker.client(uid("pub"), version=version)
    pub.publish(f"${name}/bar", "dollar", qos=1)
    pub.publish("$SYS/ringmq-test-" + name, "sys", qos=1)
    # A positive control: the $ message was accepted and routed.
    m = explicit.expect_message()
    assert m.topic == f"${name}/bar"
    pub.publish(f"{name}/bar", "plain", qos=1)
    assert hash_sub.expect_message().text == "plain"
    for s in (hash_sub, plus_sub):
        got = s.drain(settle=0.5)
        assert not [g for g in got if g.topic.startswith("$")], got


def test_unsubscribe_stops_delivery(broker, version, uid):
    topic = uid("unsub")
    sub = broker.client(uid("sub"), version=version)
    sub.subscribe([topic, topic + "/other"], qos=1)
    pub = broker.client(uid("pub"), version=version)
    pub.publish(topic, "before", qos=1)
    assert sub.expect_message().text == "before"
    rcs = sub.unsubscribe(topic)
    if version == 5:
        assert rcs == [0x00]
    pub.publish(topic, "after", qos=1)
    pub.publish(topic + "/other", "still", qos=1)
    m = sub.expect_message()
    assert m.text == "still", "unsubscribed filter still delivered"
    sub.expect_no_message(0.3)


def test_unsuback_v5_reason_codes(broker, uid):
    """3.11.3: UNSUBACK 0x00 for an existing subscription, 0x11 for none."""
    topic = uid("unsub5")
    r = broker.raw(connect=uid("c"))
    r.subscribe(topic, qos=1)
    ack = r.unsubscribe([topic, topic + "/never"])
    assert ack.rcs == [0x00, 0x11]
    ack = r.unsubscribe(topic)
    assert ack.rcs == [0x11]


def test_unsuback_v311(broker, uid):
    r = broker.raw(version=4, connect=uid("c"))
    ack = r.unsubscribe([uid("x"), uid("y")])
    assert ack.rcs == [] and ack.raw[1] == 2, "3.1.1 UNSUBACK has only a packet id"


def test_subscribe_multiple_filters_suback(broker, version, uid):
    p = uid("multi")
    r = broker.raw(version=version, connect=uid("c"))
    ack = r.subscribe([(f"{p}/a", 0), (f"{p}/b", 1), (f"{p}/c/#", 2)])
    assert ack.rcs == [0, 1, 2]


def test_resubscribe_replaces_subscription(broker, version, uid):
    """MQTT-3.8.4-3: a SUBSCRIBE for an existing filter replaces it (new QoS, still one copy)."""
    topic = uid("resub")
    sub = broker.raw(version=version, connect=uid("sub"))
    sub.subscribe(topic, qos=2)
    sub.subscribe(topic, qos=0)
    pub = broker.client(uid("pub"), version=version)
    pub.publish(topic, "x", qos=2)
    p = sub.expect_publish()
    assert p.qos == 0 and p.payload == b"x"
    sub.expect_nothing(0.5)


def test_overlapping_subscriptions_v311(broker, uid):
    """MQTT-3.3.5-1: overlapping filters deliver at the highest granted QoS.
    ringmq sends exactly one copy (the spec allows more)."""
    p = uid("overlap")
    sub = broker.raw(version=4, connect=uid("sub"))
    sub.subscribe([(f"{p}/+", 1), (f"{p}/#", 2), (f"{p}/x", 0)])
    pub = broker.client(uid("pub"), version=4)
    pub.publish(f"{p}/x", "m", qos=2)
    copies = []
    while True:
        try:
            copies.append(sub.expect_publish(timeout=1.0 if not copies else 0.5))
        except AssertionError:
            break
        sub.ack(copies[-1])
    assert copies, "no copy delivered"
    assert max(c.qos for c in copies) == 2, copies
    assert all(c.payload == b"m" for c in copies)
    if not IS_MOSQUITTO:
        assert len(copies) == 1, f"ringmq sends one copy per client: {copies}"


def test_overlapping_subscriptions_v5_one_copy_all_ids(broker, uid):
    """MQTT-3.3.4-2/-4: one copy at the maximum QoS carrying every matching subscription identifier."""
    p = uid("overlap5")
    sub = broker.raw(connect=uid("sub"))
    assert sub.subscribe(f"{p}/+", qos=1, props={"subscription_identifier": 1}).rcs == [1]
    assert sub.subscribe(f"{p}/#", qos=2, props={"subscription_identifier": 2}).rcs == [2]
    assert sub.subscribe(f"{p}/x", qos=0).rcs == [0]
    pub = broker.raw(connect=uid("pub"))
    pub.publish(f"{p}/x", b"m", qos=2)
    first = sub.expect_publish()
    sub.ack(first)
    more = []
    try:
        while True:
            more.append(sub.expect_publish(timeout=0.7))
            sub.ack(more[-1])
    except AssertionError:
        pass
    copies = [first] + more
    assert max(c.qos for c in copies) == 2, copies
    if len(copies) > 1 and IS_MOSQUITTO:
        # MQTT-3.3.4-5 allows one copy per matching subscription, each with its own id.
        ids = sorted(i for c in copies for i in c.props.get("subscription_identifier", []))
        assert ids == [1, 2], copies
        assert all(len(c.props.get("subscription_identifier", [])) <= 1 for c in copies), copies
        return
    assert len(copies) == 1, f"ringmq sends a single copy, got {copies}"
    assert first.qos == 2
    assert sorted(first.props.get("subscription_identifier", [])) == [1, 2], first


def test_qos2_duplicate_publish_delivered_once(broker, version, uid):
    """4.3.3: a QoS 2 PUBLISH resent with DUP=1 before PUBREL is not delivered twice."""
    topic = uid("q2dup")
    sub = broker.raw(version=version, connect=uid("sub"))
    sub.subscribe(topic, qos=2)
    pub = broker.raw(version=version, connect=uid("pub"))
    pub.send(mqttraw.publish(topic, b"once", qos=2, pid=5, version=version))
    assert pub.wait_for(mqttraw.PUBREC, 5)
    pub.send(mqttraw.publish(topic, b"once", qos=2, pid=5, dup=True, version=version))
    assert pub.wait_for(mqttraw.PUBREC, 5)
    pub.send(mqttraw.pubrel(5, version=version))
    assert pub.wait_for(mqttraw.PUBCOMP, 5).rc == 0
    p = sub.expect_publish()
    assert p.payload == b"once"
    sub.ack(p)
    sub.expect_nothing(0.5)


def test_qos2_pubrel_after_reconnect_completes_once(broker, version, uid):
    """MQTT-4.4.0-1: the publisher's QoS 2 state survives a reconnect; the message goes out once."""
    topic, cid = uid("q2re"), uid("pub")
    sub = broker.raw(version=version, connect=uid("sub"))
    sub.subscribe(topic, qos=2)
    kw = {"clean": False, "props": {"session_expiry_interval": 60}} if version == 5 else {"clean": False}
    pub = broker.raw(version=version, connect=cid, **kw)
    pub.send(mqttraw.publish(topic, b"survives", qos=2, pid=9, version=version))
    assert pub.wait_for(mqttraw.PUBREC, 9)
    pub.close()
    pub = broker.raw(version=version)
    assert pub.connect(cid, **kw).session_present
    pub.send(mqttraw.pubrel(9, version=version))
    comp = pub.wait_for(mqttraw.PUBCOMP, 9)
    assert comp.rc == 0, comp
    got = []
    while True:
        try:
            p = sub.expect_publish(timeout=0.7)
        except AssertionError:
            break
        sub.ack(p)
        got.append(p.payload)
    assert got == [b"survives"]


def test_large_payload(broker, version, uid):
    """A ~1 MB message (under the 1 MiB max_packet_size) passes intact."""
    topic = uid("big")
    sub = broker.client(uid("sub"), version=version)
    sub.subscribe(topic, qos=1)
    payload = bytes(range(256)) * 4000  # 1,024,000 bytes
    broker.raw(version=version, connect=uid("pub"), timeout=10).publish(topic, payload, qos=1)
    m = sub.expect_message(timeout=10)
    assert m.payload == payload


def test_many_filters_one_subscribe(broker, version, uid):
    p = uid("many")
    r = broker.raw(version=version, connect=uid("sub"))
    ack = r.subscribe([(f"{p}/{i}", 1) for i in range(300)])
    assert ack.rcs == [1] * 300
    pub = broker.client(uid("pub"), version=version)
    for i in (0, 150, 299):
        pub.publish(f"{p}/{i}", str(i), qos=1)
    got = []
    for _ in range(3):
        m = r.expect_publish()
        r.ack(m)
        got.append(m.payload)
    assert got == [b"0", b"150", b"299"]


def test_unicode_topics(broker, version, uid):
    base = uid("uni")
    topics = [f"{base}/温度/センサー", f"{base}/😀/x", f"{base}/ä ö ü"]
    sub = broker.client(uid("sub"), version=version)
    sub.subscribe(f"{base}/#", qos=1)
    sub2 = broker.client(uid("sub2"), version=version)
    sub2.subscribe(f"{base}/+/センサー", qos=1)
    pub = broker.client(uid("pub"), version=version)
    for t in topics:
        pub.publish(t, t, qos=1)
    assert [m.topic for m in sub.expect_messages(3)] == topics
    assert sub2.expect_message().topic == topics[0]
    sub2.expect_no_message(0.3)
