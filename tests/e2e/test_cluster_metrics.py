"""Per-peer cluster metrics with real values (issue 13, item 6), scraped from a real 2-node
cluster: frames and bytes both ways, the forwarding window's depth while a peer does not
acknowledge, forwarded messages dropped by reason and QoS when that peer dies, and the link's
round-trip time.
"""
from __future__ import annotations

import signal
import time

import pytest

from cluster import Cluster
from conftest import make_uid
from test_cluster_membership import scrape

pytestmark = [pytest.mark.timeout(300), pytest.mark.ringmq_only("ringmq's cluster")]

DETECT_BOUND_S = 10.0


@pytest.fixture
def c2(tmp_path):
    c = Cluster(tmp_path, n=2, strategy="static").start()
    c.wait_running(2)
    yield c
    c.stop()


def wait_series(node, check, timeout=DETECT_BOUND_S):
    """Scrapes `node` until `check(series)` holds; returns the series."""
    deadline = time.monotonic() + timeout
    while True:
        series = scrape(node)
        if check(series):
            return series
        assert time.monotonic() < deadline, {k: v for k, v in series.items() if "cluster_peer" in k}
        time.sleep(0.2)


def test_forwarded_messages_show_in_frames_bytes_depth_and_rtt(c2):
    a, b = c2.nodes
    to_b, from_a = f'peer="{b.node_name}"', f'peer="{a.node_name}"'
    before_a, before_b = scrape(a), scrape(b)
    topic = make_uid("metrics/fwd")
    sub = b.client(make_uid("sub"))
    sub.subscribe(topic, qos=1)
    pub = a.client(make_uid("pub"), max_inflight=20)
    n, payload = 400, b"p" * 200
    infos = [pub.publish(topic, payload, qos=1, wait=False) for _ in range(n)]
    for info in infos:
        info.wait_for_publish(20)
    assert len(sub.expect_messages(n, timeout=20)) == n

    def grown(series, before, name, peer, by):
        key = f"{name}{{{peer}}}"
        return series.get(key, 0) - before.get(key, 0) >= by

    # Every message crossed: at least its payload in bytes, at least one frame (batched).
    series = wait_series(a, lambda s: grown(s, before_a, "ringmq_cluster_peer_bytes_sent_total",
                                            to_b, n * len(payload))
                         and s.get(f"ringmq_cluster_peer_forward_window_depth{{{to_b}}}") == 0
                         and s.get(f"ringmq_cluster_peer_rtt_seconds{{{to_b}}}", 0) > 0)
    assert grown(series, before_a, "ringmq_cluster_peer_frames_sent_total", to_b, 1)
    assert 0 < series[f"ringmq_cluster_peer_rtt_seconds{{{to_b}}}"] < 1.0
    for reason in ("window_full", "link_down"):
        for qos in (0, 1, 2):
            key = f'ringmq_cluster_peer_forward_drops_total{{{to_b},reason="{reason}",qos="{qos}"}}'
            assert series[key] == 0, key
    series_b = scrape(b)
    assert grown(series_b, before_b, "ringmq_cluster_peer_bytes_received_total", from_a,
                 n * len(payload))
    assert grown(series_b, before_b, "ringmq_cluster_peer_frames_received_total", from_a, 1)
    # Acknowledgements go back: B sent frames to A.
    assert grown(series_b, before_b, "ringmq_cluster_peer_frames_sent_total", from_a, 1)


def test_a_silent_peer_fills_the_window_and_its_death_drops_by_reason_and_qos(c2):
    a, b = c2.nodes
    to_b = f'peer="{b.node_name}"'
    topic = make_uid("metrics/drop")
    sub = b.client(make_uid("sub"))
    sub.subscribe(topic, qos=0)
    pub = a.client(make_uid("pub"))
    depth = f"ringmq_cluster_peer_forward_window_depth{{{to_b}}}"
    b.send_signal(signal.SIGSTOP)  # alive for the link, but acknowledges nothing
    try:
        for i in range(50):
            pub.publish(topic, f"{i}".encode(), qos=0, wait=False)
        # Before B is declared down (about 3.5 s): the window holds what B never acknowledged.
        seen = wait_series(a, lambda s: s.get(depth, 0) >= 1)[depth]
    finally:
        b.kill()  # SIGKILL also ends a stopped process
    # Declared down: what the window held is dropped, counted as link_down and QoS 0.
    drop = f'ringmq_cluster_peer_forward_drops_total{{{to_b},reason="link_down",qos="0"}}'
    series = wait_series(a, lambda s: s.get(drop, 0) >= seen and s.get(depth) == 0,
                         timeout=2 * DETECT_BOUND_S)
    other_qos = f'ringmq_cluster_peer_forward_drops_total{{{to_b},reason="link_down",qos="1"}}'
    assert series[other_qos] == 0
    pub.disconnect()
