"""Routes and forwarding across nodes (issue 13, item 3) with real processes: a PUBLISH reaches
subscribers on other nodes exactly once and in order (QoS 1 and 2), a SUBACK on one node means a
PUBLISH right after it on another node arrives, unsubscribing stops delivery, a killed node's
routes are forgotten while the others keep delivering, a restarted node gets the routes and the
retained store again, and retained messages are visible on every node. One 3-node static cluster for the module (tests/e2e/cluster.py); the kill test runs last.
"""
from __future__ import annotations

import time

import pytest

from cluster import Cluster
from conftest import make_uid

pytestmark = [pytest.mark.timeout(300), pytest.mark.ringmq_only("ringmq's cluster")]

DETECT_BOUND_S = 10.0


@pytest.fixture(scope="module")
def c3(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("routes3"), n=3, strategy="static").start()
    c.wait_running(3)
    yield c
    c.stop()


def payloads(msgs) -> list[bytes]:
    return [m.payload for m in msgs]


@pytest.mark.parametrize("qos", [1, 2])
def test_cross_node_delivery_is_exactly_once_and_in_order(c3, qos):
    n = 300
    topic = make_uid(f"order/q{qos}")
    subs = [c3.nodes[i].client(make_uid(f"sub{i}")) for i in (1, 2)]
    for s in subs:
        s.subscribe(topic, qos=qos)
    # Within the broker's Receive Maximum (a QoS 2 flow over it is a protocol error).
    pub = c3.nodes[0].client(make_uid("pub"), max_inflight=20)
    infos = [pub.publish(topic, f"{i:05}".encode(), qos=qos, wait=False) for i in range(n)]
    for info in infos:
        info.wait_for_publish(20)
        assert info.is_published()
    expected = [f"{i:05}".encode() for i in range(n)]
    for s in subs:
        got = s.expect_messages(n, timeout=20)
        assert payloads(got) == expected, f"{s.client_id}: out of order or missing"
        assert all(m.qos == qos for m in got)
        s.expect_no_message(1.0)  # and nothing twice
    for client in subs + [pub]:
        client.disconnect()


@pytest.mark.parametrize("qos", [1, 2])
def test_a_publishers_forwarded_window_acks_in_order_and_before_its_disconnect(c3, qos):
    """Many cross-node QoS 1/2 PUBLISHes in flight from one connection (the held acks'
    window, PUBLISH_ACKS_HELD_MAX): every PUBACK/PUBREC comes, in the order of the PUBLISHes,
    the subscriber on the other node gets them in order, and a DISCONNECT sent right behind
    them is read only after their acks went out."""
    import mqttraw

    # QoS 1: past the window of 64 (the connection waits at it); QoS 2: within the
    # broker's Receive Maximum (32, PUBRELs are never sent here).
    n = 100 if qos == 1 else 30
    topic = make_uid(f"window/q{qos}")
    sub = c3.nodes[1].client(make_uid("sub"))
    sub.subscribe(topic, qos=qos)
    raw = c3.nodes[0].raw(connect=make_uid("rawpub"))
    burst = b"".join(mqttraw.publish(topic, f"{i:03}", qos=qos, pid=i + 1) for i in range(n))
    raw.send(burst + mqttraw.disconnect())
    ack_type = mqttraw.PUBACK if qos == 1 else mqttraw.PUBREC
    acks = [raw.recv_packet(timeout=10) for _ in range(n)]
    assert [(a.type, a.pid) for a in acks] == [(ack_type, i + 1) for i in range(n)]
    raw.wait_closed(timeout=10)
    got = sub.expect_messages(n, timeout=20)
    assert payloads(got) == [f"{i:03}".encode() for i in range(n)]
    sub.disconnect()


def test_a_publish_right_after_the_suback_on_another_node_arrives(c3):
    """SUBACK implies delivery cluster-wide: the peers applied the route before it went out."""
    pubs = [c3.nodes[i].client(make_uid(f"p{i}")) for i in range(3)]
    subs = [c3.nodes[i].client(make_uid(f"s{i}")) for i in range(3)]
    for round_ in range(50):
        at = round_ % 3
        on = (at + 1 + round_ // 3 % 2) % 3
        topic = make_uid(f"fresh/{round_}")
        subs[at].subscribe(topic, qos=1)
        pubs[on].publish(topic, f"r{round_}".encode(), qos=0, wait=False)
        m = subs[at].expect_message(timeout=5, topic=topic)
        assert m.payload == f"r{round_}".encode()
    for s in subs:
        s.expect_no_message(0.5)
    for client in subs + pubs:
        client.disconnect()


def test_unsubscribe_stops_delivery_and_a_new_subscribe_restores_it(c3):
    topic = make_uid("unsub")
    a, b = (c3.nodes[1].client(make_uid(x)) for x in ("a", "b"))
    a.subscribe(f"{topic}/+", qos=1)
    b.subscribe(f"{topic}/#", qos=1)
    pub = c3.nodes[0].client(make_uid("pub"))
    pub.publish(f"{topic}/1", b"1", qos=1)
    assert a.expect_message(topic=f"{topic}/1").payload == b"1"
    assert b.expect_message(topic=f"{topic}/1").payload == b"1"
    # One filter gone: the node still has the other.
    a.unsubscribe(f"{topic}/+")
    pub.publish(f"{topic}/2", b"2", qos=1)
    assert b.expect_message(topic=f"{topic}/2").payload == b"2"
    a.expect_no_message(0.5)
    # The node's last filter gone: nothing reaches it any more.
    b.unsubscribe(f"{topic}/#")
    pub.publish(f"{topic}/3", b"3", qos=1)
    a.expect_no_message(0.5)
    b.expect_no_message(0.5)
    # And back: the route is advertised again.
    a.subscribe(f"{topic}/+", qos=1)
    pub.publish(f"{topic}/4", b"4", qos=1)
    assert a.expect_message(topic=f"{topic}/4").payload == b"4"
    for client in (a, b, pub):
        client.disconnect()


def retained_seen(node, topic: str, timeout: float = 5.0):
    """The retained message a fresh subscriber on `node` gets for `topic` (replication is
    asynchronous: asks again until `timeout`), or None."""
    deadline = time.monotonic() + timeout
    while True:
        c = node.client(make_uid("rs"))
        c.subscribe(topic, qos=1)
        got = c.drain(0.3)
        c.disconnect()
        if got or time.monotonic() > deadline:
            return got[0] if got else None


def test_retained_messages_are_visible_on_every_node(c3):
    topic = make_uid("ret")
    pub = c3.nodes[0].client(make_uid("pub"))
    pub.publish(topic, b"kept", qos=1, retain=True)
    for node in c3.nodes[1:]:
        m = retained_seen(node, topic)
        assert m is not None and m.payload == b"kept" and m.retain, node.name
    # Replaced on another node, then cleared: every node follows.
    c3.nodes[1].client(make_uid("pub2")).publish(topic, b"new", qos=1, retain=True)
    for node in (c3.nodes[0], c3.nodes[2]):
        deadline = time.monotonic() + 5
        while (m := retained_seen(node, topic, timeout=0)) is None or m.payload != b"new":
            assert time.monotonic() < deadline, f"{node.name}: {m}"
    c3.nodes[2].client(make_uid("pub3")).publish(topic, b"", qos=1, retain=True)
    for node in c3.nodes[:2]:
        deadline = time.monotonic() + 5
        while retained_seen(node, topic, timeout=0) is not None:
            assert time.monotonic() < deadline, node.name
    pub.disconnect()


def test_kill_9_survivors_keep_delivering_and_the_restarted_node_gets_the_routes(c3):
    victim = c3.nodes[2]
    survivors = [c3.nodes[0], c3.nodes[1]]
    topic = make_uid("kill")
    on_victim = victim.client(make_uid("v"))
    on_victim.subscribe(topic, qos=1)
    keeper = c3.nodes[1].client(make_uid("k"))
    keeper.subscribe(topic, qos=1)
    # A subscriber the restarted node must learn about.
    early = c3.nodes[0].client(make_uid("early"))
    early.subscribe(f"{topic}/back", qos=1)
    pub = c3.nodes[0].client(make_uid("pub"))
    pub.publish(topic, b"before", qos=1)
    assert on_victim.expect_message(topic=topic).payload == b"before"
    assert keeper.expect_message(topic=topic).payload == b"before"

    mark = len(c3.nodes[0].log())
    victim.kill()
    # Publishes go on while the node is being declared down: each PUBACK
    # comes (released when the node is declared down at the latest).
    sent = 0
    start = time.monotonic()
    while time.monotonic() - start < DETECT_BOUND_S:
        pub.publish(topic, f"during{sent}".encode(), qos=1, timeout=10)
        sent += 1
        if c3.nodes[0].statuses().get(victim.node_name) in (None, "stopped"):
            break
        time.sleep(0.2)
    c3.wait_status(victim.node_name, "stopped", among=survivors, timeout=DETECT_BOUND_S)
    assert "routes are forgotten" in c3.nodes[0].log_since(mark)
    got = keeper.expect_messages(sent, timeout=10)
    assert payloads(got) == [f"during{i}".encode() for i in range(sent)]
    # Routes to the dead node are gone: publishes are answered at once.
    start = time.monotonic()
    for i in range(20):
        pub.publish(topic, f"after{i}".encode(), qos=1)
    assert time.monotonic() - start < 3.0
    assert payloads(keeper.expect_messages(20)) == [f"after{i}".encode() for i in range(20)]

    # Retained while the node is down: it gets the store when it comes back.
    pub.publish(f"{topic}/kept", b"while-down", qos=1, retain=True)

    victim.restart()
    c3.wait_running(3)
    m = retained_seen(victim, f"{topic}/kept")
    assert m is not None and m.payload == b"while-down"
    # The restarted node has the routes it missed: its publish reaches node 0.
    late_pub = victim.client(make_uid("late"))
    late_pub.publish(f"{topic}/back", b"back", qos=1)
    assert early.expect_message(topic=f"{topic}/back").payload == b"back"
    # And the others learn its new subscriptions.
    fresh = victim.client(make_uid("fresh"))
    fresh.subscribe(topic, qos=1)
    pub.publish(topic, b"again", qos=1)
    assert fresh.expect_message(topic=topic).payload == b"again"
    assert keeper.expect_message(topic=topic).payload == b"again"
    for client in (keeper, early, pub, late_pub, fresh):
        client.disconnect()
