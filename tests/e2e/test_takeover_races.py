"""Takeover races, repeated enough to catch a race that shows once in a hundred takeovers.

- A QoS 1 stream runs while the session is taken over again and again (clean start 0):
  every message the publisher had acknowledged reaches one of the connections.
- Three connections send CONNECT with one client id at the same moment: each gets a
  CONNACK or is closed, and exactly one stays open.

Shard placement is read from ringmq's debug log (`client connected shard=N`); with two
shards the kernel's SO_REUSEPORT hash spreads the connections, so both same-shard and
cross-shard takeovers happen."""
import select
import threading
import time

import pytest

import mqttraw
from mqttraw import CONNACK, DISCONNECT, PUBLISH, V5

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]

PERSIST = {"clean": False, "props": {"session_expiry_interval": 300}}


class Reader(threading.Thread):
    """Reads one subscriber connection until it closes, acknowledging every PUBLISH and
    recording its payload (the test's thread only connects)."""

    def __init__(self, conn, received, lock):
        super().__init__(daemon=True)
        self.conn, self.received, self.lock = conn, received, lock
        self.disconnect_rc = None
        self.closed = threading.Event()
        self.stop = threading.Event()

    def run(self):
        try:
            while not self.stop.is_set():
                try:
                    p = self.conn.recv_packet(timeout=0.2)
                except TimeoutError:
                    continue
                if p.type == PUBLISH:
                    with self.lock:
                        self.received.add(int(p.payload))
                    self.conn.try_send(mqttraw.puback(p.pid))
                elif p.type == DISCONNECT:
                    self.disconnect_rc = p.rc
        except (mqttraw.Closed, OSError):  # OSError: the test closed the socket at its end
            pass
        finally:
            self.closed.set()


def stream_through_takeovers(b, uid, takeovers):
    """A publisher sends a QoS 1 message every ~1 ms while the subscriber's session is taken
    over `takeovers` times; returns the takeovers as (old shard, new shard)."""
    cid, topic = uid("x"), uid("t")
    received, lock = set(), threading.Lock()
    first = b.raw(connect=cid, **PERSIST)
    first.subscribe(topic, qos=1)
    cur = Reader(first, received, lock)
    cur.start()
    acked = []
    stop = threading.Event()
    errors = []

    def publish():
        try:
            pub = b.raw(connect=uid("pub"))
            i = 0
            while not stop.is_set():
                pub.publish(topic, str(i).encode(), qos=1)  # returns once PUBACK arrived
                acked.append(i)
                i += 1
                time.sleep(0.001)
        except BaseException as e:
            errors.append(e)

    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    try:
        for n in range(takeovers):
            time.sleep(0.002 * (n % 7))
            new = b.raw()
            ack = new.connect(cid, **PERSIST)
            assert ack.session_present, f"takeover {n}: session not carried over"
            old, cur = cur, Reader(new, received, lock)
            cur.start()
            assert old.closed.wait(5), f"takeover {n}: the old connection was not closed"
            assert old.disconnect_rc == 0x8E, f"takeover {n}: old connection got {old.disconnect_rc}"
            assert not errors, errors
    finally:
        stop.set()
        publisher.join(10)
    assert not errors, errors
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with lock:
            missing = sorted(set(acked) - received)
        if not missing:
            break
        time.sleep(0.05)
    cur.stop.set()
    cur.join(1)
    assert not missing, (f"{len(missing)} acknowledged messages of {len(acked)} never delivered "
                         f"in {takeovers} takeovers: {missing[:20]}")
    shards = b.connected_shards()[cid]
    return list(zip(shards, shards[1:]))


@pytest.mark.ringmq_only("shard placement comes from ringmq's debug log")
@pytest.mark.parametrize("shards", [2, 1])
def test_takeover_during_stream_loses_no_acknowledged_message(broker_factory, uid, shards):
    """Issue 11 item 7: a message delivered in the takeover window (the old connection told
    to stop, its session not yet with the new one) must end up in the moved session."""
    b = broker_factory(log_level="debug", shards=shards)
    moves = stream_through_takeovers(b, uid, 300)
    if shards == 2:
        cross = sum(1 for a, c in moves if a != c)
        assert 0 < cross < len(moves), f"{cross} of {len(moves)} takeovers crossed shards"


def connect_at_once(port, cid, n):
    """Opens `n` sockets, then sends each the same CONNECT back to back."""
    conns = [mqttraw.RawClient(port, timeout=5) for _ in range(n)]
    packet = mqttraw.connect(cid, version=V5, **PERSIST)
    for c in conns:
        c.send(packet)
    return conns


def outcome(conns, timeout):
    """Reads every connection until it is closed or `timeout` passed; returns, per
    connection, (got CONNACK, DISCONNECT reason or None, closed)."""
    state = [[False, None, False] for _ in conns]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        open_ = [c for c, s in zip(conns, state) if not s[2]]
        undecided = [s for s in state if not s[0] and not s[2]]
        # Done once every CONNECT was answered and at most one connection is left.
        if not undecided and len(open_) <= 1:
            break
        r, _, _ = select.select([c.sock for c in open_], [], [], 0.1)
        for c, s in zip(conns, state):
            if c.sock not in r:
                continue
            try:
                wait = 0.05  # the first read: the socket is readable
                while True:
                    p = c.recv_packet(timeout=wait)
                    wait = 0  # then only what is already buffered
                    if p.type == CONNACK:
                        assert p.rc == 0, p
                        s[0] = True
                    elif p.type == DISCONNECT:
                        s[1] = p.rc
            except TimeoutError:
                pass
            except mqttraw.Closed:
                s[2] = True
    return state


@pytest.mark.ringmq_only("needs connections spread over two shards")
def test_concurrent_connects_of_one_client_id_all_answered(broker_factory, uid):
    """Issue 11 item 8: three CONNECTs with one client id at once, over two shards. Every
    CONNECT gets a CONNACK or its connection is closed; exactly one connection remains,
    and the others that had a CONNACK got DISCONNECT 0x8E."""
    b = broker_factory(shards=2, log_level="debug")
    for n in range(200):
        cid = uid("same")
        conns = connect_at_once(b.port, cid, 3)
        try:
            state = outcome(conns, 5)
            hung = [i for i, s in enumerate(state) if not s[0] and not s[2]]
            assert not hung, (f"round {n}: CONNECT of connections {hung} neither answered nor closed: "
                              f"{state}; log:\n" + "\n".join(l for l in b.log().splitlines() if cid in l))
            alive = [i for i, s in enumerate(state) if not s[2]]
            assert len(alive) == 1, f"round {n}: {len(alive)} connections left open: {state}"
            assert state[alive[0]][0], f"round {n}: the one left has no CONNACK: {state}"
            for i, (connack, rc, closed) in enumerate(state):
                if i != alive[0] and connack:
                    assert rc == 0x8E, f"round {n}: connection {i} closed with {rc}: {state}"
        finally:
            for c in conns:
                c.close()
    b.check_alive()
