"""Store bounds of durable sessions (issue 15, "limits"; `session::store_quota`):
`durable_sessions.max_session_size` bounds what one durable session keeps in the
store, `max_store_size` what all of a node's durable sessions keep (shared equally
by its shards). A message past either bound is not queued for that session: it is
dropped and counted (`ringmq_durable_store_refused_total{bound=...}`, and in
`ringmq_messages_dropped_total{reason="queue_full"}`); what was queued within
the bound survives a restart and is counted again after it."""
from __future__ import annotations

import signal
import time

import pytest

from conftest import free_port
from test_durable_config import assert_refused
from test_durable_sessions import persistent, restart, start
from test_prometheus import samples, scrape, total

pytestmark = pytest.mark.ringmq_only("durable session store bounds")

# One queued message's store bytes: a 64-byte record overhead, the topic, the payload.
PAYLOAD = 100
OVERHEAD = 64


def stored(topic: str) -> int:
    return OVERHEAD + len(topic) + PAYLOAD


def fill(b, uid, topic: str, n: int) -> None:
    p = b.client(uid("pub"))
    for i in range(n):
        p.publish(topic, f"{i:0>{PAYLOAD}}", qos=1)
    p.disconnect()


def metrics(b) -> dict[str, float]:
    status, text, _ = scrape(b)
    assert status == 200, text
    return samples(text)


def test_a_session_past_max_session_size_drops_and_counts(broker_factory, tmp_path, uid):
    """With max_session_size = 2KB an offline persistent subscriber keeps the
    messages that fit (2048 // per-message bytes), in order; the rest are
    counted as refused by the session bound. Fails without the bound: all 40
    would be queued (max_mqueue_len is 1000)."""
    port = free_port()
    limits = {"durable_sessions": {"max_session_size": "2KB"}}
    b = start(broker_factory, tmp_path, "batch", port, limits, shards=1)
    sub_id, topic = uid("sub"), uid("t")
    s = persistent(b, sub_id, 5)
    s.subscribe(topic, qos=1)
    s.disconnect()
    fill(b, uid, topic, 40)
    fits = 2048 // stored(topic)
    m = metrics(b)
    assert m['ringmq_durable_store_refused_total{bound="session"}'] == 40 - fits
    assert m['ringmq_durable_store_refused_total{bound="node"}'] == 0
    assert total(m, "ringmq_durable_store_bytes") == fits * stored(topic)
    assert m['ringmq_messages_dropped_total{reason="queue_full"}'] == 40 - fits
    # What fitted survives a restart, and is counted again once restored.
    b = restart(broker_factory, tmp_path, b, "batch", signal.SIGTERM, limits)
    assert total(metrics(b), "ringmq_durable_store_bytes") == fits * stored(topic)
    s = persistent(b, sub_id, 5)
    assert s.session_present is True
    got = [m.payload.decode() for m in s.expect_messages(fits)]
    assert got == [f"{i:0>{PAYLOAD}}" for i in range(fits)]
    s.expect_no_message(0.5)
    # Delivered and acknowledged: the bytes are given back (the last PUBACKs
    # may still be on their way).
    deadline = time.monotonic() + 10
    while total(metrics(b), "ringmq_durable_store_bytes") != 0:
        assert time.monotonic() < deadline, metrics(b)
        time.sleep(0.05)


def test_max_store_size_bounds_every_session_of_the_node(broker_factory, tmp_path, uid):
    """max_store_size = 3KB on one shard, two offline subscribers of one topic:
    together they keep what fits in 3 KiB, the rest is refused by the node
    bound; a session that is not durable (expiry 0) is not bounded by it."""
    port = free_port()
    limits = {"durable_sessions": {"max_store_size": "3KB"}}
    b = start(broker_factory, tmp_path, "batch", port, limits, shards=1)
    topic = uid("t")
    for name in ("a", "b"):
        s = persistent(b, uid(name), 5)
        s.subscribe(topic, qos=1)
        s.disconnect()
    live = b.client(uid("live"), version=5)
    live.subscribe(topic, qos=1)
    fill(b, uid, topic, 20)
    fits = 3072 // stored(topic)
    m = metrics(b)
    assert total(m, "ringmq_durable_store_bytes") == fits * stored(topic)
    assert m['ringmq_durable_store_refused_total{bound="node"}'] == 2 * 20 - fits
    assert m['ringmq_durable_store_refused_total{bound="session"}'] == 0
    assert len(live.expect_messages(20)) == 20


@pytest.mark.parametrize("key,value,fragment", [
    ("max_session_size", "512", "from 1KB to 1024GB"),
    ("max_session_size", "2TB", "from 1KB to 1024GB"),
    ("max_store_size", "lots", "from 1KB to 65536GB"),
])
def test_a_bad_store_bound_stops_the_start(broker_factory, key, value, fragment):
    assert_refused(broker_factory, f"durable_sessions.{key}",
                   config={"durable_sessions": {key: value}}, also=(fragment,))
