"""Shared subscriptions across nodes (issue 13, item 3) with real processes: `$share/g/f` gives
each message to exactly one member cluster-wide, spread by `mqtt.shared_subscription_strategy`.

One 3-node static cluster for the module (tests/e2e/cluster.py). Node 0 runs the `local`
strategy, node 1 the default `round_robin`, node 2 `random`: the strategy is the publisher's
node's, so one cluster shows all three (a publisher on node 0 prefers node 0's members, one on
node 1 takes the members in turn, one on node 2 draws them).
"""
from __future__ import annotations

import collections
import time

import pytest

from cluster import Cluster
from conftest import make_uid

pytestmark = [pytest.mark.timeout(300), pytest.mark.ringmq_only("ringmq's cluster")]

# A leaving member's route reaches the publisher's node in milliseconds; UNSUBACK and DISCONNECT
# do not wait for it (only SUBACK does), so the tests leave it this long.
ROUTE_SETTLE_S = 1.0


@pytest.fixture(scope="module")
def c3(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("shared3"), n=3, strategy="static",
                per_node={0: {"mqtt": {"shared_subscription_strategy": "local"}},
                          2: {"mqtt": {"shared_subscription_strategy": "random"}}}).start()
    c.wait_running(3)
    yield c
    c.stop()


def collect(clients, total, timeout=20.0, settle=1.0) -> dict[int, list[bytes]]:
    """Drain `clients` until `total` messages arrived in all, then `settle` seconds more (anything
    extra, e.g. a duplicate, shows); {client index: payloads}."""
    got: dict[int, list[bytes]] = collections.defaultdict(list)
    deadline = time.monotonic() + timeout
    n = 0
    while n < total and time.monotonic() < deadline:
        for i, c in enumerate(clients):
            for m in c.drain():
                got[i].append(m.payload)
                n += 1
        time.sleep(0.02)
    time.sleep(settle)
    for i, c in enumerate(clients):
        got[i].extend(m.payload for m in c.drain())
    return got


def publish_all(pub, topic: str, n: int, qos: int = 1) -> list[bytes]:
    payloads = [f"{i:05}".encode() for i in range(n)]
    infos = [pub.publish(topic, p, qos=qos, wait=False) for p in payloads]
    for info in infos:
        info.wait_for_publish(30)
        assert info.is_published()
    return payloads


def exactly_once(got: dict[int, list[bytes]], sent: list[bytes]) -> None:
    everything = sorted(p for ps in got.values() for p in ps)
    assert everything == sorted(sent), (
        f"each message exactly once across the group: {len(everything)} received of {len(sent)}, "
        f"{len(set(everything))} distinct")
    for i, ps in got.items():
        assert ps == sorted(ps), f"member {i}: one publisher's messages out of order"


def group_on(c3, nodes: list[int], flt: str, qos: int = 1, tag: str = "m"):
    members = []
    for i in nodes:
        m = c3.nodes[i].client(make_uid(f"{tag}{i}"))
        m.subscribe(flt, qos=qos)
        members.append(m)
    return members


def test_round_robin_gives_every_member_on_three_nodes_its_share(c3):
    topic = make_uid("rr")
    members = group_on(c3, [0, 1, 2], f"$share/g/{topic}")
    # A 4th client, on a round_robin node, within the broker's Receive Maximum.
    pub = c3.nodes[1].client(make_uid("pub"), max_inflight=20)
    n = 300
    sent = publish_all(pub, topic, n, qos=1)
    got = collect(members, n)
    exactly_once(got, sent)
    shares = {c3.nodes[i].node_name: len(got[i]) for i in range(3)}
    for name, k in shares.items():
        assert 0.2 * n <= k <= 0.5 * n, f"{name} got {k} of {n}: {shares}"
    for client in members + [pub]:
        client.disconnect()


def test_random_spreads_over_members_on_three_nodes(c3):
    topic = make_uid("random")
    members = group_on(c3, [0, 1, 2], f"$share/g/{topic}")
    pub = c3.nodes[2].client(make_uid("pub"), max_inflight=20)  # node 2: `random`
    n = 300
    sent = publish_all(pub, topic, n, qos=1)
    got = collect(members, n)
    exactly_once(got, sent)
    shares = {c3.nodes[i].node_name: len(got[i]) for i in range(3)}
    # Binomial(300, 1/3): 100 +- 8 per member; the bounds are about 5 standard deviations out.
    for name, k in shares.items():
        assert 0.2 * n <= k <= 0.5 * n, f"{name} got {k} of {n}: {shares}"
    for client in members + [pub]:
        client.disconnect()


def test_local_prefers_members_on_the_publishers_node_then_the_others(c3):
    topic = make_uid("local")
    flt = f"$share/g/{topic}"
    members = group_on(c3, [0, 1, 2], flt)
    pub = c3.nodes[0].client(make_uid("pub"), max_inflight=20)  # node 0: `local`
    n = 100
    sent = publish_all(pub, topic, n)
    got = collect(members, n)
    exactly_once(got, sent)
    assert len(got[0]) == n, {i: len(v) for i, v in got.items()}

    # The member on the publisher's node leaves: the other nodes' members get everything.
    members[0].unsubscribe(flt)
    time.sleep(ROUTE_SETTLE_S)
    payloads = [f"late-{i:05}".encode() for i in range(n)]
    for p in payloads:
        pub.publish(topic, p, qos=1)
    got = collect(members, n)
    exactly_once(got, payloads)
    assert not got[0], "the member that left got messages"
    assert got[1] and got[2], {i: len(v) for i, v in got.items()}
    for client in members + [pub]:
        client.disconnect()


def test_a_member_leaving_leaves_the_rest_everything(c3):
    topic = make_uid("leave")
    flt = f"$share/g/{topic}"
    members = group_on(c3, [0, 1, 2], flt)
    pub = c3.nodes[2].client(make_uid("pub"), max_inflight=20)
    n = 90
    sent = publish_all(pub, topic, n)
    got = collect(members, n)
    exactly_once(got, sent)
    assert all(got[i] for i in range(3)), {i: len(v) for i, v in got.items()}

    # The member on node 1 disconnects (clean session: its subscriptions end with it).
    members[1].disconnect()
    time.sleep(ROUTE_SETTLE_S)
    rest = [members[0], members[2]]
    sent = [f"after-{i:05}".encode() for i in range(n)]
    for p in sent:
        pub.publish(topic, p, qos=1)
    got = collect(rest, n)
    exactly_once(got, sent)
    assert got[0] and got[1], {i: len(v) for i, v in got.items()}
    for client in rest + [pub]:
        client.disconnect()


@pytest.mark.parametrize("qos", [1, 2])
def test_a_shared_group_beside_an_ordinary_subscriber_on_another_node(c3, qos):
    topic = make_uid(f"mixed/q{qos}")
    members = group_on(c3, [1, 2], f"$share/g/{topic}", qos=qos)
    ordinary = c3.nodes[2].client(make_uid("ord"))
    ordinary.subscribe(topic, qos=qos)
    pub = c3.nodes[0].client(make_uid("pub"), max_inflight=20)  # `local`: no member on node 0
    n = 100
    sent = publish_all(pub, topic, n, qos=qos)
    got = collect(members, n)
    exactly_once(got, sent)
    assert got[0] and got[1], {i: len(v) for i, v in got.items()}
    plain = ordinary.expect_messages(n, timeout=20)
    assert [m.payload for m in plain] == sent, "the ordinary subscriber gets every message in order"
    ordinary.expect_no_message(0.5)
    for client in members + [ordinary, pub]:
        client.disconnect()
