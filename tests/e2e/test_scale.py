"""Many clients: spread over shards, fan-out from many publishers, exactly-once and order."""
import collections
import threading
import time

import pytest

import mqttraw
from conftest import IS_MOSQUITTO, make_uid

pytestmark = pytest.mark.timeout(90)


@pytest.mark.ringmq_only("shard placement is read from ringmq's debug log")
def test_clients_spread_over_both_shards(debug_broker):
    b = debug_broker
    ids = [make_uid("spread") for _ in range(120)]
    conns = []
    for cid in ids:
        r = b.raw(timeout=10)
        r.connect(cid)
        conns.append(r)
    shards = {cid: b.shard_of(cid) for cid in ids}
    counts = collections.Counter(shards.values())
    assert len(counts) == 2, f"clients per shard: {dict(counts)}"
    for r in conns:
        r.disconnect()
    b.check_alive()


def place_on_both_shards(b, make_client, tries=30):
    """Two clients of the same role, on different shards (ringmq), or just two (mosquitto)."""
    first = make_client()
    second = make_client()
    if IS_MOSQUITTO:
        return [first, second]
    s1 = b.shard_of(first.client_id)
    for _ in range(tries):
        if b.shard_of(second.client_id) != s1:
            return [first, second]
        second.disconnect()
        second = make_client()
    raise AssertionError("could not get a second subscriber onto the other shard")


def test_fanout_many_publishers_exactly_once_in_order(broker_factory):
    # Queues big enough that nothing is dropped: this checks routing, not the drop policy.
    b = broker_factory(config={"mqtt": {"max_mqueue_len": 100000, "max_inflight": 100}},
                       log_level="debug" if not IS_MOSQUITTO else "info")
    P = make_uid("fan")
    n_pub, n = 50, 20
    roles = {
        # name: (filters, qos, expected topics predicate)
        "all": ([f"{P}/#"], 2),
        "q1": ([f"{P}/+/q1"], 1),
        "exact": ([f"{P}/p7/q2", f"{P}/p13/q2", f"{P}/p49/q1"], 2),
        "p1": ([f"{P}/p1/+"], 1),
    }
    subs = {}
    for role, (filters, qos) in roles.items():
        def mk(filters=filters, qos=qos, role=role):
            c = b.client(make_uid(f"sub-{role}"), version=5, max_inflight=100)
            c.subscribe(filters, qos=qos)
            return c
        subs[role] = place_on_both_shards(b, mk)

    # Raw-socket publishers: each writes its messages in order, pipelined, and a thread per
    # publisher completes the acknowledgements. (paho's own queue can reorder QoS 1/2
    # messages under a race between the caller's thread and its network thread.)
    pubs = []
    for i in range(n_pub):
        r = b.raw(version=5 if i % 2 else 4, timeout=30)
        ack = r.connect(make_uid(f"pub{i}"))
        assert ack.props.get("receive_maximum", 65535) >= 2 * n, "window too small for the test"
        pubs.append(r)
    for seq in range(n):
        for i, r in enumerate(pubs):
            r.send(mqttraw.publish(f"{P}/p{i}/q1", f"{i}:1:{seq}", qos=1, pid=2 * seq + 1, version=r.version)
                   + mqttraw.publish(f"{P}/p{i}/q2", f"{i}:2:{seq}", qos=2, pid=2 * seq + 2, version=r.version))
    errors = []

    def complete(r):
        try:
            done = 0
            while done < 2 * n:
                pkt = r.recv_packet()
                if pkt.type == mqttraw.PUBREC:
                    assert pkt.rc < 0x80, pkt
                    r.send(mqttraw.pubrel(pkt.pid, version=r.version))
                elif pkt.type in (mqttraw.PUBACK, mqttraw.PUBCOMP):
                    assert pkt.rc < 0x80, pkt
                    done += 1
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=complete, args=(r,), daemon=True) for r in pubs]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    assert not errors, errors[:3]
    assert not any(t.is_alive() for t in threads), "publishes not all acknowledged"

    def expected(role):
        filters = roles[role][0]
        out = collections.Counter()
        for i in range(n_pub):
            for q in (1, 2):
                t = f"{P}/p{i}/q{q}"
                if any(_match(f, t) for f in filters):
                    out[(i, q)] = n
        return out

    for role, clients in subs.items():
        want = expected(role)
        total = sum(want.values())
        for c in clients:
            msgs = c.expect_messages(total, timeout=max(5, deadline - time.monotonic() + 10))
            extra = c.drain(settle=0.3)
            assert not extra, f"{role}: {len(extra)} extra messages, e.g. {extra[:3]}"
            per = collections.defaultdict(list)
            for m in msgs:
                i, q, seq = (int(x) for x in m.text.split(":"))
                assert m.topic == f"{P}/p{i}/q{q}"
                assert m.qos == min(q, roles[role][1])
                per[(i, q)].append(seq)
            assert {k: len(v) for k, v in per.items()} == dict(want), f"{role}: wrong counts"
            for k, seqs in per.items():
                assert seqs == list(range(n)), f"{role}: publisher {k} out of order or duplicated: {seqs}"


def _match(flt, topic):
    f, t = flt.split("/"), topic.split("/")
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t) or (level != "+" and level != t[i]):
            return False
    return len(f) == len(t)
