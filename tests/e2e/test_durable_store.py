"""The builtin store's files through a real broker (issue 15 item 2): a store damaged
anywhere but its torn tail refuses the start with a message naming the file and the fix,
`--durable-recover-damaged` moves it aside and starts, a torn tail (a write a crash cut) is
cut and the rest restored, and the disk returns to its baseline once queues drain. The log
engine (`durable_sessions.engine = "log"`, the default) keeps its segments in
`data_dir/durable-log/shard-N/`."""
from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from conftest import free_port
from test_durable_sessions import persistent, start

pytestmark = pytest.mark.ringmq_only("durable sessions")


def segments(tmp_path: Path) -> list[Path]:
    root = tmp_path / "durable-data" / "durable-log"
    return sorted(root.glob("shard-*/*.seg"))


def store_bytes(tmp_path: Path) -> int:
    return sum(p.stat().st_size for p in segments(tmp_path))


def queue_offline(b, uid, n: int, payload: bytes = b"x") -> tuple[str, str]:
    """A persistent subscriber goes away; `n` QoS 1 messages queue for it."""
    sub_id, topic = uid("sub"), uid("t")
    s = persistent(b, sub_id, 5)
    s.subscribe(topic, qos=1)
    s.disconnect()
    p = b.client(uid("pub"))
    for i in range(n):
        p.publish(topic, payload + str(i).encode(), qos=1)
    p.disconnect()
    return sub_id, topic


def the_one_segment_with_data(tmp_path: Path) -> Path:
    segs = [s for s in segments(tmp_path) if s.stat().st_size > 16]
    assert segs, f"no segment with data in {segments(tmp_path)}"
    return max(segs, key=lambda s: s.stat().st_size)


def test_a_damaged_store_is_refused_then_moved_aside_on_request(broker_factory, tmp_path, uid):
    port = free_port()
    b = start(broker_factory, tmp_path, "always", port)
    queue_offline(b, uid, 20)
    b.close_clients()
    assert b.stop() == 0
    seg = the_one_segment_with_data(tmp_path)
    data = bytearray(seg.read_bytes())
    # A byte inside the first group: valid groups follow it, so it is no torn tail.
    data[40] ^= 0x01
    seg.write_bytes(bytes(data))

    bad = start(broker_factory, tmp_path, "always", port, start=False)
    assert bad.wait_exit(15) != 0
    log = bad.log()
    assert "is damaged" in log and str(seg) in log, log[-3000:]
    assert "--durable-recover-damaged" in log, log[-3000:]
    assert seg.read_bytes() == bytes(data), "the refused start changed the store"

    again = start(broker_factory, tmp_path, "always", port, spawn=False)
    again.argv.append("--durable-recover-damaged")
    again.start()
    again.wait_log(r"moved the damaged durable store .* aside")
    aside = list((tmp_path / "durable-data" / "durable-log").glob(f"{seg.parent.name}.damaged-*"))
    assert aside and (aside[0] / seg.name).read_bytes() == bytes(data)
    c = again.client(uid("after"))  # it serves
    c.subscribe(uid("t"), qos=1)


def test_a_torn_tail_is_cut_and_the_rest_restored(broker_factory, tmp_path, uid):
    port = free_port()
    b = start(broker_factory, tmp_path, "always", port)
    sub_id, _ = queue_offline(b, uid, 30)
    b.close_clients()
    assert b.stop() == 0
    seg = the_one_segment_with_data(tmp_path)
    size = seg.stat().st_size
    # What a crash mid-write leaves: the start of a group, cut.
    with open(seg, "ab") as f:
        f.write(bytes.fromhex("514d4752") + (400).to_bytes(4, "little") + b"\x07" * 50)
    b = start(broker_factory, tmp_path, "always", port)
    b.wait_log(r"cut a torn tail")
    assert seg.stat().st_size == size
    s = persistent(b, sub_id, 5)
    assert s.session_present is True
    got = sorted(int(m.payload[1:]) for m in s.expect_messages(30))
    assert got == list(range(30))


def test_the_disk_returns_to_its_baseline_after_the_queue_drains(broker_factory, tmp_path, uid):
    """About 24 MiB queue for an offline session (more than the store's compaction
    threshold); once its client took them all, the store shrinks below
    `DURABLE_LOG_COMPACT_MIN_BYTES` + one segment (4 + 8 MiB)."""
    port = free_port()
    b = start(broker_factory, tmp_path, "batch", port,
              extra={"mqtt": {"max_mqueue_len": 100000, "max_inflight": 100}})
    n, payload = 6000, b"p" * 4000
    sub_id, topic = queue_offline(b, uid, n, payload)
    full = store_bytes(tmp_path)
    assert full > 20 << 20, full
    s = persistent(b, sub_id, 5)
    assert len(s.expect_messages(n, timeout=60)) == n
    s.disconnect()
    deadline = time.monotonic() + 30
    # The writer compacts when it finds no batch waiting: a few keepalive-free
    # writes (a retained message set and cleared) give it turns.
    p = b.client(uid("pub"))
    while store_bytes(tmp_path) >= (12 << 20) and time.monotonic() < deadline:
        p.publish(uid("nudge"), b"r", qos=1, retain=True)
        time.sleep(0.2)
    assert store_bytes(tmp_path) < 12 << 20, (full, store_bytes(tmp_path), segments(tmp_path))
    b.close_clients()
    assert b.stop() == 0
    # What is left restores: the session, with nothing queued.
    b = start(broker_factory, tmp_path, "batch", port)
    s = persistent(b, sub_id, 5)
    assert s.session_present is True
    s.expect_no_message(1.0)
