"""What other threads learn by asking the shards through their inboxes
(src/shard/inbox.rs): `/api/v5/status` is the shards' own answer, not atomics
kept for it."""
import time

import pytest

from test_redirection import api

pytestmark = [pytest.mark.timeout(60), pytest.mark.ringmq_only("ringmq's admin API")]


def shard_status(b, want, timeout=5.0):
    """`shards` of /api/v5/status once `want(shards)` holds."""
    deadline = time.monotonic() + timeout
    while True:
        code, body, _ = api(b, "GET", "/api/v5/status")
        assert code == 200, body
        if want(body["shards"]):
            return body["shards"]
        assert time.monotonic() < deadline, f"status never matched: {body}"
        time.sleep(0.05)


def test_status_counts_what_only_the_shards_know(broker_factory, uid):
    b = broker_factory(shards=2)
    topic = uid("ret")
    pub = b.raw(connect=uid("pub"))
    pub.publish(topic, b"kept", qos=1, retain=True)
    # An offline session: no connection, still a session on its shard.
    gone = b.raw(connect=uid("gone"), clean=False, props={"session_expiry_interval": 600})
    gone.disconnect()
    shards = shard_status(b, lambda s: sum(x["sessions"] for x in s) == 2
                          and sum(x["connections"] for x in s) == 1)
    assert [x["id"] for x in shards] == [0, 1]
    # The retained store is replicated: every shard holds the message.
    assert [x["retained_messages"] for x in shards] == [1, 1]
    assert sum(x["accepted"] for x in shards) == 2
    pub.disconnect()
    shard_status(b, lambda s: sum(x["sessions"] for x in s) == 1
                 and sum(x["connections"] for x in s) == 0)
