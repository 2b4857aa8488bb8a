"""Graceful shutdown across shards (src/shard/stop.rs): every will is published first
and reaches the subscribers still connected on any shard, then every client gets
DISCONNECT 0x8B, then the shards drain their mesh in order and the process exits."""
import signal
import time

import pytest

from mqttraw import DISCONNECT, PUBLISH

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.ringmq_only("wills at shutdown reach the subscribers connected on every shard"),
]

SHARDS = 2


def on_every_shard(b, make, per_shard=1, tries=60):
    """Connect clients with make(i) -> (client_id, client) until each shard has
    `per_shard` of them (SO_REUSEPORT spreads connections by source port).
    Returns every client made, as (client_id, client, shard)."""
    made, count = [], [0] * SHARDS
    for i in range(tries):
        cid, c = make(i)
        shard = b.shard_of(cid)
        made.append((cid, c, shard))
        count[shard] += 1
        if min(count) >= per_shard:
            return made
    raise AssertionError(f"connections never covered every shard: {count}")


def test_sigterm_delivers_every_will_before_disconnecting_and_exits_quickly(broker_factory, uid):
    b = broker_factory(log_level="debug", shards=SHARDS)
    base = uid("wills")

    def subscriber(i):
        cid = uid(f"sub{i}")
        c = b.raw(connect=cid)
        c.subscribe(f"{base}/#", qos=1)
        return cid, c

    subs = on_every_shard(b, subscriber)

    def will_client(i):
        cid = uid(f"w{i}")
        # Every other one has a will delay and a session that outlives the
        # connection: the stop ends the session, so its will is due now.
        delayed = i % 2 == 1
        c = b.raw(connect=cid,
                  props={"session_expiry_interval": 600} if delayed else None,
                  will={"topic": f"{base}/{cid}", "payload": cid, "qos": 1,
                        "props": {"will_delay_interval": 300} if delayed else None})
        return cid, c

    wills = on_every_shard(b, will_client, per_shard=2)

    def offline_session(i):
        # Gone without DISCONNECT: its session stays, its will waits for its delay.
        cid = uid(f"off{i}")
        c = b.raw(connect=cid, clean=False, props={"session_expiry_interval": 600},
                  will={"topic": f"{base}/{cid}", "payload": cid, "qos": 0,
                        "props": {"will_delay_interval": 300}})
        return cid, c

    offline = on_every_shard(b, offline_session)
    for _, c, _ in offline:
        c.close()
    expected = {f"{base}/{cid}" for cid, _, _ in wills + offline}
    # The offline sessions' wills are scheduled (not published) once their
    # connections are gone: nothing reaches the subscribers yet.
    for _, s, _ in subs:
        s.expect_nothing(0.3)

    started = time.monotonic()
    b.send_signal(signal.SIGTERM)
    for cid, s, shard in subs:
        got = s.wait_closed(timeout=10)
        topics = {p.topic for p in got if p.type == PUBLISH}
        assert topics == expected, (
            f"subscriber {cid} (shard {shard}) missed wills: {sorted(expected - topics)}; got {got!r}")
        assert got and got[-1].type == DISCONNECT and got[-1].rc == 0x8B, (
            f"subscriber {cid}: the wills, then DISCONNECT 0x8B last; got {got!r}")
    for cid, c, shard in wills:
        d = c.expect_disconnect(0x8B, timeout=10)
        assert d is not None and d.rc == 0x8B, f"{cid} (shard {shard}): {d!r}"
    assert b.wait_exit(10) == 0
    took = time.monotonic() - started
    # The lingering close of each connection (CLOSE_LINGER, 0.5 s) is the
    # longest step; nothing waits for a fixed sleep or its shutdown grace.
    assert took < 2.5, f"shutdown took {took:.2f}s"
    log = b.log()
    assert "did not" not in log and "still open" not in log, b.tail(30)
