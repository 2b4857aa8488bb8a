"""Operating the broker: signals, port conflicts, configuration errors, env overlay,
connection limits, queue limits."""
import signal
import socket
import time

import pytest

from conftest import IS_MOSQUITTO, free_port
from mqttraw import V311, V5

pytestmark = pytest.mark.timeout(60)


# ---------------------------------------------------------------- shutdown

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_graceful_shutdown(broker, uid, sig):
    """v5 clients get DISCONNECT 0x8B (Server shutting down), 3.1.1 clients a close; exit 0."""
    v5 = broker.raw(connect=uid("v5"))
    v3 = broker.raw(version=V311, connect=uid("v3"))
    broker.send_signal(sig)
    # 3.14: the server MAY send DISCONNECT; ringmq promises 0x8B. Either way the code is 0x8B.
    d = v5.expect_disconnect(None if IS_MOSQUITTO else 0x8B, timeout=10)
    assert d is None or d.rc == 0x8B, d
    v3.wait_closed(timeout=10)
    assert broker.wait_exit(10) == 0


def test_shutdown_with_many_clients_is_quick(broker, uid):
    conns = [broker.raw(connect=uid("c")) for _ in range(50)]
    broker.send_signal(signal.SIGTERM)
    for c in conns:
        d = c.expect_disconnect(None if IS_MOSQUITTO else 0x8B, timeout=10)
        assert d is None or d.rc == 0x8B, d
    assert broker.wait_exit(10) == 0


# ---------------------------------------------------------------- port conflicts

def test_second_broker_on_same_port_refused(broker_factory, uid):
    first = broker_factory()
    second = broker_factory(port=first.port, start=False)
    rc = second.wait_exit(15)
    assert rc != 0, "a second broker started on a port already in use"
    if not IS_MOSQUITTO:
        assert f"127.0.0.1:{first.port}" in second.log(), "error does not name the address:\n" + second.tail(20)
    # The first broker owns every new connection (a second SO_REUSEPORT member would steal some).
    for _ in range(20):
        first.check_alive()


def test_restart_on_same_port_after_connections(broker_factory, uid):
    """Connections the broker closed leave TIME_WAIT sockets on its port; a
    restart on that port must not be refused because of them."""
    first = broker_factory()
    for i in range(20):
        c = first.raw(connect=uid(f"c{i}"))
        c.disconnect()
    # Closed by the broker side too: a kicked client (bad packet) is closed by it.
    for i in range(5):
        c = first.raw(connect=uid(f"k{i}"))
        c.send(b"\x00\x00")  # packet type 0 is reserved: malformed
        c.wait_closed(timeout=5)
    port = first.port
    assert first.stop() == 0
    second = broker_factory(port=port)
    second.raw(connect=uid("after")).disconnect()


# ---------------------------------------------------------------- configuration

@pytest.mark.ringmq_only("ringmq's TOML configuration")
@pytest.mark.parametrize("config,key", [
    ({"mqtt": {"max_inflihgt": 5}}, "mqtt.max_inflihgt"),
    ({"mqtt": {"max_inflight": "lots"}}, "mqtt.max_inflight"),
    ({"mqtt": {"max_inflight": 0}}, "mqtt.max_inflight"),
    ({"mqtt": {"max_packet_size": -1}}, "mqtt.max_packet_size"),
    ({"listeners": {"tcp": {"default": {"bind": "not-an-address"}}}}, "listeners.tcp.default.bind"),
    ({"nosuchsection": {"x": 1}}, "nosuchsection"),
], ids=["unknown-key", "wrong-type", "out-of-range", "negative-size", "bad-bind", "unknown-section"])
def test_bad_config_file(broker_factory, config, key):
    b = broker_factory(config=config, start=False)
    rc = b.wait_exit(10)
    assert rc != 0
    assert key in b.log(), f"stderr does not name {key}:\n" + b.tail(20)


@pytest.mark.ringmq_only("ringmq's RINGMQ_* environment overlay")
@pytest.mark.parametrize("var,value,key", [
    ("RINGMQ_MQTT__MAX_INFLIGHT", "notanumber", "mqtt.max_inflight"),
    ("RINGMQ_MQTT__NO_SUCH_KEY", "1", "mqtt.no_such_key"),
], ids=["bad-value", "unknown-key"])
def test_bad_config_env(broker_factory, var, value, key):
    b = broker_factory(env={var: value}, start=False)
    rc = b.wait_exit(10)
    assert rc != 0
    log = b.log()
    assert key in log or var in log, f"stderr names neither {key} nor {var}:\n" + b.tail(20)


@pytest.mark.ringmq_only("ringmq's command line")
def test_missing_config_file(broker_factory, tmp_path):
    b = broker_factory(spawn=False)
    b.argv = [b.argv[0], "--config", str(tmp_path / "does-not-exist.toml")]
    b.spawn()
    assert b.wait_exit(10) != 0
    assert "does-not-exist.toml" in b.log()


@pytest.mark.ringmq_only("ringmq's RINGMQ_* environment overlay")
def test_env_overlay_moves_bind_port(broker_factory, uid):
    env_port = free_port()
    b = broker_factory(env={"RINGMQ_LISTENERS__TCP__DEFAULT__BIND": f"127.0.0.1:{env_port}"},
                       listen_port=env_port)
    assert b.raw(connect=uid("c")).connack.rc == 0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", b.port), timeout=1).close()


@pytest.mark.ringmq_only("ringmq's RINGMQ_* environment overlay")
def test_env_overlay_changes_mqtt_setting(broker_factory, uid):
    b = broker_factory(env={"RINGMQ_MQTT__MAX_INFLIGHT": "7"})
    ack = b.raw().connect(uid("c"))
    assert ack.props.get("receive_maximum") == 7, ack


@pytest.mark.ringmq_only("listeners.tcp.<name>.max_connections")
def test_max_connections(broker_factory, uid):
    b = broker_factory(config={"listeners": {"tcp": {"default": {"max_connections": 3}}}})
    conns = [b.raw(connect=uid("c")) for _ in range(3)]
    extra = b.raw()
    try:
        extra.send(__import__("mqttraw").connect(uid("over")))
        got = extra.wait_closed(5)
    except OSError:
        got = []
    assert not any(p.type == 2 and p.rc == 0 for p in got), f"fourth connection accepted: {got}"
    conns[0].disconnect()
    deadline = time.monotonic() + 5
    while True:  # the freed slot becomes usable
        r = b.raw()
        try:
            if r.connect(uid("again"), expect_rc=None).rc == 0:
                break
        except (AssertionError, OSError):
            pass
        assert time.monotonic() < deadline, "slot not freed after a disconnect"
        time.sleep(0.1)


# ---------------------------------------------------------------- queue limits

def test_offline_queue_drops_qos0_first(broker_factory, uid):
    """With mqtt.max_mqueue_len 10 and 8 QoS 1 + 8 QoS 0 messages queued for an offline
    session, every QoS 1 message survives (in order) and some QoS 0 ones are dropped."""
    b = broker_factory(config={"mqtt": {"max_mqueue_len": 10}})
    cid, topic = uid("slow"), uid("t")
    s = b.raw(connect=cid, clean=False, props={"session_expiry_interval": 300})
    s.subscribe(topic, qos=1)
    s.disconnect()
    pub = b.raw(connect=uid("pub"))
    for i in range(8):
        pub.publish(topic, f"q1-{i}", qos=1)
        pub.publish(topic, f"q0-{i}", qos=0)
    pub.ping()  # all publishes processed
    s = b.raw()
    assert s.connect(cid, clean=False, props={"session_expiry_interval": 300}).session_present
    got = []
    while True:
        try:
            p = s.expect_publish(timeout=1.0)
        except AssertionError:
            break
        s.ack(p)
        got.append(p.payload.decode())
    assert [g for g in got if g.startswith("q1-")] == [f"q1-{i}" for i in range(8)], got
    assert len(got) < 16, f"queue limit 10 not applied: {got}"
    assert len(got) <= 10, got


def test_offline_queue_limit_qos1(broker_factory, uid):
    """More QoS 1 messages than fit: some are dropped, what is kept is in order, no duplicates."""
    b = broker_factory(config={"mqtt": {"max_mqueue_len": 10, "max_inflight": 2}})
    cid, topic = uid("slow"), uid("t")
    s = b.raw(connect=cid, clean=False, props={"session_expiry_interval": 300})
    s.subscribe(topic, qos=1)
    s.disconnect()
    pub = b.raw(connect=uid("pub"))
    pub.publish_many([(topic, str(i)) for i in range(30)], qos=1)
    s = b.raw()
    assert s.connect(cid, clean=False, props={"session_expiry_interval": 300}).session_present
    got = []
    while True:
        try:
            p = s.expect_publish(timeout=1.0)
        except AssertionError:
            break
        s.ack(p)
        got.append(int(p.payload))
    assert 1 <= len(got) <= 12, got
    assert got == sorted(set(got)), got


def test_slow_online_subscriber_does_not_block_others(broker_factory, uid):
    """A QoS 0 subscriber that never reads (tiny receive buffer) is sent more than the kernel
    buffers hold; delivery to a healthy subscriber of the same topic must not stall."""
    b = broker_factory(config={"mqtt": {"max_mqueue_len": 1000}})
    topic = uid("t")
    slow = b.raw(connect=uid("slow"), rcvbuf=4096)
    slow.subscribe(topic, qos=0)
    fast = b.client(uid("fast"))
    fast.subscribe(topic, qos=1)
    pub = b.raw(connect=uid("pub"))
    payload = b"x" * 20000
    n = 300  # 6 MB: more than the socket buffers of the slow connection can take
    pub.publish_many([(topic, payload + str(i).encode()) for i in range(n)], qos=1)
    msgs = fast.expect_messages(n, timeout=30)
    assert [m.payload for m in msgs] == [payload + str(i).encode() for i in range(n)]
    b.check_alive()
