"""The start on a port another socket still listens on (`shard::lock`,
`BIND_STALE_LISTENER_WAIT_MAX`), and what the start logs at `info`.

A killed ringmq's listeners outlive its process for a few milliseconds and
share the SO_REUSEPORT group the new shards would join; the start waits
until nothing listens on its address, and refuses after 5 s. Here a
listener of this test, with SO_REUSEPORT, plays the killed broker's."""
from __future__ import annotations

import socket
import time

import pytest

from conftest import free_port

pytestmark = pytest.mark.ringmq_only("start-up port wait")


def reuseport_listener(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    s.bind(("127.0.0.1", port))
    s.listen(16)
    return s


def test_start_waits_for_an_earlier_listener_then_serves(broker_factory, uid):
    port = free_port()
    held = reuseport_listener(port)
    b = broker_factory(port=port, start=False)
    try:
        b.wait_log(r"waiting for the listeners of an earlier ringmq on this address", timeout=10)
        time.sleep(0.3)
        assert "every shard listens" not in b.log(), "listened while another socket still did"
    finally:
        held.close()
    b.wait_log(r"the earlier listeners closed", timeout=5)
    b.wait_ready()
    c = b.client(uid("after"))  # a real client gets its CONNACK
    c.subscribe(uid("t"), qos=1)


def test_start_refuses_when_the_listener_stays(broker_factory):
    port = free_port()
    held = reuseport_listener(port)
    try:
        b = broker_factory(port=port, start=False)
        code = b.wait_exit(timeout=15)
        assert code == 1
        log = b.log()
        assert f"cannot listen on 127.0.0.1:{port}" in log, log[-2000:]
        assert "still listen there with SO_REUSEPORT after 5 s" in log, log[-2000:]
    finally:
        held.close()


def test_info_log_has_no_storage_crate_chatter(broker_factory, tmp_path, uid):
    """At `info` the embedded store's crates say warnings only, across a
    create and a recovery (restart)."""
    port = free_port()
    cfg = {"node": {"data_dir": str(tmp_path / "data")},
           "durable_sessions": {"enable": True, "sync": "batch"}}
    b = broker_factory(config=cfg, port=port)
    s = b.client(uid("p"), version=5, clean=False, session_expiry=3600)
    s.subscribe(uid("t"), qos=1)
    s.disconnect()
    b.close_clients()
    b.stop()
    b = broker_factory(config=cfg, port=port)
    b.wait_log(r"durable sessions restored", timeout=10)
    for log in (b.log(),):
        noisy = [l for l in log.splitlines() if ("fjall::" in l or "lsm_tree::" in l)
                 and " INFO " in l]
        assert not noisy, noisy[:5]
