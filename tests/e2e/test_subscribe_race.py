"""A publish sent right after another client's SUBSCRIBE, before its SUBACK, arrives.

MQTT does not promise it (only a SUBACK orders a subscription before later publishes), but
the Paho suite's test_subscribe_options and test_request_response rely on it: one client
subscribes, another publishes at once (docs/conformance.md). With the two clients on
different shards the publisher's shard may not have applied the subscriber shard's interest
change yet; ringmq then also sends the publish to every shard whose added interest it has
not applied (`router::interest`, docs/ARCHITECTURE.md "The path of one PUBLISH" step 5).
Each round subscribes to a new topic, so each SUBSCRIBE changes interest.

The publish follows the SUBSCRIBE by about 0.1 ms, so the subscriber's shard has usually read
the SUBSCRIBE when the publisher's shard routes. A few misses remain possible and are allowed:
on a loaded machine the publisher's shard can read the PUBLISH before the subscriber's shard
reads the SUBSCRIBE, which nothing in the broker can order. Without the marks (routing by the
interest table alone) about one round in ten missed here; with them, or with the node-wide
count they replaced, zero or one in 150.
"""
import time

import pytest

import mqttraw
from mqttraw import PUBACK, PUBLISH, SUBACK
from conftest import IS_MOSQUITTO, make_uid

pytestmark = pytest.mark.timeout(120)

ROUNDS = 200
# Misses the socket race explains (see above); without the marks there were 13 to 28.
MISSES_MAX = ROUNDS // 50
# Between the SUBSCRIBE and the PUBLISH, seconds.
GAP_S = 0.0001


def on_other_shards(b, tries=40):
    """A subscriber and a publisher (raw, connected) on different shards (ringmq)."""
    sub_id = make_uid("race-sub")
    sub = b.raw(connect=sub_id)
    for _ in range(tries):
        pub_id = make_uid("race-pub")
        pub = b.raw(connect=pub_id)
        if IS_MOSQUITTO or b.shard_of(pub_id) != b.shard_of(sub_id):
            return sub, pub
        pub.disconnect()
    raise AssertionError("could not get the publisher onto the other shard")


@pytest.mark.parametrize("qos", [0, 1])
def test_publish_right_after_another_clients_subscribe_arrives(debug_broker, qos):
    b = debug_broker
    sub, pub = on_other_shards(b)
    prefix = make_uid("race")
    missed = []
    for i in range(ROUNDS):
        topic = f"{prefix}/{i}"
        sid = sub.pid()
        # The SUBSCRIBE first, no waiting for the SUBACK.
        sub.send(mqttraw.subscribe(sid, topic, qos=1))
        time.sleep(GAP_S)
        pid = pub.pid() if qos else None
        pub.send(mqttraw.publish(topic, f"m{i}".encode(), qos=qos, pid=pid))
        got = {SUBACK: None, PUBLISH: None}
        try:
            while got[SUBACK] is None or got[PUBLISH] is None:
                p = sub.recv_packet(timeout=None if got[SUBACK] is None else 0.3)
                if p.type in got:
                    got[p.type] = p
                if p.type == PUBLISH and p.qos == 1:
                    sub.send(mqttraw.puback(p.pid))
        except TimeoutError:
            pass
        if got[PUBLISH] is None:
            missed.append(i)
        else:
            assert got[PUBLISH].topic == topic and got[PUBLISH].payload == f"m{i}".encode()
        assert got[SUBACK] is not None and got[SUBACK].pid == sid
        if qos:
            pub.wait_for(PUBACK, pid)
    assert len(missed) <= MISSES_MAX, \
        f"{len(missed)} of {ROUNDS} publishes missed the new subscriber: {missed[:20]}"
    b.check_alive()
