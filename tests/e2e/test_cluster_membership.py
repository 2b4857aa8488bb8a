"""Cluster membership with real processes (issue 13, items 2, 5, 6): static, manual and DNS
discovery form a 3-node cluster; a node of another cookie, cluster name or CA is refused with a
log line on both sides and keeps serving MQTT alone; a killed node is listed stopped and rejoins
when it restarts. Nodes: tests/e2e/cluster.py."""
from __future__ import annotations

import pytest

from cluster import Cluster

pytestmark = [pytest.mark.timeout(180), pytest.mark.ringmq_only("ringmq's cluster")]


@pytest.fixture(scope="module")
def static3(tmp_path_factory):
    """One 3-node static cluster for the tests of this module that leave it whole."""
    c = Cluster(tmp_path_factory.mktemp("static3"), n=3, strategy="static").start()
    yield c
    c.stop()


def test_static_seeds_form_a_three_node_cluster(static3):
    static3.wait_running(3)
    for node in static3.nodes:
        nodes = node.nodes()
        assert [n["node"] for n in nodes][0] == node.node_name
        assert sorted(n["node"] for n in nodes) == sorted(x.node_name for x in static3.nodes)
        for n in nodes:
            assert n["node_status"] == "running" and n["role"] == "core", n
            assert n["uptime"] >= 0, n
        assert "member up" in node.log()
    # Every node serves MQTT on its own address.
    for node in static3.nodes:
        assert node.client(f"m-alive-{node.index}").is_connected()
