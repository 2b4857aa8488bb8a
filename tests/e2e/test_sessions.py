"""Persistent sessions: resume, queued messages, redelivery with DUP, expiry."""
import time

import pytest

from mqttraw import PUBLISH, PUBREL, V5, pubrec

pytestmark = pytest.mark.timeout(60)


def persistent_kw(version, expiry=300):
    """CONNECT options for a session that outlives the connection."""
    if version == V5:
        return {"clean": False, "props": {"session_expiry_interval": expiry}}
    return {"clean": False}


def test_new_persistent_session_has_no_session_present(broker, version, uid):
    r = broker.raw(version=version)
    ack = r.connect(uid("fresh"), **persistent_kw(version))
    assert ack.session_present is False  # MQTT-3.2.2-2/-3: nothing to resume


def test_session_resumed_with_queued_messages(broker, version, uid):
    cid, topic = uid("pers"), uid("q")
    s = broker.raw(version=version)
    s.connect(cid, **persistent_kw(version))
    s.subscribe([(topic + "/1", 1), (topic + "/2", 2), (topic + "/0", 0)])
    s.disconnect()

    pub = broker.client(uid("pub"), version=version)
    for i in range(5):
        pub.publish(topic + "/1", f"one-{i}", qos=1)
        pub.publish(topic + "/2", f"two-{i}", qos=2)

    s = broker.raw(version=version)
    ack = s.connect(cid, **persistent_kw(version))
    assert ack.session_present is True
    got = {"1": [], "2": []}
    for _ in range(10):
        p = s.expect_publish()
        s.ack(p)
        got[p.topic.rsplit("/", 1)[1]].append((p.payload.decode(), p.qos))
    assert got["1"] == [(f"one-{i}", 1) for i in range(5)]
    assert got["2"] == [(f"two-{i}", 2) for i in range(5)]
    # Subscriptions survived too: live messages keep flowing without a new SUBSCRIBE.
    pub.publish(topic + "/2", "live", qos=2)
    p = s.expect_publish()
    assert p.payload == b"live"
    s.ack(p)
    s.expect_nothing(0.3)


def test_clean_session_discards_state(broker, version, uid):
    cid, topic = uid("clean"), uid("t")
    s = broker.raw(version=version)
    s.connect(cid, **persistent_kw(version))
    s.subscribe(topic, qos=1)
    s.disconnect()
    broker.client(uid("pub"), version=version).publish(topic, "lost", qos=1)
    s = broker.raw(version=version)
    ack = s.connect(cid, clean=True)
    assert ack.session_present is False
    s.expect_nothing(0.5)
    s.disconnect()
    # The clean session did not create a persistent one either (MQTT-3.1.2-6 / 3.1.2.4).
    s = broker.raw(version=version)
    ack = s.connect(cid, **persistent_kw(version))
    assert ack.session_present is False


def test_v5_session_expiry_zero_discards_session(broker, uid):
    cid, topic = uid("exp0"), uid("t")
    s = broker.raw(connect=cid, clean=False)  # no Session Expiry Interval property = 0
    s.subscribe(topic, qos=1)
    s.disconnect()
    broker.client(uid("pub")).publish(topic, "lost", qos=1)
    s = broker.raw()
    ack = s.connect(cid, clean=False, props={"session_expiry_interval": 60})
    assert ack.session_present is False
    s.expect_nothing(0.5)


@pytest.mark.parametrize("qos", [1, 2])
def test_unacked_publish_resent_with_dup(broker, version, uid, qos):
    """MQTT-4.4.0-1 / MQTT-3.3.1-1: unacknowledged PUBLISH resent on resume, same id, DUP=1."""
    cid, topic = uid("dup"), uid("t")
    s = broker.raw(version=version)
    s.connect(cid, **persistent_kw(version))
    s.subscribe(topic, qos=qos)
    broker.client(uid("pub"), version=version).publish(topic, "payload-1", qos=qos)
    first = s.expect_publish()
    assert first.dup is False and first.qos == qos
    s.close()  # no PUBACK / PUBREC

    s = broker.raw(version=version)
    ack = s.connect(cid, **persistent_kw(version))
    assert ack.session_present
    again = s.expect_publish()
    assert again.dup is True, again
    assert (again.pid, again.payload, again.qos, again.topic) == (first.pid, first.payload, qos, topic)
    s.ack(again)
    s.expect_nothing(0.5)


def test_unacked_pubrel_resent(broker, version, uid):
    """MQTT-4.4.0-1: after PUBREC the broker resends PUBREL (not PUBLISH) on resume."""
    cid, topic = uid("rel"), uid("t")
    s = broker.raw(version=version)
    s.connect(cid, **persistent_kw(version))
    s.subscribe(topic, qos=2)
    broker.client(uid("pub"), version=version).publish(topic, "x", qos=2)
    p = s.expect_publish()
    s.send(pubrec(p.pid, version=version))
    rel = s.expect(PUBREL)
    assert rel.pid == p.pid
    s.close()  # no PUBCOMP

    s = broker.raw(version=version)
    assert s.connect(cid, **persistent_kw(version)).session_present
    rel2 = s.recv_packet()
    assert rel2.type == PUBREL and rel2.pid == p.pid, f"expected PUBREL {p.pid}, got {rel2!r}"
    from mqttraw import pubcomp
    s.send(pubcomp(p.pid, version=version))
    s.expect_nothing(0.5)


def test_v5_disconnect_cannot_set_expiry_when_connect_had_zero(broker, uid):
    """MQTT-3.14.2-2: Session Expiry 0 in CONNECT, non-zero in DISCONNECT -> Protocol Error 0x82."""
    s = broker.raw(connect=uid("c"), clean=True)
    s.send(__import__("mqttraw").disconnect(0, {"session_expiry_interval": 30}))
    s.expect_disconnect(0x82)
    broker.check_alive()


def test_v5_disconnect_sets_expiry_zero_discards(broker, uid):
    cid, topic = uid("c"), uid("t")
    s = broker.raw(connect=cid, clean=False, props={"session_expiry_interval": 60})
    s.subscribe(topic, qos=1)
    s.disconnect(0, {"session_expiry_interval": 0})
    s = broker.raw()
    assert s.connect(cid, clean=False, props={"session_expiry_interval": 60}).session_present is False


def test_v5_disconnect_can_extend_expiry(broker, uid):
    cid, topic = uid("c"), uid("t")
    s = broker.raw(connect=cid, clean=False, props={"session_expiry_interval": 1})
    s.subscribe(topic, qos=1)
    s.disconnect(0, {"session_expiry_interval": 120})
    time.sleep(2.0)  # past the CONNECT value, within the DISCONNECT value
    broker.client(uid("pub")).publish(topic, "kept", qos=1)
    s = broker.raw()
    assert s.connect(cid, clean=False, props={"session_expiry_interval": 60}).session_present
    p = s.expect_publish()
    assert p.payload == b"kept"
    s.ack(p)


def test_v5_session_expires(broker, uid):
    """A session whose expiry interval has passed is gone: session present 0, nothing queued."""
    cid, topic = uid("c"), uid("t")
    s = broker.raw(connect=cid, clean=False, props={"session_expiry_interval": 1})
    s.subscribe(topic, qos=1)
    s.disconnect()
    broker.client(uid("pub")).publish(topic, "queued-then-expired", qos=1)
    time.sleep(3.0)
    s = broker.raw()
    ack = s.connect(cid, clean=False, props={"session_expiry_interval": 60})
    assert ack.session_present is False
    s.expect_nothing(0.5)


def test_v5_session_within_expiry_is_kept(broker, uid):
    cid, topic = uid("c"), uid("t")
    s = broker.raw(connect=cid, clean=False, props={"session_expiry_interval": 30})
    s.subscribe(topic, qos=1)
    s.close()  # abnormal close also keeps the session
    broker.client(uid("pub")).publish(topic, "queued", qos=1)
    s = broker.raw()
    assert s.connect(cid, clean=False, props={"session_expiry_interval": 30}).session_present
    assert s.expect_publish().payload == b"queued"


@pytest.mark.ringmq_only("mqtt.max_session_expiry_interval caps the interval and CONNACK says so")
def test_v5_session_expiry_capped(broker_factory, uid):
    b = broker_factory(config={"mqtt": {"max_session_expiry_interval": 100}})
    s = b.raw()
    ack = s.connect(uid("c"), clean=False, props={"session_expiry_interval": 100000})
    assert ack.props.get("session_expiry_interval") == 100, ack


def test_v311_message_order_across_resume(broker, uid):
    """Queued QoS 1 messages come out in publish order after resume, then live ones follow."""
    cid, topic = uid("c"), uid("t")
    s = broker.client(cid, version=4, clean=False)
    s.subscribe(topic, qos=1)
    s.disconnect()
    pub = broker.raw(version=4, connect=uid("pub"))
    pub.publish_many([(topic, str(i)) for i in range(31)], qos=1)
    s = broker.client(cid, version=4, clean=False)
    assert s.session_present
    pub.publish_many([(topic, str(i)) for i in range(31, 40)], qos=1)
    got = [m.text for m in s.expect_messages(40, timeout=10)]
    assert got == [str(i) for i in range(40)]
