#!/usr/bin/env python3
"""Durable sessions' cost (issue 15): QoS 1 fan-in and p2p throughput, and p99 latency at
20,000 msg/s, with persistent sessions, for ringmq in memory and with `durable_sessions`
on the builtin store and on a Redis Cluster, in each `sync` mode.

One ringmq shard on CPU 0, `ringmq-loadgen` on CPU 1 (as `make bench`), every client
persistent (Clean Start 0, Session Expiry 3600 s): what the store writes is every
session, subscription and queued/inflight QoS 1 delivery. The Redis Cluster (3 masters,
3 replicas, `scripts/redis-cluster.py`) runs unpinned beside them, so the Redis figures
include Redis's own CPU on a 2-CPU machine.

Benchmarks are not tests: nothing is asserted. Prints a Markdown table (medians of
--repeat runs) for docs/benchmarks.md.

    python3 benches/run/durable_bench.py [--repeat 1] [--modes off,builtin-none,...] [--quick]

Modes: `off` (in memory), `builtin-<sync>` (the builtin backend's default engine, the
log), `fjall-<sync>` (the builtin backend with `engine = "fjall"`), `redis-<sync>`.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RINGMQ = os.environ.get("RINGMQ_BIN", str(REPO / "target/release/ringmq"))
LOADGEN = os.environ.get("LOADGEN_BIN", str(REPO / "target/release/ringmq-loadgen"))
BROKER_CPU, LOADGEN_CPU = "0", "1"
PERSISTENT = ["-C", "false", "-x", "3600"]

# builtin-*: the builtin backend's default engine (the log); fjall-*: the
# builtin backend with `engine = "fjall"`.
MODES = ["off", "builtin-none", "builtin-batch", "builtin-always",
         "fjall-none", "fjall-batch", "fjall-always",
         "redis-none", "redis-batch", "redis-always"]


def scenarios(quick: bool) -> list[tuple[str, list[str]]]:
    tput = ["--warmup", "1", "-d", "3" if quick else "8"]
    return [
        ("fanin", ["fanin", "-c", "100", "--subscribers", "1", "-q", "1", "-s", "64",
                   "--max-outstanding", "100", *tput]),
        ("p2p", ["p2p", "-c", "50", "-q", "1", "-s", "64", "--max-outstanding", "100", *tput]),
        ("lat20k", ["p2p", "-c", "50", "-q", "1", "-s", "64", "-r", "20000", *tput]),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(mode: str, port: int, data: Path, seeds: list[str]) -> str:
    lines = ["[node]", "shards = 1", f'data_dir = "{data}"', "",
             "[listeners.tcp.default]", f'bind = "127.0.0.1:{port}"', "",
             "[mqtt]", "max_inflight = 100", "max_mqueue_len = 100000", "",
             "[log]", 'level = "warn"', "", "[api]", "enable = false", ""]
    if mode != "off":
        backend, sync = mode.split("-")
        engine = []
        if backend == "fjall":
            backend, engine = "builtin", ['engine = "fjall"']
        lines += ["[durable_sessions]", "enable = true", f'backend = "{backend}"', *engine,
                  f'sync = "{sync}"', ""]
        if backend == "redis":
            servers = ", ".join(f'"{s}"' for s in seeds)
            lines += ["[redis]", 'redis_type = "cluster"', f"servers = [{servers}]", ""]
    return "\n".join(lines)


def wait_port(port: int, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ringmq exited {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("ringmq did not listen")


def start_redis() -> tuple[subprocess.Popen, list[str]]:
    p = subprocess.Popen([sys.executable, str(REPO / "scripts/redis-cluster.py")],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    seeds: list[str] = []
    for line in p.stdout:
        if line.startswith("SEEDS "):
            seeds = line.split()[1].split(",")
        if line.strip() == "READY":
            return p, seeds
    raise SystemExit("the Redis Cluster did not start")


def flush_redis(seeds: list[str]) -> None:
    """Each run starts from an empty store (masters only; replicas follow)."""
    for s in seeds:
        host, port = s.rsplit(":", 1)
        role = subprocess.run(["redis-cli", "-h", host, "-p", port, "ROLE"],
                              capture_output=True, text=True).stdout.split()
        if role and role[0] == "master":
            subprocess.run(["redis-cli", "-h", host, "-p", port, "FLUSHALL"],
                           capture_output=True, check=True)


def run_one(mode: str, args: list[str], seeds: list[str], work: Path, tag: str) -> dict:
    port = free_port()
    data = work / f"data-{tag}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    cfg = work / f"{tag}.toml"
    cfg.write_text(config(mode, port, data, seeds))
    if mode.startswith("redis"):
        flush_redis(seeds)
    log = open(work / f"{tag}.log", "w")
    # ringmq reads RINGMQ_* as configuration: RINGMQ_BIN is the script's.
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
    broker = subprocess.Popen(["taskset", "-c", BROKER_CPU, RINGMQ, "--config", str(cfg)],
                              stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_port(port, broker)
        out = work / f"{tag}.json"
        argv = [LOADGEN, *args, *PERSISTENT, "-h", "127.0.0.1", "-p", str(port),
                "--cpus", LOADGEN_CPU, "--client-id-prefix", tag, "--json", str(out), "--quiet"]
        r = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            raise SystemExit(f"loadgen failed ({tag}): {r.stdout[-1500:]}{r.stderr[-1500:]}")
        return json.loads(out.read_text())
    finally:
        broker.terminate()
        try:
            broker.wait(30)
        except subprocess.TimeoutExpired:
            broker.kill()
        log.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    modes = a.modes.split(",")
    work = Path(a.work or tempfile.mkdtemp(prefix="durable-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    redis, seeds = (None, [])
    if any(m.startswith("redis") for m in modes):
        redis, seeds = start_redis()
    results: dict[tuple[str, str], list[dict]] = {}
    try:
        for i in range(a.repeat):
            for name, args in scenarios(a.quick):
                for mode in modes:
                    rep = run_one(mode, args, seeds, work, f"{name}-{mode}-{i}")
                    results.setdefault((name, mode), []).append(rep)
                    lat = rep.get("latency_us") or {}
                    print(f"{name:7} {mode:15} out {rep['throughput']['out_msg_s']:>9,.0f} msg/s "
                          f"p99 {lat.get('p99', 0):>8,.0f} us lost {rep.get('lost')}", flush=True)
    finally:
        if redis:
            redis.stdin.close()
            redis.wait(30)

    def med(name: str, mode: str, f) -> float:
        return statistics.median(f(r) for r in results[(name, mode)])

    out = lambda r: r["throughput"]["out_msg_s"]
    p99 = lambda r: (r.get("latency_us") or {}).get("p99", 0) / 1000
    print()
    print("| mode | fan-in QoS 1 msg/s | vs in memory | p2p QoS 1 msg/s | vs in memory "
          "| p99 at 20k msg/s (ms) |")
    print("|---|---|---|---|---|---|")
    for mode in modes:
        row = [mode]
        for name in ("fanin", "p2p"):
            v = med(name, mode, out)
            row.append(f"{v:,.0f}")
            base = med(name, "off", out) if "off" in modes else None
            row.append(f"{v / base:.2f}x" if base else "")
        row.append(f"{med('lat20k', mode, p99):.2f}")
        print("| " + " | ".join(row) + " |")
    print(f"\n(work dir: {work})")


if __name__ == "__main__":
    main()
