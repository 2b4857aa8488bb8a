"""The node's stop reaches every shard by a wake-up, not at its next tick
(src/shard/stop.rs, `NodeHandle::request_stop`): the signal thread sends the stop
through each shard's inbox, so a shard asleep with nothing to do starts its stop
at once. Before, each shard's 100 ms tick looked at a flag: a shard started its
stop up to a tick after the signal (about 70 ms for the later of two shards, on
average), and a shard whose timer did not run did not stop at all (a CI failure of
test_graceful_shutdown)."""
import re
import signal
import statistics
from datetime import datetime

import pytest

from mqttraw import V311

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.ringmq_only("ringmq's stop path and its log lines"),
]

SHARDS = 2
RUNS = 7
# Well under the 100 ms tick the old design waited for, with room for a loaded
# machine's scheduler delays.
MEDIAN_MAX_MS = 40.0

STAMP = re.compile(r"^(\S+Z)")


def stamp(line: str) -> datetime:
    m = STAMP.match(line)
    assert m, line
    return datetime.fromisoformat(m.group(1).replace("Z", "+00:00"))


def stop_delay_ms(broker_factory, uid) -> float:
    """Milliseconds from the signal thread's `stopping` to the later shard's
    `shard stopping`, both in the broker's own log (its clock, not ours)."""
    b = broker_factory(shards=SHARDS)
    # Idle clients (no traffic after CONNACK), so the shards sleep.
    clients = [b.raw(connect=uid(f"c{i}")) for i in range(2)]
    clients.append(b.raw(version=V311, connect=uid("v3")))
    b.send_signal(signal.SIGTERM)
    for c in clients:
        c.wait_closed(timeout=10)
    assert b.wait_exit(10) == 0, b.tail(30)
    asked = stamp(b.wait_log(r"ringmq: stopping signal=15")[0])
    started = [stamp(l) for l in b.wait_log(r"shard stopping shard=", count=SHARDS)]
    assert len(b.wait_log(r"stop requested shard=", count=SHARDS)) == SHARDS
    return (max(started) - asked).total_seconds() * 1000


def test_every_shard_starts_its_stop_at_once_after_sigterm(broker_factory, uid):
    delays = [stop_delay_ms(broker_factory, uid) for _ in range(RUNS)]
    print("signal to the later shard's stop, ms:", [round(d, 1) for d in delays])
    assert statistics.median(delays) < MEDIAN_MAX_MS, f"signal to the later shard's stop, ms: {delays}"
