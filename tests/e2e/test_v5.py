"""MQTT 5 features: client ids, topic aliases, flow control, packet size, expiry,
No Local, subscription identifiers, properties, request/response."""
import threading
import time

import pytest

import mqttraw
from conftest import IS_MOSQUITTO
from mqttraw import CONNACK, DISCONNECT, PUBACK, PUBLISH, PUBREC, V311, V5

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------- client identifiers

def test_assigned_client_identifier(broker):
    """MQTT-3.2.2-16: an empty client id gets an Assigned Client Identifier."""
    ids = []
    for _ in range(2):
        r = broker.raw()
        ack = r.connect("", clean=True)
        cid = ack.props.get("assigned_client_identifier")
        assert cid, ack
        ids.append(cid)
    assert ids[0] != ids[1]


def test_assigned_client_identifier_usable_for_resume(broker, uid):
    r = broker.raw()
    ack = r.connect("", clean=False, props={"session_expiry_interval": 60})
    cid = ack.props["assigned_client_identifier"]
    topic = uid("t")
    r.subscribe(topic, qos=1)
    r.disconnect()
    broker.client(uid("pub")).publish(topic, "for-assigned", qos=1)
    r = broker.raw()
    assert r.connect(cid, clean=False, props={"session_expiry_interval": 60}).session_present
    assert r.expect_publish().payload == b"for-assigned"


def test_v311_empty_client_id_needs_clean_session(broker):
    """MQTT-3.1.3-8: empty id with CleanSession=0 -> CONNACK 0x02, then close."""
    r = broker.raw(version=V311)
    ack = r.connect("", clean=False, expect_rc=None)
    assert ack.rc == 0x02 and not ack.session_present
    r.wait_closed()
    r = broker.raw(version=V311)
    assert r.connect("", clean=True).rc == 0  # MQTT-3.1.3-6


def test_connack_capabilities(broker):
    """Features the broker offers are not announced as unavailable (3.2.2.3)."""
    ack = broker.raw().connect("", clean=True)
    for k in ("retain_available", "wildcard_subscription_available",
              "subscription_identifier_available", "shared_subscription_available"):
        assert ack.props.get(k, 1) == 1, (k, ack)
    assert ack.props.get("maximum_qos", 2) == 2


# ---------------------------------------------------------------- topic aliases

def test_topic_alias_client_to_server(broker, uid):
    t1, t2 = uid("alias1"), uid("alias2")
    sub = broker.client(uid("sub"))
    sub.subscribe([t1, t2], qos=1)
    r = broker.raw()
    ack = r.connect(uid("pub"))
    assert ack.props.get("topic_alias_maximum", 0) >= 1, f"broker offers no topic aliases: {ack}"
    r.publish(t1, b"a", qos=1, props={"topic_alias": 1})
    r.publish("", b"b", qos=1, props={"topic_alias": 1})
    r.publish(t2, b"c", qos=1, props={"topic_alias": 1})  # re-map alias 1
    r.publish("", b"d", qos=0, props={"topic_alias": 1})
    got = [(m.topic, m.payload) for m in sub.expect_messages(4)]
    assert got == [(t1, b"a"), (t1, b"b"), (t2, b"c"), (t2, b"d")]


@pytest.mark.parametrize("case", ["zero", "above_max"])
def test_topic_alias_invalid(broker_factory, uid, case):
    """3.3.2.3.4: alias 0 or above the Topic Alias Maximum is an error: DISCONNECT 0x94
    (Topic Alias invalid). The spec names 0x94 for 'greater than the maximum'; for 0 it
    gives no code, so another broker may use 0x81/0x82 there; ringmq uses 0x94 for both."""
    b = broker_factory(config={"mqtt": {"max_topic_alias": 10}})
    r = b.raw()
    ack = r.connect(uid("pub"))
    tam = ack.props.get("topic_alias_maximum", 0)
    assert tam == 10, ack
    alias = 0 if case == "zero" else tam + 1
    r.send(mqttraw.publish(uid("t"), b"x", qos=1, pid=1, props={"topic_alias": alias}))
    if case == "zero" and IS_MOSQUITTO:
        r.expect_disconnect({0x94, 0x82, 0x81})
    else:
        r.expect_disconnect(0x94)
    b.check_alive()


def test_topic_alias_unknown_mapping(broker, uid):
    """3.3.2.3.4: an empty topic with an alias that has no mapping is a Protocol Error."""
    r = broker.raw()
    ack = r.connect(uid("pub"))
    assert ack.props.get("topic_alias_maximum", 0) >= 1
    r.send(mqttraw.publish("", b"x", qos=1, pid=1, props={"topic_alias": 1}))
    r.expect_disconnect(0x82)
    broker.check_alive()


def test_no_alias_sent_without_client_topic_alias_maximum(broker, uid):
    """MQTT-3.3.2-9: Topic Alias Maximum 0 (absent) -> the server sends no aliases."""
    topic = uid("t")
    s = broker.raw(connect=uid("sub"))
    s.subscribe(topic, qos=1)
    pub = broker.client(uid("pub"))
    for i in range(3):
        pub.publish(topic, str(i), qos=1)
    for i in range(3):
        p = s.expect_publish()
        assert p.topic == topic and "topic_alias" not in p.props, p
        s.ack(p)


@pytest.mark.ringmq_only("server-to-client topic aliases are optional; ringmq uses them")
def test_topic_alias_server_to_client(broker, uid):
    topic = uid("long/topic/name/for/aliasing")
    s = broker.raw(connect=uid("sub"), props={"topic_alias_maximum": 4})
    s.subscribe(topic, qos=1)
    pub = broker.client(uid("pub"))
    for i in range(3):
        pub.publish(topic, str(i), qos=1)
    first = s.expect_publish()
    s.ack(first)
    assert first.topic == topic and 1 <= first.props.get("topic_alias", 0) <= 4, first
    alias = first.props["topic_alias"]
    for i in (1, 2):
        p = s.expect_publish()
        s.ack(p)
        assert p.payload == str(i).encode()
        assert p.topic == "" and p.props.get("topic_alias") == alias, p


# ---------------------------------------------------------------- flow control

def test_receive_maximum_limits_inflight_to_client(broker, uid):
    """MQTT-3.3.4-9: never more unacknowledged QoS 1 PUBLISHes than the client's Receive Maximum."""
    topic = uid("rm")
    s = broker.raw(connect=uid("sub"), props={"receive_maximum": 2})
    s.subscribe(topic, qos=1)
    pub = broker.client(uid("pub"))
    for i in range(10):
        pub.publish(topic, str(i), qos=1)
    held = [s.expect_publish(), s.expect_publish()]
    s.expect_nothing(0.7)
    got = [p.payload for p in held]
    for _ in range(8):
        s.ack(held.pop(0))
        held.append(s.expect_publish())
        got.append(held[-1].payload)
        s.expect_nothing(0.2)
    assert got == [str(i).encode() for i in range(10)]
    for p in held:
        s.ack(p)
    s.expect_nothing(0.3)


def test_receive_maximum_qos2_counts_until_pubcomp(broker, uid):
    """QoS 2 messages stay in the window until PUBCOMP (4.9)."""
    topic = uid("rm2")
    s = broker.raw(connect=uid("sub"), props={"receive_maximum": 1})
    s.subscribe(topic, qos=2)
    pub = broker.client(uid("pub"))
    for i in range(3):
        pub.publish(topic, str(i), qos=2)
    p = s.expect_publish()
    s.send(mqttraw.pubrec(p.pid))
    assert s.wait_for(mqttraw.PUBREL, p.pid)
    s.expect_nothing(0.5)  # PUBREC alone does not free the slot
    s.send(mqttraw.pubcomp(p.pid))
    p2 = s.expect_publish()
    assert p2.payload == b"1"


def test_client_exceeding_receive_maximum_disconnected(broker_factory, uid):
    """MQTT-3.3.4-7/-8 (3.2.2.3.3): more unacknowledged QoS 2 PUBLISHes than the server's
    Receive Maximum -> DISCONNECT 0x93."""
    b = broker_factory(config={"mqtt": {"max_inflight": 10}})
    r = b.raw()
    ack = r.connect(uid("flood"))
    rm = ack.props.get("receive_maximum", 65535)
    topic = uid("t")
    data = b"".join(mqttraw.publish(topic, b"x", qos=2, pid=i + 1) for i in range(rm + 1))
    r.send(data)
    got = r.wait_closed(timeout=10)
    recs = [p for p in got if p.type == PUBREC]
    assert len(recs) <= rm, f"{len(recs)} PUBRECs for receive maximum {rm}"
    discs = [p for p in got if p.type == DISCONNECT]
    assert discs and discs[-1].rc == 0x93, got[-3:]
    b.check_alive()


def test_client_maximum_packet_size_respected(broker, uid):
    """MQTT-3.1.2-25: a message larger than the client's Maximum Packet Size is not sent to it
    (and is discarded for that client only)."""
    topic = uid("mps")
    small = broker.raw(connect=uid("small"), props={"maximum_packet_size": 200})
    small.subscribe(topic, qos=1)
    big = broker.client(uid("big"))
    big.subscribe(topic, qos=1)
    pub = broker.client(uid("pub"))
    pub.publish(topic, b"L" * 500, qos=1)
    pub.publish(topic, b"small", qos=1)
    p = small.expect_publish()
    assert p.payload == b"small" and len(p.raw) <= 200
    small.ack(p)
    small.expect_nothing(0.5)
    assert [m.payload for m in big.expect_messages(2)] == [b"L" * 500, b"small"]


def test_server_maximum_packet_size_announced(broker_factory, uid):
    b = broker_factory(config={"mqtt": {"max_packet_size": 4096}})
    ack = b.raw().connect(uid("c"))
    assert ack.props.get("maximum_packet_size") == 4096, ack


# ---------------------------------------------------------------- message expiry

def test_message_expiry_queued(broker, uid):
    """MQTT-3.3.2-5/-6: expired queued messages are dropped; the rest carry the remaining time."""
    cid, topic = uid("exp"), uid("t")
    s = broker.raw(connect=cid, clean=False, props={"session_expiry_interval": 60})
    s.subscribe(topic, qos=1)
    s.disconnect()
    pub = broker.client(uid("pub"))
    pub.publish(topic, "short", qos=1, props={"message_expiry_interval": 1})
    pub.publish(topic, "long", qos=1, props={"message_expiry_interval": 60})
    pub.publish(topic, "forever", qos=1)
    time.sleep(2.2)
    s = broker.raw()
    assert s.connect(cid, clean=False, props={"session_expiry_interval": 60}).session_present
    a = s.expect_publish()
    s.ack(a)
    b = s.expect_publish()
    s.ack(b)
    assert (a.payload, b.payload) == (b"long", b"forever")
    assert 0 < a.props["message_expiry_interval"] <= 58, a
    assert "message_expiry_interval" not in b.props
    s.expect_nothing(0.3)


def test_message_expiry_live_delivery_keeps_property(broker, uid):
    topic = uid("t")
    s = broker.client(uid("s"))
    s.subscribe(topic, qos=1)
    broker.client(uid("pub")).publish(topic, "x", qos=1, props={"message_expiry_interval": 30})
    assert 0 < s.expect_message().props.get("message_expiry_interval", 0) <= 30


# ---------------------------------------------------------------- subscription options

def test_no_local(broker, uid):
    """MQTT-3.8.3-3: No Local stops a client's own messages coming back to it."""
    topic = uid("nl")
    me = broker.client(uid("me"))
    me.subscribe(topic, qos=1, no_local=True)
    control = broker.client(uid("control"))
    control.subscribe(topic, qos=1, no_local=False)
    me.publish(topic, "mine", qos=1)
    assert control.expect_message().text == "mine"
    me.expect_no_message(0.5)
    control.publish(topic, "theirs", qos=1)
    assert me.expect_message().text == "theirs"
    # Without No Local, the publisher receives its own message.
    assert control.expect_message().text == "theirs"


def test_subscription_identifiers(broker, uid):
    p = uid("sid")
    s = broker.raw(connect=uid("s"))
    s.subscribe(f"{p}/a", qos=1, props={"subscription_identifier": 7})
    s.subscribe(f"{p}/b", qos=1)
    s.subscribe(f"{p}/c/+", qos=1, props={"subscription_identifier": 268435455})
    pub = broker.client(uid("pub"))
    pub.publish(f"{p}/a", "a", qos=1)
    pub.publish(f"{p}/b", "b", qos=1)
    pub.publish(f"{p}/c/x", "c", qos=1)
    got = {}
    for _ in range(3):
        m = s.expect_publish()
        s.ack(m)
        got[m.payload] = m.props.get("subscription_identifier")
    assert got == {b"a": [7], b"b": None, b"c": [268435455]}
    # Re-subscribing replaces the identifier (3.8.2.1.2).
    s.subscribe(f"{p}/a", qos=1, props={"subscription_identifier": 9})
    pub.publish(f"{p}/a", "a2", qos=1)
    m = s.expect_publish()
    assert m.props.get("subscription_identifier") == [9]


def test_subscription_identifier_kept_in_session(broker, uid):
    cid, topic = uid("c"), uid("t")
    s = broker.raw(connect=cid, clean=False, props={"session_expiry_interval": 60})
    s.subscribe(topic, qos=1, props={"subscription_identifier": 42})
    s.disconnect()
    broker.client(uid("pub")).publish(topic, "q", qos=1)
    s = broker.raw()
    assert s.connect(cid, clean=False, props={"session_expiry_interval": 60}).session_present
    m = s.expect_publish()
    assert m.props.get("subscription_identifier") == [42]


# ---------------------------------------------------------------- properties

def test_publish_properties_passed_through(broker, uid):
    """3.3.2.3: these properties reach the subscriber unaltered; user property order kept (MQTT-3.3.2-18)."""
    topic = uid("props")
    s = broker.client(uid("s"))
    s.subscribe(topic, qos=2)
    props = {
        "payload_format_indicator": 1,
        "content_type": "text/plain; charset=utf-8",
        "response_topic": "responses/" + topic,
        "correlation_data": bytes(range(256)),
        "user_property": [("z", "1"), ("a", "2"), ("z", "3"), ("", "")],
    }
    for qos in (0, 1, 2):
        broker.client(uid("pub")).publish(topic, "héllo", qos=qos, props=props)
        m = s.expect_message()
        assert m.payload == "héllo".encode()
        for k, v in props.items():
            assert m.props.get(k) == v, (qos, k, m.props)


def test_request_response(broker, uid):
    req_topic, resp_topic = uid("req"), uid("resp")
    responder = broker.client(uid("responder"))
    responder.subscribe(req_topic, qos=1)
    requester = broker.client(uid("requester"))
    requester.subscribe(resp_topic, qos=1)

    def serve():
        for _ in range(3):
            m = responder.expect_message()
            responder.publish(m.props["response_topic"], b"re:" + m.payload, qos=1,
                              props={"correlation_data": m.props["correlation_data"]})

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    for i in range(3):
        requester.publish(req_topic, f"q{i}", qos=1,
                          props={"response_topic": resp_topic, "correlation_data": f"id-{i}".encode()})
    replies = {m.props.get("correlation_data"): m.payload for m in requester.expect_messages(3)}
    t.join(5)
    assert replies == {f"id-{i}".encode(): f"re:q{i}".encode() for i in range(3)}
