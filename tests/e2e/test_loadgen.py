"""ringmq-loadgen end to end: short runs against a real broker, checked from the JSON report.

Needs `target/release/ringmq-loadgen` (or $RINGMQ_LOADGEN_BIN):
`cargo build --release -p ringmq-loadgen`. Nothing here asserts a rate or a latency:
these are correctness checks of the load generator (and of the broker's delivery).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import IS_MOSQUITTO, REPO, free_port

pytestmark = pytest.mark.timeout(120)

LOADGEN_BIN = Path(os.environ.get("RINGMQ_LOADGEN_BIN", REPO / "target" / "release" / "ringmq-loadgen"))


def loadgen(tmp_path: Path, *args: str, timeout: float = 60) -> dict:
    """Run the load generator with `args`; return its JSON report."""
    if not LOADGEN_BIN.exists():
        pytest.fail(f"ringmq-loadgen not found at {LOADGEN_BIN}: run "
                    f"`cargo build --release -p ringmq-loadgen` (or set RINGMQ_LOADGEN_BIN)",
                    pytrace=False)
    out = tmp_path / f"report-{len(list(tmp_path.glob('report-*.json')))}.json"
    argv = [str(LOADGEN_BIN), *args, "--quiet", "--json", str(out)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{' '.join(argv)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}"
    return json.loads(out.read_text())


def short(port: int, *extra: str) -> list[str]:
    """Common options of a short run against 127.0.0.1:port."""
    return ["-h", "127.0.0.1", "-p", str(port), "--warmup", "0.3", "-d", "1.5", "--drain", "10",
            "--client-id-prefix", f"lg{os.getpid()}", *extra]


def assert_no_loss(r: dict, copies: int) -> None:
    assert r["errors_total"] == 0, r["errors"]
    assert r["clients"]["failed"] == 0
    assert r["clients"]["ready"] == r["clients"]["planned"]
    assert r["sent"] > 0
    assert r["copies"] == copies
    assert r["expected"] == r["sent"] * copies
    assert r["received"] == r["expected"], (r["received"], r["expected"])
    assert r["lost"] == 0
    assert r["duplicated"] == 0
    assert r["foreign"] == 0 and r["unstamped"] == 0
    for p in r["publishers"]:
        assert p["lost"] == 0 and p["duplicated"] == 0, p
        assert p["received"] == p["sent"] * copies, p
    assert len(r["loadgen_busy_pct"]) == r["threads"]
    pre = r["loadgen_preempted_ms"]
    assert pre is None or (len(pre) == r["threads"] and all(ms >= 0 for ms in pre)), pre
    lat = r["latency_us"]
    assert lat is not None and lat["count"] > 0
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["p999"] <= lat["max"]


def test_p2p_qos1_received_equals_sent(broker, tmp_path, version):
    r = loadgen(tmp_path, "p2p", *short(broker.listen_port, "-c", "4", "-q", "1", "-V", str(version)))
    assert r["scenario"] == "p2p" and r["protocol_version"] == version and r["qos"] == 1
    assert (r["clients"]["publishers"], r["clients"]["subscribers"]) == (4, 4)
    assert_no_loss(r, copies=1)
    assert len(r["publishers"]) == 4
    assert r["throughput"]["out_msg_s"] > 0 and r["throughput"]["in_msg_s"] > 0
    broker.check_alive()


def test_p2p_qos2_paced(broker, tmp_path):
    # Fixed rate: 200 msg/s over 2 publishers for 1.5 s measured; every packet
    # decoded by ringmq::codec (strict) instead of the in-place fast path.
    r = loadgen(tmp_path, "p2p", *short(broker.listen_port, "-c", "2", "-q", "2", "-r", "200",
                                         "--codec-decode"))
    assert r["rate_per_publisher"] == 100
    assert_no_loss(r, copies=1)
    # 1.8 s of schedule (0.3 warm-up + 1.5) at 100/s each: pacing never runs
    # ahead of it (a correctness bound, not a timing assertion).
    for p in r["publishers"]:
        assert 0 < p["sent"] <= 182, p


def test_fanout(broker, tmp_path):
    # Two worker threads: subscribers on both, so the closed loop crosses threads.
    r = loadgen(tmp_path, "fanout", *short(broker.listen_port, "-c", "5", "-q", "1", "--threads", "2",
                                            "-t", f"lg/fanout/{os.getpid()}"))
    assert (r["clients"]["publishers"], r["clients"]["subscribers"]) == (1, 5)
    assert r["threads"] == 2
    assert_no_loss(r, copies=5)


def test_fanin(broker, tmp_path, version):
    r = loadgen(tmp_path, "fanin", *short(broker.listen_port, "-c", "6", "--subscribers", "2", "-q", "1",
                                           "-V", str(version), "-t", f"lg/fanin/{os.getpid()}/%i"))
    assert (r["clients"]["publishers"], r["clients"]["subscribers"]) == (6, 2)
    if IS_MOSQUITTO:
        # mosquitto 2.0 drops QoS 1 messages to a subscriber fed by many publishers ("Outgoing
        # messages are being dropped", counted in $SYS/broker/publish/messages/dropped):
        # check that the accounting adds up rather than that nothing was lost.
        assert r["errors_total"] == 0 and r["duplicated"] == 0
        assert r["received"] + r["lost"] == r["expected"] == r["sent"] * 2
        return
    assert_no_loss(r, copies=2)


def test_busy_poll_keeps_its_cpu_and_loses_nothing(broker, tmp_path):
    """`--busy-poll`: the worker never sleeps, even at a pace that leaves it
    idle nearly all the time (100 msg/s), and the run still adds up."""
    import resource
    import time
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.monotonic()
    r = loadgen(tmp_path, "p2p", *short(broker.listen_port, "-c", "2", "-q", "1", "-r", "100",
                                         "--busy-poll", "-t", f"lg/busy/{os.getpid()}/%i"))
    wall_s = time.monotonic() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    assert_no_loss(r, copies=1)
    # Paced without it, the worker sleeps until a millisecond before each
    # send: about a sixth of its time awake (0.16 when checked by hand).
    assert cpu_s > 0.6 * wall_s, (cpu_s, wall_s)


def test_sharedsub(broker, tmp_path):
    r = loadgen(tmp_path, "sharedsub", *short(broker.listen_port, "-c", "3", "--publishers", "2",
                                               "-q", "1", "-t", f"lg/shared/{os.getpid()}"))
    assert (r["clients"]["publishers"], r["clients"]["subscribers"]) == (2, 3)
    assert_no_loss(r, copies=1)


def test_conn_storm_holds_connections(broker, tmp_path):
    r = loadgen(tmp_path, "conn", "-p", str(broker.listen_port), "-c", "300", "-d", "1",
                "--client-id-prefix", f"lgc{os.getpid()}")
    assert r["clients"]["planned"] == 300
    assert r["clients"]["ready"] == 300 and r["clients"]["failed"] == 0
    assert r["errors_total"] == 0, r["errors"]
    assert r["connack_latency_us"]["count"] == 300
    assert r["sent"] == 0 and r["lost"] is None
    broker.check_alive()


def test_selftest_forwarder(tmp_path):
    r = loadgen(tmp_path, "selftest", "-c", "2", "--warmup", "0.2", "-d", "0.5")
    assert_no_loss(r, copies=1)
    assert r["forwarder_messages"] == r["sent"]


def test_selftest_paced_publishers_take_turns(tmp_path):
    # 50 paced publishers at a total rate one thread cannot send message by
    # message: each loop turn lets one due publisher write, the earliest due
    # first, so every publisher keeps up with the others (none starves
    # behind the ones written before it) and nothing is lost.
    r = loadgen(tmp_path, "selftest", "-c", "50", "-r", "500000", "--warmup", "0.2", "-d", "1")
    assert_no_loss(r, copies=1)
    assert r["forwarder_messages"] == r["sent"]
    sent = [p["sent"] for p in r["publishers"]]
    assert len(sent) == 50
    assert min(sent) * 2 >= max(sent), sent


# ---------------------------------------------------------------- Server Reference

def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def connack_redirect(reason: int, reference: str) -> bytes:
    """v5 CONNACK with `reason` and a Server Reference property (0x1C)."""
    ref = reference.encode()
    props = bytes([0x1C]) + len(ref).to_bytes(2, "big") + ref
    body = bytes([0x00, reason]) + _remaining_length(len(props)) + props
    return bytes([0x20]) + _remaining_length(len(body)) + body


def disconnect_redirect(reason: int, reference: str) -> bytes:
    """v5 CONNACK success, then DISCONNECT `reason` with a Server Reference."""
    ref = reference.encode()
    props = bytes([0x1C]) + len(ref).to_bytes(2, "big") + ref
    body = bytes([reason]) + _remaining_length(len(props)) + props
    return bytes([0x20, 3, 0, 0, 0, 0xE0]) + _remaining_length(len(body)) + body


class RedirectingServer:
    """Answers every CONNECT with CONNACK `reason` + Server Reference `reference`, then closes
    (or, with mid_session, accepts the CONNECT and then sends DISCONNECT `reason`)."""

    def __init__(self, reference: str, reason: int = 0x9C, mid_session: bool = False):
        make = disconnect_redirect if mid_session else connack_redirect
        self.reply = make(reason, reference)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", free_port()))
        self.sock.listen(128)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connects = 0
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while not self.stopping:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(5)
                try:
                    data = conn.recv(65536)
                except OSError:
                    continue
                if data[:1] == b"\x10":  # CONNECT
                    self.connects += 1
                    conn.sendall(self.reply)

    def close(self):
        self.stopping = True
        self.thread.join(5)
        self.sock.close()


@pytest.mark.parametrize("reason", [0x9C, 0x9D], ids=["use-another-server", "server-moved"])
def test_follows_server_reference(broker, tmp_path, reason):
    target = f"127.0.0.1:{broker.listen_port}"
    fake = RedirectingServer(target, reason)
    try:
        r = loadgen(tmp_path, "p2p", *short(fake.port, "-c", "2", "-q", "1", "-V", "5"))
    finally:
        fake.close()
    assert fake.connects == 4
    red = r["redirects"]
    assert red["connections"] == 4
    assert red["hops"] == {f"127.0.0.1:{fake.port} -> {target}": 4}
    assert red["connected_by_server"] == {target: 4}
    assert_no_loss(r, copies=1)


def test_server_reference_list_takes_the_first(broker, tmp_path):
    # Several references separated by spaces; a bracketed IPv6 one second.
    target = f"127.0.0.1:{broker.listen_port}"
    fake = RedirectingServer(f"{target} [::1]:{free_port()}")
    try:
        r = loadgen(tmp_path, "conn", "-p", str(fake.port), "-c", "3", "-d", "0.2")
    finally:
        fake.close()
    assert r["clients"]["ready"] == 3
    assert r["redirects"]["connections"] == 3
    assert r["redirects"]["connected_by_server"] == {target: 3}


def test_pub_and_sub_in_two_processes(broker, tmp_path):
    """A `sub` run counts and times what a separate `pub` run sends (same host clock)."""
    topic = f"lg/xp/{os.getpid()}"
    sub_json = tmp_path / "sub.json"
    sub = subprocess.Popen([str(LOADGEN_BIN), "sub", "-p", str(broker.listen_port), "-c", "2", "-q", "1",
                            "-t", f"{topic}/#", "--warmup", "0", "-d", "6", "--json", str(sub_json),
                            "--client-id-prefix", f"lgxs{os.getpid()}"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        # Progress lines go to stderr once a second; the first one past set-up says "run".
        for line in sub.stderr:
            if " run " in line:
                break
        else:
            pytest.fail(f"sub run ended early (exit {sub.wait()})")
        p = loadgen(tmp_path, "pub", *short(broker.listen_port, "-c", "2", "-q", "1", "-r", "500",
                                             "-t", f"{topic}/%i"))
        assert sub.wait(timeout=30) == 0
    finally:
        if sub.poll() is None:
            sub.kill()
    s = json.loads(sub_json.read_text())
    assert p["sent"] > 0 and p["lost"] is None
    assert s["received"] == 2 * p["sent"]
    assert s["duplicated"] == 0 and s["unstamped"] == 0
    assert s["latency_us"]["count"] == s["received"]
    assert {q["id"]: q["received"] for q in s["publishers"]} == {q["id"]: 2 * q["sent"] for q in p["publishers"]}


def test_follows_server_reference_in_disconnect(broker, tmp_path):
    # Server-initiated redirect of an established session (DISCONNECT 0x9D).
    target = f"127.0.0.1:{broker.listen_port}"
    fake = RedirectingServer(target, 0x9D, mid_session=True)
    try:
        r = loadgen(tmp_path, "conn", "-p", str(fake.port), "-c", "3", "-d", "0.5")
    finally:
        fake.close()
    assert fake.connects == 3
    assert r["clients"]["ready"] == 3 and r["clients"]["failed"] == 0
    assert r["errors_total"] == 0, r["errors"]
    assert r["redirects"]["connections"] == 3
    assert r["redirects"]["hops"] == {f"127.0.0.1:{fake.port} -> {target}": 3}
    # Sessions were accepted at both: first the fake server, then the broker.
    assert r["redirects"]["connected_by_server"] == {f"127.0.0.1:{fake.port}": 3, target: 3}


def test_refused_connections_are_counted_and_fail_the_run(tmp_path):
    # Nothing listens on the port: every client's connect is refused, which
    # the load generator learns either from connect() or from the CONNECT it
    # writes at once (it does not wait for EPOLLOUT on loopback).
    port = free_port()
    out = tmp_path / "refused.json"
    argv = [str(LOADGEN_BIN), "conn", "-c", "5", "-h", "127.0.0.1", "-p", str(port), "-d", "0.5",
            "--quiet", "--json", str(out)]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stderr)
    r = json.loads(out.read_text())
    assert r["errors"] == {"connect_refused": 5}, r["errors"]
    assert r["clients"]["failed"] == 5 and r["clients"]["ready"] == 0
