"""Back-pressure from a full subscriber queue to its publishers (docs/adr/0002-subscriber-backpressure.md).

Nothing ringmq acknowledged is lost to an online subscriber that keeps reading: when
its queue (`mqtt.max_mqueue_len`) is full, the publishers of its messages are paused
(their sockets are not read) until it drains. A subscriber that makes no progress for
`mqtt.max_publisher_hold_ms` is stalled: its publishers resume and its messages are
dropped and counted. Publishers of other subscribers are never paused.
"""
from __future__ import annotations

import os
import re
import threading

import pytest

from conftest import IS_MOSQUITTO
from mqttraw import RawClient
from test_loadgen import loadgen

pytestmark = [pytest.mark.timeout(120),
              pytest.mark.ringmq_only("back-pressure (mosquitto drops past max_queued_messages)")]

# Each publisher keeps up to this many messages on their way to the subscriber: the
# broker may hold PUBLISHERS x OUTSTANDING for it, ten times the default queue
# (1000) plus window (1000).
PUBLISHERS = 50
OUTSTANDING = 400


@pytest.mark.parametrize("shards, protocol", [(1, 4), (2, 5)], ids=["1-shard-v3.1.1", "2-shards-v5"])
def test_fanin_with_default_config_loses_nothing(broker_factory, tmp_path, shards, protocol):
    """Many QoS 1 publishers, one subscriber that acknowledges as fast as it can, the
    default config: every message the broker acknowledged reaches the subscriber. With
    two shards most publishers are on the other shard than the subscriber's."""
    b = broker_factory(config={"node": {"shards": shards}})
    tag = f"bp{os.getpid()}s{shards}"
    r = loadgen(tmp_path, "fanin", "-h", "127.0.0.1", "-p", str(b.listen_port),
                "-c", str(PUBLISHERS), "--subscribers", "1", "-q", "1", "-V", str(protocol),
                "-t", f"{tag}/%i", "--filter", f"{tag}/#", "--max-outstanding", str(OUTSTANDING),
                "--warmup", "0.3", "-d", "2", "--drain", "20", "--client-id-prefix", tag,
                timeout=90)
    assert r["errors_total"] == 0, r["errors"]
    assert r["clients"]["ready"] == r["clients"]["planned"] == PUBLISHERS + 1
    assert r["sent"] > 0
    assert r["lost"] == 0 and r["received"] == r["expected"] == r["sent"], \
        (r["lost"], r["received"], r["expected"])
    assert r["duplicated"] == 0
    b.check_alive()


def stuck_subscriber(b, client_id: str, topic_filter: str) -> RawClient:
    """A QoS 1 subscriber that never reads its socket (nor acknowledges)."""
    c = RawClient(b.listen_port, timeout=30)
    c.connect(client_id)
    c.subscribe(topic_filter, qos=1)
    return c


def publish_in_background(b, client_id: str, topic: str, n: int) -> tuple[threading.Thread, list]:
    """A QoS 1 publisher of `n` messages keeping 100 unacknowledged; the list gets None
    once every PUBACK arrived, or the error."""
    outcome: list = []
    c = RawClient(b.listen_port, timeout=60)
    c.connect(client_id)

    def run():
        try:
            c.publish_many([(topic, b"%06d" % i) for i in range(n)], qos=1, window=100)
            outcome.append(None)
        except BaseException as e:  # reported by the test
            outcome.append(e)
        finally:
            c.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t, outcome


def test_publishers_of_other_subscribers_are_not_held(broker_factory, uid):
    """A subscriber that stopped reading pauses its own publisher (for as long as the
    hold allows, here longer than the test), never a publisher whose messages go to a
    subscriber that reads; when it leaves, its publisher resumes."""
    b = broker_factory(config={"node": {"shards": 1}, "mqtt": {"max_publisher_hold_ms": 600_000}},
                       log_level="debug")
    stuck_id = uid("stuck")
    stuck = stuck_subscriber(b, stuck_id, "bp/stuck/#")
    t, outcome = publish_in_background(b, uid("pub-stuck"), "bp/stuck/t", 5000)
    b.wait_log(rf"subscriber congested.*{re.escape(stuck_id)}", timeout=30)

    reader = b.client(uid("reader"))
    reader.subscribe("bp/ok/#", qos=1)
    other = RawClient(b.listen_port, timeout=30)
    other.connect(uid("pub-ok"))
    other.publish_many([("bp/ok/t", b"%d" % i) for i in range(500)], qos=1, window=100)
    got = reader.expect_messages(500, timeout=30)
    assert [m.payload for m in got] == [b"%d" % i for i in range(500)]
    assert t.is_alive() and not outcome, "the stuck subscriber's publisher is still paused"

    stuck.close()  # its connection ends: nothing holds its publisher back
    t.join(60)
    assert outcome == [None], outcome
    b.check_alive()


def test_stalled_subscriber_holds_publishers_only_for_the_hold(broker_factory, uid):
    """A subscriber that makes no progress for mqtt.max_publisher_hold_ms stops holding
    its publisher back: every message is acknowledged, those it could not take are
    dropped and counted."""
    b = broker_factory(config={"node": {"shards": 2}, "mqtt": {"max_publisher_hold_ms": 1000}},
                       log_level="debug")
    stuck_id = uid("stuck")
    stuck = stuck_subscriber(b, stuck_id, "bp/stuck/#")
    t, outcome = publish_in_background(b, uid("pub"), "bp/stuck/t", 6000)
    b.wait_log(rf"subscriber congested.*{re.escape(stuck_id)}", timeout=30)
    t.join(60)
    assert outcome == [None], outcome
    b.wait_log(rf"subscriber stalled.*{re.escape(stuck_id)}", timeout=5)

    stuck.close()
    line = b.wait_log(rf"client disconnected.*{re.escape(stuck_id)}", timeout=10)[0]
    dropped = int(re.search(r"dropped_queue_full=(\d+)", line).group(1))
    # The window (1000) and the queue (1000) took the rest, and one publish per pause.
    assert 0 < dropped < 6000, line
    b.check_alive()


def test_paho_fanin_with_default_config_loses_nothing(broker_factory, uid):
    """Real clients: paho publishers, QoS 1, each with many messages in flight, into one
    MQTT 3.1.1 paho subscriber of a wildcard, default config. More is in flight than the
    subscriber's queue (1000) and window hold, so the broker must pause the publishers
    instead of dropping: every message each publisher had acknowledged arrives."""
    from clients import MqttClient
    b = broker_factory()
    base = uid("pahofanin")
    sub = MqttClient(b.listen_port, f"{base}-sub", version=4, max_inflight=1000)
    sub.subscribe(f"{base}/#", qos=1)
    publishers, per_publisher = 8, 1500
    pubs = [MqttClient(b.listen_port, f"{base}-p{i}", version=4, max_inflight=500)
            for i in range(publishers)]
    infos = []
    for n in range(per_publisher):
        for i, p in enumerate(pubs):
            infos.append(p.publish(f"{base}/{i}", b"%d-%d" % (i, n), qos=1, wait=False))
    for info in infos:
        info.wait_for_publish(60)
        assert info.is_published()
    got = sub.expect_messages(publishers * per_publisher, timeout=60)
    assert len({m.payload for m in got}) == publishers * per_publisher
    for c in pubs + [sub]:
        c.stop()
    b.check_alive()
