"""node.idle_poll_us: how long an idle shard keeps polling before it sleeps.

The rest of the suite runs with the default (50 µs); these runs cover both
ends of the range, where a shard either sleeps at once or polls for up to
10 ms, with traffic across the two shards and packets larger than one read,
and check that polling ends: an idle broker does not keep its CPUs busy."""
import os
import time

import pytest

from clients import MqttClient
from conftest import make_uid

pytestmark = pytest.mark.ringmq_only("node.idle_poll_us is ringmq's setting")

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 of stat(5), 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


@pytest.mark.parametrize("idle_poll_us", [0, 10_000])
def test_traffic_with_idle_poll(broker_factory, idle_poll_us):
    b = broker_factory(config={"node": {"idle_poll_us": idle_poll_us, "shards": 2}})
    topic = f"idle/{make_uid()}"
    # Several subscribers, so the two shards (the kernel spreads connections
    # over their listeners) both carry traffic.
    subs = [MqttClient(b.port, client_id=make_uid("s")) for _ in range(4)]
    for s in subs:
        s.subscribe(topic, qos=1)
    pub = MqttClient(b.port, client_id=make_uid("p"))
    for i in range(200):
        pub.publish(topic, f"{i}", qos=1)
    # Larger than a read: assembled over several reads of one socket.
    big = os.urandom(300_000)
    pub.publish(topic, big, qos=1)
    for s in subs:
        got = s.expect_messages(201)
        assert [m.text for m in got[:200]] == [f"{i}" for i in range(200)]
        assert got[200].payload == big
    for c in subs + [pub]:
        c.disconnect()
    b.check_alive()


def test_idle_broker_stops_polling(broker_factory):
    # 1 ms of polling after each wake-up: the shards' 100 ms ticks alone
    # would then cost 1 % of a CPU each, polling without end 100 %.
    b = broker_factory(config={"node": {"idle_poll_us": 1_000, "shards": 2}})
    c = MqttClient(b.port, client_id=make_uid())
    c.subscribe(f"idle/{make_uid()}", qos=0)
    time.sleep(0.5)
    before = _cpu_seconds(b.proc.pid)
    time.sleep(2.0)
    used = _cpu_seconds(b.proc.pid) - before
    # Two shards polling without end would use about 4 CPU-seconds here;
    # sleeping shards wake for their 100 ms tick and a ping now and then.
    assert used < 0.5, f"idle broker used {used:.2f} CPU-seconds in 2 s"
    c.disconnect()
    b.check_alive()
