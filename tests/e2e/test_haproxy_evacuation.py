"""A real HAProxy (Debian's `haproxy`, started here on free ports) in front of a 3-node cluster,
health-checking each node's `GET /api/v5/load_rebalance/availability_check` with
`option httpchk` (issue 14, "How it is shown"): once a node is evacuated, HAProxy stops sending
it new clients, and the MQTT 3.1.1 clients it evicts reconnect through HAProxy onto the other
nodes; after `stop`, HAProxy sends clients to it again."""
from __future__ import annotations

import time

import pytest

from cluster import Cluster
from haproxy import haproxy_in_front
from conftest import MqttClient

pytestmark = [pytest.mark.timeout(120), pytest.mark.ringmq_only("evacuation behind HAProxy")]



@pytest.fixture(scope="module")
def cluster3(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("haproxy-cluster"), n=3).start()
    try:
        c.wait_running(3)
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def haproxy(cluster3, tmp_path_factory):
    with haproxy_in_front(cluster3.nodes, tmp_path_factory.mktemp("haproxy"), maxconn=2000) as port:
        yield port


def node_of(cluster3, client_id: str) -> int:
    """The index of the node holding `client_id`'s connection (the clients API answers for the
    whole cluster, naming the node)."""
    by_name = {n.node_name: n.index for n in cluster3.nodes}
    code, body, _ = cluster3.nodes[1].api("GET", f"/api/v5/clients/{client_id}")
    assert code == 200 and body.get("connected"), (client_id, body)
    return by_name[body["node"]]


def wait_available(node, want: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code, _, _ = node.api("GET", "/api/v5/load_rebalance/availability_check")
        if code == want:
            return
        assert time.monotonic() < deadline, f"availability_check {code}, want {want}"
        time.sleep(0.05)


def test_haproxy_steers_clients_off_an_evacuated_node_and_back(cluster3, haproxy):
    evacuated = cluster3.nodes[0]
    # Clients through HAProxy spread over the three nodes (round robin).
    clients = [MqttClient(haproxy, f"hap-{i}", version=4) for i in range(12)]
    where = {c.client_id: node_of(cluster3, c.client_id) for c in clients}
    assert set(where.values()) == {0, 1, 2}, where
    on_evacuated = [c for c in clients if where[c.client_id] == 0]

    code, body, _ = evacuated.api("POST", f"/api/v5/load_rebalance/{evacuated.node_name}/evacuation/start",
                                  {"wait_health_check": 2, "conn_evict_rate": 5, "wait_takeover": 1})
    assert code == 200, body
    wait_available(evacuated, 503)
    # HAProxy checks every 200 ms and takes a node out after one failed check; the node still
    # accepts for 2 s, which is what lets HAProxy notice before anyone is refused.
    time.sleep(0.6)
    newcomers = [MqttClient(haproxy, f"hap-new-{i}", version=4) for i in range(6)]
    assert all(node_of(cluster3, c.client_id) != 0 for c in newcomers)

    # The evicted 3.1.1 clients see their connection closed, reconnect through HAProxy, and land
    # on the other nodes.
    returned = []
    for c in on_evacuated:
        c.wait_disconnected(20)
        again = MqttClient(haproxy, c.client_id, version=4)  # paho's own loop ends with the close
        returned.append(again)
        assert node_of(cluster3, c.client_id) != 0, c.client_id
    code, s, _ = evacuated.api("GET", "/api/v5/load_rebalance/status")
    assert code == 200 and s["stats"]["initial_connected"] == len(on_evacuated), s
    deadline = time.monotonic() + 10
    while s["state"] not in ("evicting_sessions", "prohibiting"):
        assert time.monotonic() < deadline, s
        time.sleep(0.1)
        _, s, _ = evacuated.api("GET", "/api/v5/load_rebalance/status")
    assert s["stats"]["current_connected"] == 0, s

    # Stopped: HAProxy takes the node back and round robin reaches it again.
    code, body, _ = evacuated.api("POST", f"/api/v5/load_rebalance/{evacuated.node_name}/evacuation/stop")
    assert code == 200, body
    wait_available(evacuated, 200)
    time.sleep(0.6)
    later = [MqttClient(haproxy, f"hap-later-{i}", version=4) for i in range(6)]
    assert 0 in {node_of(cluster3, c.client_id) for c in later}
    for c in clients + newcomers + later + returned:
        c.stop()
