#!/usr/bin/env python3
"""Node evacuation benchmark (issue 14): how long a node takes to move N clients off
at a given `conn_evict_rate`, and how often each client was disconnected.

A 3-node cluster on loopback (benches/run/cluster_bench.py's nodes); the load generator
holds N MQTT 5 clients with persistent sessions on node A, with `--reconnect`, so the
clients A evicts follow their Server Reference (`redirect_to`: nodes B and C) with their
client ids. The evacuation starts with `wait_health_check = 0`; the time reported is from
the start request until A holds no connection, and until B and C hold all N.

With `--traffic R` (msg/s, default 2000) the clients are N/2 QoS 1 publisher/subscriber
pairs (`ringmq-loadgen p2p`) publishing R messages a second in all, from before the
evacuation starts until 10 s after it ends: publishers and subscribers are evicted and
move while messages flow; a publisher sends again what was not acknowledged when it was
disconnected (MQTT-4.4.0-1, counted as `resent`), and the report's `lost` is every message
a publisher sent that its subscriber never received. `--traffic 0`: idle clients (`conn`).

Benchmarks, not tests: nothing is asserted.

    python3 benches/run/evacuation_bench.py [--clients 10000] [--rates 500,5000]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cluster_bench as cb  # noqa: E402


def api(node: cb.Node, method: str, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{node.api_port}{path}", data=data, method=method)
    req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:public").decode())
    if data is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=10) as r:
        text = r.read()
        return json.loads(text) if text else {}


def connections(node: cb.Node) -> int:
    """The node's MQTT connections; -1 while its API answers 503 (its shards or cluster thread
    busy under the storm past the API's bounded wait: try again)."""
    try:
        mine = [n for n in node.nodes() if n["node"] == node.name]
    except urllib.error.HTTPError as e:
        if e.code == 503:
            return -1
        raise
    return mine[0].get("connections", 0) if mine else 0


def wait_until(check, timeout: float, what: str) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise SystemExit(f"timed out: {what}")
        time.sleep(0.02)
    return time.monotonic() - start


def run(clients: int, rate: int, traffic: int, workdir: Path) -> dict:
    nodes = cb.cluster(3, workdir, cpus=[0, 0, 0])
    a, b, c = nodes
    json_path = cb.OUT / f"evacuate-{clients}-{rate}.json"
    cb.OUT.mkdir(parents=True, exist_ok=True)
    common = ["-V", "5", "--clean-start", "false", "--session-expiry", "600", "--reconnect",
              "--connect-rate", "5000", "--cpus", "1", "--quiet", "--json", str(json_path),
              "--client-id-prefix", f"ev{os.getpid()}r{rate}"]
    if traffic:
        # Publishing lasts the evacuation (N / rate s) and 10 s more; the setup and the
        # wait below are outside it.
        publish_s = clients // rate + 15
        cmd = [str(cb.LOADGEN), "p2p", "-c", str(clients // 2), "-q", "1", "-r", str(traffic),
               "-d", f"{publish_s}s", "--warmup", "2s", "--drain", "20s",
               "--pub-addrs", cb.addr(a), "--sub-addrs", cb.addr(a)] + common
    else:
        cmd = [str(cb.LOADGEN), "conn", "-c", str(clients), "-d", "600s",
               "--pub-addrs", cb.addr(a)] + common
    cb.COMMANDS.append(shlex.join(cmd))
    lg = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: connections(a) == clients, 120, f"{clients} clients on A")
        if traffic:
            time.sleep(3)  # past the warm-up: messages flow before the first eviction
        body = {"conn_evict_rate": rate, "wait_health_check": 0, "wait_takeover": 5,
                "redirect_to": f"{cb.addr(b)} {cb.addr(c)}"}
        cb.COMMANDS.append(f"POST /api/v5/load_rebalance/{a.name}/evacuation/start {json.dumps(body)}")
        started = time.monotonic()
        api(a, "POST", f"/api/v5/load_rebalance/{a.name}/evacuation/start", body)
        wait_until(lambda: connections(a) == 0, 600, "A empty")
        emptied_s = time.monotonic() - started
        wait_until(lambda: min(connections(b), connections(c)) >= 0
                   and connections(b) + connections(c) == clients, 120, "B and C hold everyone")
        settled_s = time.monotonic() - started
        spread = (connections(b), connections(c))
        api(a, "POST", f"/api/v5/load_rebalance/{a.name}/evacuation/stop")
        if traffic:
            lg.communicate(timeout=clients // rate + 120)  # its end and its drain
    finally:
        if lg.poll() is None:
            lg.send_signal(signal.SIGINT)
        try:
            lg.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            lg.kill()
        for n in nodes:
            n.stop()
    report = json.loads(json_path.read_text())
    return {"clients": clients, "rate": rate, "emptied_s": emptied_s, "settled_s": settled_s,
            "spread": spread, "evictions": report["evictions"], "errors": report["errors"],
            "sent": report.get("sent", 0), "lost": report.get("lost"),
            "duplicated": report.get("duplicated", 0), "reordered": report.get("reordered", 0)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=10_000)
    p.add_argument("--rates", default="500,5000")
    p.add_argument("--traffic", type=int, default=2000,
                   help="QoS 1 msg/s among the clients during the evacuation (0: idle clients)")
    args = p.parse_args()
    rows = []
    for rate in (int(r) for r in args.rates.split(",")):
        rows.append(run(args.clients, rate, args.traffic, cb.OUT / f"rate{rate}"))
    print("| clients | conn_evict_rate | node empty after | all reconnected after | B / C | "
          "disconnects per client (max) | clients disconnected twice | refused reconnects retried | "
          "QoS 1 sent | resent after reconnect | lost | duplicated | loadgen errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ev = r["evictions"]
        print(f"| {r['clients']:,} | {r['rate']:,}/s | {r['emptied_s']:.2f} s | {r['settled_s']:.2f} s | "
              f"{r['spread'][0]:,} / {r['spread'][1]:,} | {ev['max_per_client']} | "
              f"{ev['clients_more_than_once']} | {ev.get('refused_reconnects_retried', {})} | "
              f"{r['sent']:,} | {ev.get('resent_after_reconnect', 0):,} | {r['lost']} | "
              f"{r['duplicated']:,} | {sum(r['errors'].values())} |")
    print("\nCommands:\n")
    for c in cb.COMMANDS:
        print(f"    {c}")


if __name__ == "__main__":
    main()
