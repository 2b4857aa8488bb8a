"""Evacuating a node of a 3-node cluster while QoS 1 traffic flows (issue 14, item 1 and "How it
is shown", at a small scale): the evicted clients reconnect where the Server Reference (MQTT 5)
or the test (MQTT 3.1.1, as a load balancer would) sends them, their persistent sessions follow
them across nodes (cross-node takeover) with their subscriptions and what was queued meanwhile,
and no QoS 1 message is lost; the evacuated node ends holding no session."""
from __future__ import annotations

import threading
import time

import pytest

from cluster import Cluster
from conftest import MqttClient

pytestmark = [pytest.mark.timeout(180), pytest.mark.ringmq_only("cluster evacuation")]

MESSAGES = 300
TOPIC = "evac/stream"


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("evac-cluster"), n=3).start()
    try:
        c.wait_running(3)
        yield c
    finally:
        c.stop()


class Follower:
    """One subscriber that, when the server disconnects it, connects again with the same id:
    to the first Server Reference (v5) or to `fallback` (3.1.1: its connection is just
    closed, as a load balancer would send it elsewhere)."""

    def __init__(self, cluster3, node, client_id: str, version: int, persistent: bool, fallback):
        self.cluster3, self.client_id, self.version = cluster3, client_id, version
        self.persistent, self.fallback = persistent, fallback
        self.payloads: set[bytes] = set()
        self.disconnects = 0
        self.client = self._connect(node.host, node.listen_port)
        self.client.subscribe(TOPIC, qos=1)

    def _connect(self, host: str, port: int) -> MqttClient:
        kw = dict(version=self.version, host=host)
        if self.version == 5:
            kw.update(clean=not self.persistent, session_expiry=300 if self.persistent else 0)
        else:
            kw.update(clean=not self.persistent)
        return MqttClient(port, self.client_id, **kw)

    def collect(self) -> None:
        for m in self.client.drain():
            self.payloads.add(m.payload)

    def follow(self) -> None:
        """Wait for the eviction, then reconnect where told."""
        self.client.wait_disconnected(60)
        self.collect()
        self.disconnects += 1
        reference = self.client.disconnect_props.get("server_reference") if self.version == 5 else None
        if reference:
            host, port = reference.split()[0].rsplit(":", 1)
        else:
            host, port = self.fallback.host, self.fallback.listen_port
        self.client.stop()
        self.client = self._connect(host, int(port))
        if not self.persistent:
            self.client.subscribe(TOPIC, qos=1)


def test_evacuation_moves_clients_and_their_sessions_without_losing_qos1(cluster3):
    a, b, c = cluster3.nodes
    followers = (
        [Follower(cluster3, a, f"ev5p-{i}", 5, True, b) for i in range(8)]
        + [Follower(cluster3, a, f"ev3p-{i}", 4, True, c) for i in range(4)]
        + [Follower(cluster3, a, f"ev5c-{i}", 5, False, b) for i in range(3)]
    )
    publisher = MqttClient(c.listen_port, "ev-pub", version=5, host=c.host)
    stop = threading.Event()

    def publish():
        for i in range(MESSAGES):
            publisher.publish(TOPIC, f"m{i}".encode(), qos=1)  # waits for its PUBACK
            time.sleep(0.01)
        stop.set()

    t = threading.Thread(target=publish, daemon=True)
    t.start()
    time.sleep(0.5)
    code, body, _ = a.api("POST", f"/api/v5/load_rebalance/{a.node_name}/evacuation/start",
                          {"conn_evict_rate": 10, "wait_health_check": 0, "wait_takeover": 2,
                           "redirect_to": f"{b.host}:{b.listen_port} {c.host}:{c.listen_port}"})
    assert code == 200, body
    movers = [threading.Thread(target=f.follow, daemon=True) for f in followers]
    for m in movers:
        m.start()
    for m in movers:
        m.join(60)
    t.join(60)
    assert stop.is_set(), "the publisher did not finish"
    time.sleep(2)
    for f in followers:
        f.collect()

    by_name = {n.node_name: n for n in cluster3.nodes}
    for f in followers:
        assert f.disconnects == 1, f.client_id
        code, info, _ = b.api("GET", f"/api/v5/clients/{f.client_id}")
        assert code == 200 and info["connected"], (f.client_id, info)
        assert info["node"] != a.node_name, (f.client_id, info)
        assert by_name[info["node"]] in (b, c)
    want = {f"m{i}".encode() for i in range(MESSAGES)}
    for f in followers:
        if f.persistent:
            # Its subscription moved with its session: published before, during and after its
            # move, every message arrived (at least once).
            missing = sorted(want - f.payloads, key=lambda p: int(p[1:]))
            assert not missing, f"{f.client_id} lost {len(missing)}: {missing[:10]}"
    # The evacuated node keeps nothing: the sessions left with their clients.
    deadline = time.monotonic() + 15
    while True:
        _, s, _ = a.api("GET", "/api/v5/load_rebalance/status")
        if s["state"] == "prohibiting":
            break
        assert time.monotonic() < deadline, s
        time.sleep(0.1)
    assert s["stats"]["current_connected"] == 0 and s["stats"]["current_sessions"] == 0, s
    assert s["stats"]["initial_connected"] == len(followers), s
    code, body, _ = a.api("POST", f"/api/v5/load_rebalance/{a.node_name}/evacuation/stop")
    assert code == 200, body
    for f in followers:
        f.client.stop()
    publisher.stop()
