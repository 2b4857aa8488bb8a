"""Durable sessions on the Redis backend (issue 15 item 3, docs/durability.md, "The
Redis backend"; ADR 0007): `durable_sessions.backend = "redis"` against a real Redis
Cluster (3 masters + 3 replicas of Debian's redis-server, started by
scripts/redis-cluster.py once for this module, on free ports).

Without the wiring every test here fails: the broker refused `backend = "redis"` at
start (and without the resume path a client moving to another node gets session
present 0; without the fenced path a paused stale owner keeps its client)."""
from __future__ import annotations

import shutil
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest

import mqttraw
from conftest import free_port

pytestmark = pytest.mark.ringmq_only("the Redis backend of durable sessions")

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "redis-cluster.py"


class RedisCluster:
    """scripts/redis-cluster.py as a child: it stops every server when its stdin closes."""

    def __init__(self):
        self.proc = subprocess.Popen(["python3", str(SCRIPT)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.nodes: list[tuple[int, int]] = []
        self.seeds: list[str] = []
        for line in self.proc.stdout:
            parts = line.split()
            if parts[:1] == ["NODE"]:
                self.nodes.append((int(parts[1]), int(parts[2])))
            elif parts[:1] == ["SEEDS"]:
                self.seeds = parts[1].split(",")
            elif parts[:1] == ["READY"]:
                break
        if not self.seeds:
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.close()
            raise AssertionError(f"scripts/redis-cluster.py did not start the cluster: {err}")

    def cli(self, port: int, *args: str) -> str:
        out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True,
                             text=True, timeout=10, stdin=subprocess.DEVNULL)
        return out.stdout

    def alive(self) -> list[int]:
        return [p for p, _ in self.nodes if self.cli(p, "PING").strip() == "PONG"]

    def masters(self) -> list[tuple[int, int]]:
        return [(p, pid) for p, pid in self.nodes
                if self.cli(p, "ROLE").split("\n")[0].strip() == "master"]

    def client_keys(self, client_id: str) -> list[str]:
        """Every key of the client, by SCAN on every live master (never KEYS)."""
        keys: list[str] = []
        for port, _ in self.masters():
            out = self.cli(port, "--scan", "--pattern", f"{{c:{client_id}}}:*")
            keys += [k for k in out.split() if k]
        return keys

    def cluster_cli(self, *args: str) -> str:
        """A command on the slot's master (`-c` follows the redirection)."""
        port = self.alive()[0]
        return self.cli(port, "-c", *args).strip()

    def close(self):
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()
            except OSError:
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def _need_redis():
    if shutil.which("redis-server") is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server / redis-cli not installed (scripts/install-test-deps.sh installs them)")


@pytest.fixture(scope="module")
def redis_cluster():
    _need_redis()
    c = RedisCluster()
    yield c
    c.close()


@pytest.fixture
def own_redis_cluster():
    """A cluster of its own, for a test that kills one of its masters."""
    _need_redis()
    c = RedisCluster()
    yield c
    c.close()


def redis_config(cluster: RedisCluster, name: str, sync: str = "always") -> dict:
    return {
        "node": {"name": f"{name}@127.0.0.1"},
        "durable_sessions": {"enable": True, "backend": "redis", "sync": sync},
        "redis": {"redis_type": "cluster", "servers": cluster.seeds},
    }


def start(broker_factory, cluster, name: str, sync: str = "always", port: int | None = None):
    return broker_factory(config=redis_config(cluster, name, sync), port=port or free_port())


def persistent(b, cid: str, **kw):
    return b.client(cid, version=5, clean=False, session_expiry=kw.pop("session_expiry", 3600), **kw)


def metric(b, name: str) -> int:
    """A node-wide counter of /api/v5/prometheus/stats."""
    url = f"http://127.0.0.1:{b.api_port}/api/v5/prometheus/stats"
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError(f"{name} not in the metrics:\n{text[-2000:]}")


def wait_for(what: str, cond, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_unreachable_redis_fails_the_start_naming_the_servers(broker_factory):
    """Redis down at start: the broker exits 1 and names [redis] servers (before the
    wiring it named the refusal of the backend instead)."""
    port = free_port()
    dead = f"127.0.0.1:{free_port()}"
    cfg = {"durable_sessions": {"enable": True, "backend": "redis"},
           "redis": {"redis_type": "single", "servers": [dead]}}
    b = broker_factory(config=cfg, port=port, start=False)
    assert b.wait_exit(30) == 1
    log = b.tail(40)
    assert dead in log and "[redis] servers" in log, log


def test_restart_keeps_session_queue_and_retained(broker_factory, redis_cluster, uid):
    """One node, backend redis: a persistent session, its queued QoS 1 messages and a
    retained message survive a restart (clean stop) of the node."""
    name = uid("solo")
    b = start(broker_factory, redis_cluster, name, sync="batch")
    sub_id, topic = uid("sub"), uid("t")
    s = persistent(b, sub_id)
    s.subscribe(f"{topic}/#", qos=1)
    s.disconnect()
    p = b.client(uid("pub"))
    p.publish(f"{topic}/retained", "kept", qos=1, retain=True)
    for i in range(10):
        p.publish(f"{topic}/x", f"m{i}", qos=1)
    p.disconnect()
    b.close_clients()
    port = b.port
    b.stop(sig=signal.SIGTERM)
    b = start(broker_factory, redis_cluster, name, sync="batch", port=port)
    s = persistent(b, sub_id)
    assert s.session_present
    got = [m.text for m in s.expect_messages(11)]
    assert sorted(got) == sorted(["kept"] + [f"m{i}" for i in range(10)])
    r = b.client(uid("late"))
    r.subscribe(f"{topic}/retained", qos=1)
    m = r.expect_message()
    assert m.retain and m.text == "kept"


def test_session_moves_to_another_node_after_kill9(broker_factory, redis_cluster, uid):
    """Two independent nodes sharing one Redis Cluster, sync = always: a publisher on A
    gets N PUBACKs while the persistent subscriber is offline; A is killed (-9); the
    subscriber connects to B: session present, its subscription, all N messages."""
    a = start(broker_factory, redis_cluster, uid("a"))
    b = start(broker_factory, redis_cluster, uid("b"))
    sub_id, topic = uid("sub"), uid("t")
    s = persistent(a, sub_id)
    s.subscribe(f"{topic}/#", qos=1)
    s.disconnect()
    p = a.client(uid("pub"))
    n = 25
    for i in range(n):
        p.publish(f"{topic}/x", f"m{i}", qos=1)  # waits for the PUBACK
    a.close_clients()
    a.stop(sig=signal.SIGKILL)
    s = persistent(b, sub_id)
    assert s.session_present, "the session did not move to B"
    got = [m.text for m in s.expect_messages(n)]
    assert got == [f"m{i}" for i in range(n)]
    # The subscription came with it: B routes to it.
    p = b.client(uid("pub"))
    p.publish(f"{topic}/y", "on-b", qos=1)
    assert s.expect_message().text == "on-b"
    assert metric(b, "ringmq_durable_redis_sessions_resumed_total") >= 1


def test_inflight_qos2_moves_with_its_packet_ids(broker_factory, redis_cluster, uid):
    """Outbound QoS 2 state moves between nodes: one message PUBREC'd on A gets its PUBREL
    again from B, one sent and not acknowledged is resent by B under the same packet id
    with DUP set (as test_durable_sessions.py's restart test, across nodes)."""
    a = start(broker_factory, redis_cluster, uid("a"))
    b = start(broker_factory, redis_cluster, uid("b"))
    sub_id, topic = uid("sub"), uid("t")
    props = {"session_expiry_interval": 3600}
    raw = a.raw(connect=sub_id, clean=False, props=props)
    raw.subscribe(topic, qos=2)
    p = a.client(uid("pub"))
    p.publish(topic, "q2-a", qos=2)
    p.publish(topic, "q2-b", qos=2)
    first = raw.expect_publish()
    second = raw.expect_publish()
    assert (first.payload, second.payload) == (b"q2-a", b"q2-b")
    raw.send(mqttraw.pubrec(first.pid))
    raw.wait_for(mqttraw.PUBREL, first.pid)
    time.sleep(0.5)  # the PUBREC's new state reaches Redis (no ack promises it)
    a.send_signal(signal.SIGKILL)
    a.wait_exit()
    raw.abort()
    raw = b.raw(connect=sub_id, clean=False, props=props)
    assert raw.connack.session_present
    rel = raw.recv_packet(5)
    assert rel.type == mqttraw.PUBREL and rel.pid == first.pid, rel
    again = raw.recv_packet(5)
    assert again.type == mqttraw.PUBLISH, again
    assert again.pid == second.pid and again.dup and again.payload == b"q2-b"
    raw.send(mqttraw.pubcomp(first.pid))
    raw.expect_nothing(0.5)


def test_clean_start_on_another_node_removes_the_stored_session(broker_factory, redis_cluster, uid):
    """A Clean Start 1 connect on B of an id whose session A stored: B starts fresh and
    removes the stored session under its new epoch (only the fencing tombstone is left),
    so a later restart of A does not bring it back."""
    a_name = uid("a")
    a = start(broker_factory, redis_cluster, a_name)
    b = start(broker_factory, redis_cluster, uid("b"))
    cid, topic = uid("cs"), uid("t")
    s = persistent(a, cid)
    s.subscribe(f"{topic}/#", qos=1)
    s.disconnect()
    a.client(uid("pub")).publish(f"{topic}/x", "old", qos=1)
    assert f"{{c:{cid}}}:meta" in redis_cluster.client_keys(cid)
    a.close_clients()
    port = a.port
    a.stop(sig=signal.SIGKILL)
    fresh = b.client(cid, version=5, clean=True, session_expiry=0)
    assert not fresh.session_present
    fresh.expect_no_message(0.5)
    fresh.disconnect()
    assert redis_cluster.client_keys(cid) == [f"{{c:{cid}}}:own"]
    a = start(broker_factory, redis_cluster, a_name, port=port)
    again = persistent(a, cid)
    assert not again.session_present


def test_session_moves_within_a_ringmq_cluster_after_kill9(redis_cluster, tmp_path, uid):
    """Two nodes of one ringmq cluster sharing the Redis Cluster: the node holding an offline
    persistent session with N acknowledged QoS 1 messages is killed (-9); once the cluster
    lets the id be claimed on B, B resumes it from Redis (the builtin backend gives a fresh
    session here: test_cluster_takeover.py's killed-owner test)."""
    from cluster import Cluster
    from test_cluster_takeover import connect_retrying

    extra = {"durable_sessions": {"enable": True, "backend": "redis", "sync": "always"},
             "redis": {"redis_type": "cluster", "servers": redis_cluster.seeds}}
    c = Cluster(tmp_path / "cl", n=2, extra=extra).start()
    try:
        c.wait_running(2)
        a, b = c.nodes
        sub_id, topic = uid("sub"), uid("t")
        s = a.client(sub_id, version=5, clean=False, session_expiry=3600)
        s.subscribe(f"{topic}/#", qos=1)
        s.disconnect()
        p = a.client(uid("pub"))
        n = 15
        for i in range(n):
            p.publish(f"{topic}/x", f"m{i}", qos=1)
        a.close_clients()
        a.kill()
        s = connect_retrying(b, sub_id)
        assert s.session_present, "B did not resume the session from Redis"
        got = [m.text for m in s.expect_messages(n, timeout=20)]
        assert got == [f"m{i}" for i in range(n)]
    finally:
        c.stop()


def test_paused_stale_owner_is_fenced(broker_factory, redis_cluster, uid):
    """A paused owner (SIGSTOP) whose client moved to B must not overwrite B's state:
    once resumed its next write comes back fenced and A ends the session there (its
    old connection gets DISCONNECT 0x8E); Redis still names B as the owner."""
    a_name, b_name = uid("a"), uid("b")
    a = start(broker_factory, redis_cluster, a_name)
    b = start(broker_factory, redis_cluster, b_name)
    cid, topic = uid("moving"), uid("t")
    old = persistent(a, cid)
    old.subscribe(f"{topic}/#", qos=1)
    a.proc.send_signal(signal.SIGSTOP)
    try:
        new = persistent(b, cid)
        assert new.session_present
    finally:
        a.proc.send_signal(signal.SIGCONT)
    # A writes for its stale session: a QoS 1 delivery to it.
    p = a.client(uid("pub"))
    p.publish(f"{topic}/x", "stale", qos=1)
    rc = old.wait_disconnected(timeout=20)
    assert rc == 0x8E, f"A's old connection ended with {rc:#x}, not 0x8E"
    assert metric(a, "ringmq_durable_redis_fenced_sessions_ended_total") >= 1
    assert redis_cluster.cluster_cli("HGET", f"{{c:{cid}}}:own", "node") == f"{b_name}@127.0.0.1"
    # B's session is intact: its subscription still delivers there.
    q = b.client(uid("pub"))
    q.publish(f"{topic}/y", "on-b", qos=1)
    assert new.expect_message().text == "on-b"


def test_keys_gone_after_the_session_expires(broker_factory, redis_cluster, uid):
    """A session with a 2 s expiry: while it lives Redis holds its records; after it
    expired the records are gone (SCAN), only a fencing tombstone with a TTL remains."""
    b = start(broker_factory, redis_cluster, uid("exp"))
    cid, topic = uid("short"), uid("t")
    s = persistent(b, cid, session_expiry=2)
    s.subscribe(f"{topic}/#", qos=1)
    s.disconnect()
    p = b.client(uid("pub"))
    p.publish(f"{topic}/x", "queued", qos=1)
    keys = redis_cluster.client_keys(cid)
    assert f"{{c:{cid}}}:meta" in keys and f"{{c:{cid}}}:d" in keys, keys
    wait_for("the session's records to go",
             lambda: not ({f"{{c:{cid}}}:meta", f"{{c:{cid}}}:d"} & set(redis_cluster.client_keys(cid))))
    left = redis_cluster.client_keys(cid)
    assert left in ([], [f"{{c:{cid}}}:own"]), left
    if left:
        assert int(redis_cluster.cluster_cli("PTTL", f"{{c:{cid}}}:own")) > 0


def test_no_keys_command_and_no_crossslot(broker_factory, redis_cluster, uid):
    """After this module's workload (and a start's load of every retained bucket),
    no master ran KEYS and none answered CROSSSLOT; the broker did write (EVALSHA)."""
    b = start(broker_factory, redis_cluster, uid("stats"))
    s = persistent(b, uid("sub"))
    s.subscribe("stats/#", qos=1)
    b.client(uid("pub")).publish("stats/x", "x", qos=1, retain=True)
    evalsha = 0
    for port, _ in redis_cluster.masters():
        cmds = redis_cluster.cli(port, "INFO", "commandstats")
        errs = redis_cluster.cli(port, "INFO", "errorstats")
        assert "cmdstat_keys:" not in cmds, f"KEYS ran on {port}"
        assert "CROSSSLOT" not in errs, f"CROSSSLOT on {port}: {errs}"
        for line in cmds.splitlines():
            if line.startswith("cmdstat_evalsha:"):
                evalsha += int(line.split("calls=")[1].split(",")[0])
    assert evalsha > 0


def test_master_killed_mid_run_loses_nothing_acknowledged(broker_factory, own_redis_cluster, uid):
    """sync = always, a Redis master killed (-9) while a publisher sends QoS 1 messages
    to an offline persistent subscriber: the cluster fails over; every message the
    publisher got a PUBACK for reaches the subscriber after a restart of the node (so
    it comes from Redis, not from memory)."""
    cluster = own_redis_cluster
    name = uid("fo")
    b = start(broker_factory, cluster, name)
    sub_id, topic = uid("sub"), uid("t")
    s = persistent(b, sub_id)
    s.subscribe(f"{topic}/#", qos=1)
    s.disconnect()
    p = b.client(uid("pub"), timeout=30)
    acked: list[str] = []
    killed = threading.Event()

    def kill_a_master():
        port, pid = cluster.masters()[0]
        subprocess.run(["kill", "-9", str(pid)], check=True)
        killed.set()

    for i in range(60):
        if i == 20:
            kill_a_master()
        payload = f"m{i}"
        try:
            p.publish(f"{topic}/x", payload, qos=1, timeout=30)
        except AssertionError:
            continue  # not acknowledged: not promised
        acked.append(payload)
    assert killed.is_set() and len(acked) > 20
    wait_for("the failover", lambda: len(cluster.masters()) == 3, timeout=30)
    b.close_clients()
    port = b.port
    b.stop(sig=signal.SIGTERM)
    b = start(broker_factory, cluster, name, port=port)
    s = persistent(b, sub_id, timeout=30)
    assert s.session_present
    # Messages whose PUBACK was lost may arrive too: gather everything.
    got = {m.text for m in s.expect_messages(len(acked), timeout=30) + s.drain(settle=1.0)}
    missing = [m for m in acked if m not in got]
    assert not missing, f"acknowledged but lost: {missing}"
