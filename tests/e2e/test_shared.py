"""Shared subscriptions ($share/group/filter), MQTT 5 section 4.8.2 (also offered to 3.1.1 clients)."""
import collections
import time

import pytest

import mqttraw
from mqttraw import sub_options

pytestmark = pytest.mark.timeout(60)


def members(broker, version, uid, flt, n, qos=1):
    out = []
    for i in range(n):
        c = broker.client(uid(f"m{i}"), version=version)
        c.subscribe(flt, qos=qos)
        out.append(c)
    return out


def collect(clients, total, timeout=10):
    """Drain `clients` until `total` messages arrived in all; return {client index: [payloads]}."""
    import time
    got = collections.defaultdict(list)
    deadline = time.monotonic() + timeout
    n = 0
    while n < total and time.monotonic() < deadline:
        for i, c in enumerate(clients):
            for m in c.drain():
                got[i].append(m.text)
                n += 1
        time.sleep(0.02)
    for i, c in enumerate(clients):  # anything extra that arrives shortly after
        for m in c.drain(settle=0.3 if i == 0 else 0):
            got[i].append(m.text)
    return got


def test_shared_messages_balanced(broker, version, uid):
    """MQTT-4.8.2-? : each message goes to exactly one member; every member gets some."""
    topic = uid("sh")
    group = members(broker, version, uid, f"$share/g/{topic}", 3)
    pub = broker.client(uid("pub"), version=version)
    n = 60
    for i in range(n):
        pub.publish(topic, str(i), qos=1)
    got = collect(group, n)
    all_msgs = [m for ms in got.values() for m in ms]
    assert sorted(all_msgs, key=int) == [str(i) for i in range(n)], "each message exactly once"
    assert all(len(got[i]) > 0 for i in range(3)), {i: len(v) for i, v in got.items()}
    for ms in got.values():  # per-member order follows publish order
        assert ms == sorted(ms, key=int)


def test_two_groups_each_get_every_message(broker, version, uid):
    topic = uid("sh2")
    g1 = members(broker, version, uid, f"$share/g1/{topic}", 2)
    g2 = members(broker, version, uid, f"$share/g2/{topic}", 2)
    pub = broker.client(uid("pub"), version=version)
    n = 30
    for i in range(n):
        pub.publish(topic, str(i), qos=1)
    for group in (g1, g2):
        got = collect(group, n)
        assert sorted((m for ms in got.values() for m in ms), key=int) == [str(i) for i in range(n)]


def test_shared_and_normal_coexist(broker, version, uid):
    topic = uid("sh3")
    group = members(broker, version, uid, f"$share/g/{topic}", 2)
    normal = broker.client(uid("normal"), version=version)
    normal.subscribe(topic, qos=1)
    pub = broker.client(uid("pub"), version=version)
    n = 20
    for i in range(n):
        pub.publish(topic, str(i), qos=1)
    assert [m.text for m in normal.expect_messages(n)] == [str(i) for i in range(n)]
    got = collect(group, n)
    assert sorted((m for ms in got.values() for m in ms), key=int) == [str(i) for i in range(n)]


def test_shared_wildcard_filter(broker, version, uid):
    p = uid("shw")
    group = members(broker, version, uid, f"$share/g/{p}/+/x", 2)
    pub = broker.client(uid("pub"), version=version)
    for i in range(10):
        pub.publish(f"{p}/{i}/x", str(i), qos=1)
    pub.publish(f"{p}/a/y", "nomatch", qos=1)
    got = collect(group, 10)
    assert sorted((m for ms in got.values() for m in ms), key=int) == [str(i) for i in range(10)]


def test_shared_member_leaves(broker, version, uid):
    topic = uid("shl")
    a, b = members(broker, version, uid, f"$share/g/{topic}", 2)
    b.unsubscribe(f"$share/g/{topic}")
    pub = broker.client(uid("pub"), version=version)
    for i in range(10):
        pub.publish(topic, str(i), qos=1)
    assert [m.text for m in a.expect_messages(10)] == [str(i) for i in range(10)]
    b.expect_no_message(0.3)
    # A member that disconnects (clean session) stops getting a share too.
    c = broker.client(uid("c"), version=version)
    c.subscribe(f"$share/g/{topic}", qos=1)
    c.disconnect()
    for i in range(10, 20):
        pub.publish(topic, str(i), qos=1)
    assert [m.text for m in a.expect_messages(10)] == [str(i) for i in range(10, 20)]


def test_shared_qos_per_member(broker, uid):
    """Each member receives at its own granted QoS."""
    topic = uid("shq")
    s0 = broker.raw(connect=uid("q0"))
    s0.subscribe(f"$share/g/{topic}", qos=0)
    s2 = broker.raw(connect=uid("q2"))
    s2.subscribe(f"$share/g/{topic}", qos=2)
    pub = broker.client(uid("pub"))
    for i in range(20):
        pub.publish(topic, str(i), qos=2)
    seen = []
    for s, want in ((s0, 0), (s2, 2)):
        while True:
            try:
                p = s.expect_publish(timeout=0.7)
            except AssertionError:
                break
            assert p.qos == want, p
            s.ack(p)
            seen.append(int(p.payload))
    assert sorted(seen) == list(range(20))


def test_no_local_on_shared_subscription_is_protocol_error(broker, uid):
    """MQTT-3.8.3-4: No Local on a Shared Subscription is a Protocol Error."""
    r = broker.raw(connect=uid("c"))
    r.send(mqttraw.subscribe(1, [(f"$share/g/{uid('t')}", sub_options(qos=1, no_local=True))]))
    r.expect_disconnect(0x82)
    broker.check_alive()


@pytest.mark.parametrize("flt", ["$share/g", "$share//t", "$share/g+/t", "$share/g#/t"])
def test_invalid_shared_filter_refused(broker, uid, flt):
    """MQTT-4.8.2-1/-2: ShareName at least one character, no wildcards, followed by /filter.
    Refused with a SUBACK failure (0x8F) or a disconnect; never accepted."""
    r = broker.raw(connect=uid("c"))
    r.send(mqttraw.subscribe(1, [(flt, 1)]))
    try:
        p = r.recv_packet()
    except mqttraw.Closed:
        broker.check_alive()
        return
    if p.type == mqttraw.SUBACK:
        assert p.rcs[0] >= 0x80, p
    else:
        assert p.type == mqttraw.DISCONNECT and p.rc >= 0x80, p
    broker.check_alive()


def test_retained_not_sent_to_new_shared_subscription(broker, uid):
    """3.3.1.3: retained messages are sent 'when a new Non-shared Subscription is made'."""
    topic = uid("shr")
    broker.client(uid("pub")).publish(topic, "retained", qos=1, retain=True)
    s = broker.client(uid("s"))
    s.subscribe(f"$share/g/{topic}", qos=1)
    s.expect_no_message(0.5)


def _on_both_shards(b, make_client, tries=30):
    """Two clients on different shards (ringmq with the debug log), or just two (mosquitto)."""
    from conftest import IS_MOSQUITTO
    first, second = make_client(), make_client()
    if IS_MOSQUITTO:
        return first, second
    s1 = b.shard_of(first.client_id)
    for _ in range(tries):
        if b.shard_of(second.client_id) != s1:
            return first, second
        second.close()
        second = make_client()
    raise AssertionError("could not get a second client onto the other shard")


def test_leaving_member_messages_redispatched(debug_broker, uid):
    """MQTT 5.0 4.8.2: when a member's connection closes while the server is sending it
    messages, the server SHOULD send them to another member. A member with a window of 1
    (Receive Maximum 1) that never acknowledges holds one message in flight and the rest of
    its share queued; when it disconnects (session ends), every one of them reaches the
    other member, which is on the other shard."""
    b = debug_broker
    topic = uid("shr")
    flt = f"$share/g/{topic}"

    def member():
        r = b.raw(timeout=10)
        r.client_id = uid("m")
        r.connect(r.client_id, props={"receive_maximum": 1})
        return r

    # Both with a window of 1: `other` acknowledges each message at once,
    # `slow` never does.
    slow, other = _on_both_shards(b, member)
    slow.subscribe(flt, qos=1)
    other.subscribe(flt, qos=1)
    pub = b.raw(connect=uid("pub"))
    n = 200
    pub.publish_many([(topic, str(i).encode()) for i in range(n)], qos=1)

    got = []

    def drain(until, timeout):
        deadline = time.monotonic() + timeout
        while len(got) < until and time.monotonic() < deadline:
            try:
                p = other.expect_publish(timeout=max(0.05, deadline - time.monotonic()))
            except (AssertionError, TimeoutError):
                break
            other.ack(p)
            got.append(int(p.payload))

    # Round robin: about half go to `slow`, one of them in flight, the rest queued.
    drain(n // 2 - 5, 10)
    first = slow.expect_publish(timeout=5)
    assert first.qos == 1
    assert len(got) < n - 10, f"{len(got)} of {n} reached the other member before any left"
    slow.disconnect()
    drain(n, 15)
    assert sorted(got) == list(range(n)), (
        f"missing {sorted(set(range(n)) - set(got))[:20]}..., duplicated "
        f"{[k for k, v in collections.Counter(got).items() if v > 1][:20]}")
    b.check_alive()
