"""Keep Alive: silent clients are dropped after 1.5x the interval; traffic keeps them."""
import time

import pytest

import mqttraw
from mqttraw import V5

pytestmark = pytest.mark.timeout(60)


def assert_dropped_for_keepalive(r, keepalive: float, slack: float = 1.5):
    """Call right after the client's last packet: the connection must still be open at
    0.8x keepalive and closed by 1.5x plus scheduling slack (MQTT-3.1.2-24)."""
    t0 = time.monotonic()
    r.expect_nothing(0.8 * keepalive)
    got = r.wait_closed(timeout=t0 + 1.5 * keepalive + slack - time.monotonic())
    # MQTT 5 allows a DISCONNECT 0x8D (Keep Alive timeout) before the close.
    assert all(p.type == mqttraw.DISCONNECT and p.rc == 0x8D for p in got), got


@pytest.mark.parametrize("keepalive", [1, 2])
def test_silent_client_dropped(broker, version, uid, keepalive):
    r = broker.raw(version=version)
    r.connect(uid("ka"), keepalive=keepalive)
    assert_dropped_for_keepalive(r, keepalive)


def test_pingreq_keeps_connection(broker, version, uid):
    r = broker.raw(version=version)
    r.connect(uid("ka"), keepalive=1)
    for _ in range(6):  # 3 s, twice the 1.5 s limit
        r.ping()
        time.sleep(0.5)
    r.ping()
    assert_dropped_for_keepalive(r, 1)


def test_publish_keeps_connection(broker, version, uid):
    """Any control packet counts, not only PINGREQ (3.1.2.10)."""
    r = broker.raw(version=version)
    r.connect(uid("ka"), keepalive=1)
    for i in range(6):
        r.publish(uid("ka-topic"), b"x", qos=0)
        time.sleep(0.5)
    r.ping()


def test_keepalive_timeout_publishes_will(broker, version, uid):
    topic = uid("will")
    sub = broker.client(uid("sub"), version=version)
    sub.subscribe(topic, qos=1)
    r = broker.raw(version=version)
    r.connect(uid("ka"), keepalive=1, will={"topic": topic, "payload": b"timeout", "qos": 1})
    r.wait_closed(timeout=4)
    assert sub.expect_message().payload == b"timeout"


def test_keepalive_zero_never_times_out(broker, version, uid):
    r = broker.raw(version=version)
    r.connect(uid("ka0"), keepalive=0)
    r.expect_nothing(2.5)
    r.ping()


@pytest.mark.ringmq_only("mqtt.server_keepalive cap announced as Server Keep Alive")
def test_server_keepalive_announced_and_enforced(broker_factory, uid):
    """3.2.2.3.14: the server's keepalive overrides the client's and is sent in CONNACK."""
    b = broker_factory(config={"mqtt": {"server_keepalive": 2}})
    r = b.raw()
    ack = r.connect(uid("ka"), keepalive=60)
    assert ack.props.get("server_keep_alive") == 2, ack
    assert_dropped_for_keepalive(r, 2)


@pytest.mark.ringmq_only("mqtt.server_keepalive cap")
def test_server_keepalive_not_raised_for_shorter_client_value(broker_factory, uid):
    """A client asking for less than the cap keeps its own value (if the server names one, it is <= cap)."""
    b = broker_factory(config={"mqtt": {"server_keepalive": 60}})
    r = b.raw()
    ack = r.connect(uid("ka"), keepalive=1)
    assert ack.props.get("server_keep_alive", 1) <= 60
    if "server_keep_alive" not in ack.props or ack.props["server_keep_alive"] == 1:
        assert_dropped_for_keepalive(r, 1)
