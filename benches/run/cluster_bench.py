#!/usr/bin/env python3
"""Cluster benchmarks (issue 13): ringmq nodes on loopback, measured with
`ringmq-loadgen --pub-addrs/--sub-addrs` the way in-node runs are.

Benchmarks, not tests: nothing is asserted. Prints a Markdown table and the
exact commands; the JSON reports stay in target/bench/cluster-<time>/.

    python3 benches/run/cluster_bench.py [--quick] [--only p2p,lat,fanout,subscribe,detect,takeover]
    python3 benches/run/cluster_bench.py --only takeover --clients 2000

Scenarios:
  p2p      cross-node p2p QoS 0 closed loop (publishers on node A, subscribers
           on node B, both nodes on CPU 0) against one node alone on CPU 0
  lat      p99 at 20,000 QoS 1 msg/s, publishers on A and subscribers on B,
           beside the same with both on A (nodes on CPU 0, load generator CPU 1)
  fanout   1 publisher on A, 100 subscribers spread over 3 nodes
  subscribe  route convergence: SUBSCRIBE on A to SUBACK (the SUBACK waits
           until every peer applied the route), then a publish on B arrives
  detect   failure detection: kill -9 of a node until a survivor lists it
           stopped (GET /api/v5/nodes)
  takeover 10,000 clients with persistent sessions (one subscription each)
           connected on node A, then all reconnect on node B at once: time
           until every one has CONNACK session present = 1, takeovers per
           second (a small asyncio raw-MQTT client, tests/e2e/mqttraw.py)

Every node: one shard, `max_inflight = 1000`, `max_mqueue_len = 65535`
(as `make bench` sets ringmq for its closed-loop scenarios), static
discovery, self-signed QUIC certificates with a cookie.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import datetime as dt
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RINGMQ = Path(os.environ.get("RINGMQ_BIN", ROOT / "target/release/ringmq"))
LOADGEN = Path(os.environ.get("LOADGEN_BIN", ROOT / "target/release/ringmq-loadgen"))
OUT = ROOT / "target/bench" / ("cluster-" + dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
COMMANDS: list[str] = []


def free_port(host: str, kind=socket.SOCK_STREAM) -> int:
    while True:
        s = socket.socket(socket.AF_INET, kind)
        s.bind((host, 0))
        port = s.getsockname()[1]
        s.close()
        if port not in (1883, 4370, 18083):
            return port


class Node:
    def __init__(self, index: int, seeds: list[str] | None, workdir: Path, cpu: int = 0):
        self.index = index
        self.host = f"127.0.0.{index + 1}"
        self.name = f"ringmq@{self.host}"
        self.port = free_port(self.host)
        self.api_port = free_port("127.0.0.1")
        self.quic = f"{self.host}:{free_port(self.host, socket.SOCK_DGRAM)}"
        self.dir = workdir / f"node{index}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.cpu = cpu
        self.seeds = seeds
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        cluster = ""
        if self.seeds is not None:
            seeds = ", ".join(f'"{s}"' for s in self.seeds)
            cluster = (f'[cluster]\nname = "benchcl"\ndiscovery_strategy = "static"\n'
                       f'bind = "{self.quic}"\nstatic.seeds = [{seeds}]\n')
        return (f'[node]\nname = "{self.name}"\nshards = 1\ncookie = "bench-cookie"\n'
                f'data_dir = "{self.dir / "data"}"\n'
                f'[listeners.tcp.default]\nbind = "{self.host}:{self.port}"\n'
                f'[mqtt]\nmax_inflight = 1000\nmax_mqueue_len = 65535\n'
                f'[api]\nbind = "127.0.0.1:{self.api_port}"\n'
                f'[log]\nlevel = "warn"\n{cluster}')

    def start(self) -> "Node":
        path = self.dir / "ringmq.toml"
        path.write_text(self.config())
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
        cmd = ["taskset", "-c", str(self.cpu), str(RINGMQ), "--config", str(path)]
        COMMANDS.append(shlex.join(cmd))
        self.log = open(self.dir / "broker.log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 20
        while time.time() < deadline:
            try:
                socket.create_connection((self.host, self.port), 0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise SystemExit(f"node {self.name} did not listen: {self.dir / 'broker.log'}")

    def nodes(self) -> list[dict]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.api_port}/api/v5/nodes")
        req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:public").decode())
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.load(r)

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cluster(n: int, workdir: Path, cpus: list[int] | None = None) -> list[Node]:
    nodes: list[Node] = []
    for i in range(n):
        nodes.append(Node(i, [], workdir, cpu=(cpus or [0] * n)[i]))
    for node in nodes:
        node.seeds = [m.quic for m in nodes]
    for node in nodes:
        node.start()
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if all(sum(m["node_status"] == "running" for m in node.nodes()) == n for node in nodes):
                return nodes
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("the cluster did not form within 30 s")


def loadgen(args: list[str], label: str) -> dict:
    OUT.mkdir(parents=True, exist_ok=True)
    json_path = OUT / f"{label}.json"
    cmd = [str(LOADGEN), *args, "--cpus", "1", "--quiet", "--json", str(json_path),
           "--client-id-prefix", f"cb{os.getpid()}{label}"]
    COMMANDS.append(shlex.join(cmd))
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, timeout=300)
    return json.loads(json_path.read_text())


def addr(node: Node) -> str:
    return f"{node.host}:{node.port}"


def run_p2p(quick: bool, rows: list) -> None:
    d = ["--warmup", "1", "-d", "2" if quick else "5"]
    base = ["p2p", "-c", "50", "-q", "0", "-s", "64", "--max-outstanding", "100", *d]
    one = Node(0, None, OUT / "p2p-one").start()
    try:
        alone = loadgen([*base, "-h", one.host, "-p", str(one.port)], "p2p-one-node")
    finally:
        one.stop()
    nodes = cluster(2, OUT / "p2p-two")
    try:
        cross = loadgen([*base, "--pub-addrs", addr(nodes[0]), "--sub-addrs", addr(nodes[1])],
                        "p2p-cross-node")
    finally:
        for n in nodes:
            n.stop()
    a, c = alone["throughput"]["in_msg_s"], cross["throughput"]["in_msg_s"]
    rows.append(("p2p QoS 0, 50→50, closed loop: one node on CPU 0", f"{a / 1e6:.2f}M msg/s",
                 f"lost {alone['lost']}"))
    rows.append(("p2p QoS 0 cross-node (A publishes, B subscribes), both nodes on CPU 0",
                 f"{c / 1e6:.2f}M msg/s", f"{c / a:.2f}x of one node; lost {cross['lost']}"))


def run_lat(quick: bool, rows: list) -> None:
    d = ["--warmup", "2", "-d", "3" if quick else "6"]
    base = ["p2p", "-c", "50", "-q", "1", "-s", "64", "-r", "20000", *d]
    nodes = cluster(2, OUT / "lat")
    try:
        for label, pub, sub in [("in-node", nodes[0], nodes[0]), ("cross-node", nodes[0], nodes[1])]:
            r = loadgen([*base, "--pub-addrs", addr(pub), "--sub-addrs", addr(sub)], f"lat-{label}")
            lat = r["latency_us"]
            rows.append((f"p2p QoS 1 at 20,000 msg/s, {label} (2-node cluster on CPU 0)",
                         f"p50 {lat['p50']:.0f} µs, p99 {lat['p99']:.0f} µs, p99.9 {lat['p999']:.0f} µs",
                         f"lost {r['lost']}"))
    finally:
        for n in nodes:
            n.stop()


def run_fanout(quick: bool, rows: list) -> None:
    d = ["--warmup", "1", "-d", "2" if quick else "5"]
    nodes = cluster(3, OUT / "fanout")
    try:
        r = loadgen(["fanout", "--publishers", "1", "-c", "100", "-q", "0", "-s", "64",
                     "--max-outstanding", "1000", *d, "--pub-addrs", addr(nodes[0]),
                     "--sub-addrs", ",".join(addr(n) for n in nodes)], "fanout-3-nodes")
        rows.append(("fan-out QoS 0, 1 publisher on A → 100 subscribers over 3 nodes (all on CPU 0)",
                     f"{r['throughput']['in_msg_s'] / 1e6:.2f}M msg/s delivered",
                     f"lost {r['lost']}"))
    finally:
        for n in nodes:
            n.stop()


def run_subscribe(quick: bool, rows: list) -> None:
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    from clients import MqttClient  # noqa: E402 (the e2e suite's paho wrapper)
    nodes = cluster(3, OUT / "subscribe", cpus=[0, 0, 0])
    try:
        pub = MqttClient(nodes[1].port, f"cbpub{os.getpid()}", host=nodes[1].host)
        subacks, arrivals = [], []
        for i in range(20 if quick else 100):
            sub = MqttClient(nodes[0].port, f"cbsub{os.getpid()}-{i}", host=nodes[0].host)
            topic = f"conv/{os.getpid()}/{i}"
            t0 = time.perf_counter()
            sub.subscribe(topic, qos=1)
            t1 = time.perf_counter()
            pub.publish(topic, b"x", qos=1)
            sub.expect_message(timeout=5)
            t2 = time.perf_counter()
            subacks.append((t1 - t0) * 1e3)
            arrivals.append((t2 - t1) * 1e3)
            sub.disconnect()
        pub.disconnect()
        q = statistics.quantiles
        rows.append(("route convergence: SUBSCRIBE on A → SUBACK (peers B, C applied the route)",
                     f"p50 {statistics.median(subacks):.2f} ms, p99 {q(subacks, n=100)[98]:.2f} ms",
                     f"{len(subacks)} new filters"))
        rows.append(("then a QoS 1 PUBLISH on B → arrival on A",
                     f"p50 {statistics.median(arrivals):.2f} ms, p99 {q(arrivals, n=100)[98]:.2f} ms",
                     "every one arrived"))
    finally:
        for n in nodes:
            n.stop()


def run_detect(quick: bool, rows: list) -> None:
    times = []
    for r in range(2 if quick else 5):
        nodes = cluster(3, OUT / f"detect{r}")
        try:
            victim = nodes[2]
            victim.stop(signal.SIGKILL)
            t0 = time.perf_counter()
            while True:
                status = {m["node"]: m["node_status"] for m in nodes[0].nodes()}
                if status.get(victim.name) != "running":
                    break
                if time.perf_counter() - t0 > 30:
                    raise SystemExit("a killed node was not detected within 30 s")
                time.sleep(0.02)
            times.append(time.perf_counter() - t0)
        finally:
            for n in nodes:
                n.stop()
    rows.append(("failure detection: kill -9 → a survivor lists the node stopped",
                 f"median {statistics.median(times):.2f} s, max {max(times):.2f} s",
                 f"{len(times)} kills"))


async def _read_packet(reader) -> tuple[int, bytes]:
    first = (await reader.readexactly(1))[0]
    length, shift = 0, 0
    while True:
        b = (await reader.readexactly(1))[0]
        length |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
    return first >> 4, await reader.readexactly(length)


async def _connect(node: Node, client_id: str, limit, subscribe: str | None = None):
    """A v5 persistent-session connect (clean start 0, session expiry 1 h); returns
    (reader, writer, connack reason code, session present). Retries refused connects
    (0x88 while a claim is busy) after a short pause."""
    import mqttraw  # noqa: E402 (tests/e2e, added to the path by run_takeover)
    async with limit:
        while True:
            reader, writer = await asyncio.open_connection(node.host, node.port)
            writer.write(mqttraw.connect(client_id, clean=False, keepalive=600,
                                         props={"session_expiry_interval": 3600}))
            ptype, body = await _read_packet(reader)
            assert ptype == 2, f"{client_id}: packet {ptype} instead of CONNACK"
            present, rc = bool(body[0] & 1), body[1]
            if rc == 0:
                break
            writer.close()
            await asyncio.sleep(0.05)
        if subscribe is not None:
            writer.write(mqttraw.subscribe(1, subscribe, qos=1))
            ptype, _ = await _read_packet(reader)
            assert ptype == 9, f"{client_id}: packet {ptype} instead of SUBACK"
        return reader, writer, rc, present


def _raise_nofile(n: int) -> None:
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, n + 1024)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _hold_sessions(host: str, port: int, prefix: str, n: int, conn) -> None:
    """Child process: connects `n` persistent sessions on node A (one subscription each) and
    keeps the connections open (the takeover is of online sessions) until told to stop. A process
    of its own: 2 x 10,000 sockets do not fit one process's file limit."""
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    _raise_nofile(n)

    class At:
        pass
    node = At()
    node.host, node.port = host, port

    async def hold():
        limit = asyncio.Semaphore(1000)
        held = await asyncio.gather(*(
            _connect(node, f"{prefix}{i}", limit, subscribe=f"tk/{prefix}/{i}") for i in range(n)))
        conn.send(len(held))
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)
        for _, w, _, _ in held:
            w.close()

    asyncio.run(hold())


def run_takeover(quick: bool, rows: list, clients: int | None = None) -> None:
    import multiprocessing
    sys.path.insert(0, str(ROOT / "tests" / "e2e"))
    n = clients or (500 if quick else 10_000)
    _raise_nofile(n)
    if hasattr(os, "sched_setaffinity") and os.cpu_count() and os.cpu_count() > 1:
        os.sched_setaffinity(0, {1})  # the nodes are on CPU 0
    nodes = cluster(3, OUT / "takeover")
    a, b = nodes[0], nodes[1]
    prefix = f"cbtk{os.getpid()}-"
    here, there = multiprocessing.Pipe()
    holder = multiprocessing.Process(target=_hold_sessions, args=(a.host, a.port, prefix, n, there))

    async def storm():
        limit = asyncio.Semaphore(1000)
        t0 = time.perf_counter()
        second = await asyncio.gather(*(_connect(b, f"{prefix}{i}", limit) for i in range(n)))
        took = time.perf_counter() - t0
        present = sum(1 for _, _, _, p in second if p)
        for _, w, _, _ in second:
            w.close()
        return took, present

    try:
        holder.start()
        assert here.recv() == n
        took, present = asyncio.run(storm())
        here.send("stop")
        holder.join(30)
    finally:
        if holder.is_alive():
            holder.kill()
        for node in nodes:
            node.stop()
    rows.append((f"takeover storm: {n} persistent sessions online on A reconnect on B at once "
                 "(3 nodes on CPU 0)",
                 f"{took:.2f} s until the last CONNACK, {n / took:,.0f} takeovers/s",
                 f"session present = 1 for {present} of {n}"))


SCENARIOS = {"p2p": run_p2p, "lat": run_lat, "fanout": run_fanout,
             "subscribe": run_subscribe, "detect": run_detect, "takeover": run_takeover}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="short windows (trying the script)")
    ap.add_argument("--only", default=",".join(SCENARIOS))
    ap.add_argument("--clients", type=int, default=None,
                    help="takeover: clients to move (default 10000, 500 with --quick)")
    args = ap.parse_args()
    rows: list = []
    started = dt.datetime.now(dt.timezone.utc)
    for key in args.only.split(","):
        if key == "takeover":
            run_takeover(args.quick, rows, args.clients)
        else:
            SCENARIOS[key](args.quick, rows)
    print(f"Cluster benchmarks, {started:%Y-%m-%d %H:%M} UTC, "
          f"commit {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True).stdout.strip()}"
          f"{' (quick)' if args.quick else ''}\n")
    print("| scenario | result | notes |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print("\nCommands (ports differ per run):\n\n```sh")
    for c in COMMANDS:
        print(c)
    print("```")


if __name__ == "__main__":
    main()
