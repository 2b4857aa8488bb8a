"""The broker reserves its descriptor table at start (src/shard/fd_table.rs).

Linux doubles a process's descriptor table when it fills, and in a
multi-threaded process each doubling waits for an RCU grace period (10-15 ms):
a shard accepting a connection storm stalled that long at 256, 512, 1024, ...
connections. Reserved at start, the table never grows during a storm."""
import resource

import pytest

from clients import MqttClient
from conftest import make_uid

pytestmark = pytest.mark.ringmq_only("the descriptor table reservation is ringmq's")


def _fd_table_size(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("FDSize:"):
                return int(line.split()[1])
    raise AssertionError("no FDSize in /proc/PID/status")


def test_table_reserved_for_the_listeners_connections(broker_factory):
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    b = broker_factory(config={"listeners": {"tcp": {"default": {"max_connections": 3000}}}})
    # 3,000 connections and 1,024 descriptors for the broker's own use,
    # within the open-file limit. A table that only grew on demand would be
    # 64 or 256 entries here.
    want = min(soft, 3000 + 1024)
    assert _fd_table_size(b.proc.pid) >= want
    # And the broker still works with it.
    c = MqttClient(b.port, client_id=make_uid())
    c.subscribe(f"fd/{make_uid()}", qos=0)
    c.disconnect()
    b.check_alive()
