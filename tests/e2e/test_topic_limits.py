"""Topic names the broker refuses: more levels than `mqtt.max_topic_levels` (PUBLISH,
SUBSCRIBE, will), and client publishes to `$SYS` (unless `mqtt.allow_publish_sys`) and
`$share` names (MQTT 5.0 section 4.7.2). Reason codes in docs/configuration.md."""
import shutil
import subprocess

import pytest

import mqttraw
from mqttraw import CONNACK, PUBACK, PUBREC, V311, V5

pytestmark = [pytest.mark.timeout(60),
              pytest.mark.ringmq_only("ringmq's mqtt.max_topic_levels and $SYS refusal")]

TOPIC_NAME_INVALID = 0x90
TOPIC_FILTER_INVALID = 0x8F
NOT_AUTHORIZED = 0x87
SUBACK_FAILURE = 0x80
CONNACK_V3_NOT_AUTHORIZED = 5

LEVELS_3 = {"mqtt": {"max_topic_levels": 3}}


# ---------------------------------------------------------------- mqtt.max_topic_levels

def test_v5_publish_over_the_level_limit_gets_0x90_and_is_not_routed(broker_factory, uid):
    """The issue's reproduction: a 6-level topic with the limit at 3. QoS 1/2 are refused
    with PUBACK/PUBREC 0x90 and the connection stays; QoS 0 ends it with DISCONNECT 0x90."""
    b = broker_factory(config=LEVELS_3)
    sub = b.client(uid("sub"))
    sub.subscribe(["#", "a/+/+"], qos=1)
    r = b.raw(version=V5, connect=uid("pub"))
    r.send(mqttraw.publish("a/b/c/d/e/f", b"deep", qos=1, pid=1, version=V5))
    assert r.wait_for(PUBACK, 1).rc == TOPIC_NAME_INVALID
    r.send(mqttraw.publish("a/b/c/d", b"deep", qos=2, pid=2, retain=True, version=V5))
    assert r.wait_for(PUBREC, 2).rc == TOPIC_NAME_INVALID
    r.ping()
    r.publish("a/b/c", b"ok", qos=1)  # at the limit: accepted
    m = sub.expect_message()
    assert (m.topic, m.payload) == ("a/b/c", b"ok")
    sub.expect_no_message(0.3)
    r.publish("a/b/c/d", b"deep", qos=0)
    r.expect_disconnect(TOPIC_NAME_INVALID)
    sub.expect_no_message(0.3)
    # Nothing was retained from the refused QoS 2 PUBLISH.
    late = b.raw(version=V5, connect=uid("late"))
    assert late.subscribe([("#", 1)]).rcs == [1]
    late.expect_nothing(0.3)


def test_v5_levels_counted_after_topic_alias_resolution(broker_factory, uid):
    b = broker_factory(config=LEVELS_3)
    sub = b.client(uid("sub"))
    sub.subscribe("#", qos=1)
    r = b.raw(version=V5, connect=uid("pub"))
    r.send(mqttraw.publish("a/b/c/d", b"x", qos=1, pid=1, props={"topic_alias": 1}, version=V5))
    assert r.wait_for(PUBACK, 1).rc == TOPIC_NAME_INVALID
    # By alias alone: still the 4-level topic, refused the same way.
    r.send(mqttraw.publish("", b"x", qos=1, pid=2, props={"topic_alias": 1}, version=V5))
    assert r.wait_for(PUBACK, 2).rc == TOPIC_NAME_INVALID
    r.send(mqttraw.publish("a/b", b"ok", qos=1, pid=3, props={"topic_alias": 2}, version=V5))
    assert r.wait_for(PUBACK, 3).rc == 0
    r.send(mqttraw.publish("", b"again", qos=1, pid=4, props={"topic_alias": 2}, version=V5))
    assert r.wait_for(PUBACK, 4).rc == 0
    assert [m.payload for m in sub.expect_messages(2)] == [b"ok", b"again"]
    sub.expect_no_message(0.3)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_v311_publish_over_the_level_limit_closes(broker_factory, uid, qos):
    """3.1.1 has no code to refuse a PUBLISH with: the connection is closed, unacknowledged."""
    b = broker_factory(config=LEVELS_3)
    sub = b.client(uid("sub"), version=4)
    sub.subscribe("#", qos=1)
    r = b.raw(version=V311, connect=uid("pub"))
    r.publish("a/b/c/d/e/f", b"deep", qos=qos, wait=False)
    got = r.wait_closed()
    assert got == [], f"expected a close without any ack, got {got!r}"
    sub.expect_no_message(0.3)


def test_subscribe_over_the_level_limit(broker_factory, version, uid):
    """0x8F (v5) / 0x80 (3.1.1) for that filter only; `$share/<group>/` is not counted."""
    b = broker_factory(config=LEVELS_3)
    r = b.raw(version=version, connect=uid("sub"))
    bad = TOPIC_FILTER_INVALID if version == V5 else SUBACK_FAILURE
    suback = r.subscribe([("a/b/c", 1), ("a/b/c/d", 1), ("a/+/+/#", 1), ("+/+/#", 1),
                          ("$share/g/a/b/c", 1), ("$share/g/a/b/c/d", 1)])
    assert suback.rcs == [1, bad, bad, 1, 1, bad]
    # The granted ones work.
    pub = b.client(uid("pub"), version=version)
    pub.publish("a/b/c", b"x", qos=1)
    got = sorted(r.expect_publish().topic for _ in range(2))
    assert got == ["a/b/c", "a/b/c"]


def test_filter_of_65536_levels_is_refused_by_default(broker, uid):
    """65,535 separators make 65,536 levels: far over the default of 128, nothing stored,
    the connection and the broker fine."""
    r = broker.raw(version=V5, connect=uid("deep"))
    deep = "/" * 65_535
    assert r.subscribe([(deep, 0)]).rcs == [TOPIC_FILTER_INVALID]
    assert r.subscribe([(("a/" * 128)[:-1], 0), (("a/" * 129)[:-1], 0)]).rcs == [0, TOPIC_FILTER_INVALID]
    r.ping()
    broker.check_alive()


def test_will_over_the_level_limit_refuses_the_connect(broker_factory, version, uid):
    b = broker_factory(config=LEVELS_3)
    r = b.raw(version=version)
    want = TOPIC_NAME_INVALID if version == V5 else CONNACK_V3_NOT_AUTHORIZED
    r.send(mqttraw.connect(uid("w"), version=version, will={"topic": "a/b/c/d", "payload": b"x"}))
    assert r.expect(CONNACK).rc == want
    r.wait_closed()
    ok = b.raw(version=version)
    ok.connect(uid("w"), version=version, will={"topic": "a/b/c", "payload": b"x"})


@pytest.mark.parametrize("config,key", [
    ({"mqtt": {"max_topic_levels": 0}}, "mqtt.max_topic_levels"),
    ({"mqtt": {"max_topic_levels": 1025}}, "mqtt.max_topic_levels"),
    ({"mqtt": {"allow_publish_sys": "sometimes"}}, "mqtt.allow_publish_sys"),
], ids=["levels-0", "levels-over-cap", "sys-not-bool"])
def test_bad_topic_limit_config_stops_the_start(broker_factory, config, key):
    b = broker_factory(config=config, start=False)
    assert b.wait_exit(10) != 0
    assert key in b.log(), f"stderr does not name {key}:\n" + b.tail(20)


# ---------------------------------------------------------------- $SYS and $share

def test_sys_subscriber_receives_nothing_a_client_published(broker, version, uid):
    """MQTT 5.0 4.7.2: a client cannot write into the server's $SYS tree, retained or not."""
    marker = uid("marker")
    sys_sub = broker.client(uid("sys"), version=version)
    sys_sub.subscribe(["$SYS/#", marker], qos=1)
    pub = broker.client(uid("pub"), version=version)
    for qos in (0, 1, 2):
        info = pub.publish(f"$SYS/broker/fake/{qos}", b"forged", qos=qos)
        # (QoS 2's PUBREC 0x87 is checked raw below: paho sends PUBREL anyway and
        # records the PUBCOMP's 0x92.)
        if version == 5 and qos == 1:
            assert pub.puback_rc[info.mid] == NOT_AUTHORIZED
    pub.publish("$SYS", b"forged", qos=1)
    pub.publish("$SYS/broker/retained", b"forged", qos=1, retain=True)
    pub.publish(marker, b"after", qos=1)
    m = sys_sub.expect_message()
    assert (m.topic, m.payload) == (marker, b"after")
    sys_sub.expect_no_message(0.3)
    late = broker.client(uid("late"), version=version)
    late.subscribe("$SYS/#", qos=1)
    late.expect_no_message(0.3)


def test_v5_sys_and_share_publish_reason_codes(broker, uid):
    r = broker.raw(version=V5, connect=uid("pub"))
    r.publish("$SYS/x", b"x", qos=0)
    r.send(mqttraw.publish("$SYS/x", b"x", qos=1, pid=1, version=V5))
    assert r.wait_for(PUBACK, 1).rc == NOT_AUTHORIZED
    r.send(mqttraw.publish("$SYS/x", b"x", qos=2, pid=2, version=V5))
    assert r.wait_for(PUBREC, 2).rc == NOT_AUTHORIZED
    r.send(mqttraw.publish("$share/g/x", b"x", qos=1, pid=3, version=V5))
    assert r.wait_for(PUBACK, 3).rc == NOT_AUTHORIZED
    r.ping()  # still connected


def test_v311_sys_publish_is_acknowledged_but_dropped(broker, uid):
    """As for an authorization denial: the 3.1.1 handshake completes, nothing is routed."""
    sub = broker.client(uid("sub"), version=4)
    sub.subscribe("$SYS/#", qos=2)
    r = broker.raw(version=V311, connect=uid("pub"))
    r.publish("$SYS/x", b"x", qos=1)   # waits for PUBACK
    r.publish("$SYS/x", b"x", qos=2)   # PUBREC, PUBREL, PUBCOMP
    sub.expect_no_message(0.3)


def test_will_to_sys_is_dropped(broker, version, uid):
    sys_sub = broker.client(uid("sys"), version=version)
    sys_sub.subscribe("$SYS/#", qos=1)
    r = broker.raw(version=version)
    r.connect(uid("w"), version=version, will={"topic": "$SYS/broker/will", "payload": b"gone"})
    r.abort()
    sys_sub.expect_no_message(0.5)


def test_allow_publish_sys_lets_a_bridge_publish(broker_factory, version, uid):
    b = broker_factory(config={"mqtt": {"allow_publish_sys": True}})
    sys_sub = b.client(uid("sys"), version=version)
    sys_sub.subscribe("$SYS/#", qos=1)
    bridge = b.client(uid("bridge"), version=version)
    info = bridge.publish("$SYS/remote/uptime", b"42", qos=1, retain=True)
    if version == 5:
        assert bridge.puback_rc[info.mid] == 0
    m = sys_sub.expect_message()
    assert (m.topic, m.payload) == ("$SYS/remote/uptime", b"42")
    late = b.client(uid("late"), version=version)
    late.subscribe("$SYS/#", qos=1)
    assert late.expect_message().payload == b"42"
    # $share names stay refused: no subscription could receive them.
    if version == 5:
        info = bridge.publish("$share/g/x", b"x", qos=1)
        assert bridge.puback_rc[info.mid] == NOT_AUTHORIZED


@pytest.mark.skipif(not shutil.which("mosquitto_pub"), reason="mosquitto-clients not installed")
def test_mosquitto_pub_to_sys_reaches_no_subscriber(broker, uid):
    """A real client publishing to $SYS with both protocol versions."""
    marker = uid("marker")
    sys_sub = broker.client(uid("sys"))
    sys_sub.subscribe(["$SYS/#", marker], qos=1)
    for ver in ("mqttv311", "5"):
        subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.listen_port),
                        "-V", ver, "-q", "1", "-t", "$SYS/broker/clients/connected", "-m", "999"],
                       capture_output=True, text=True, timeout=20)
    subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.listen_port),
                    "-q", "1", "-t", marker, "-m", "after"], check=True, timeout=20)
    assert sys_sub.expect_message().topic == marker
    sys_sub.expect_no_message(0.3)
