#!/usr/bin/env python3
"""Connection admission benchmark (ringmq only; Mosquitto has no redirection).

  a. accept rate below the cap: server_redirection enabled with a cap far above
     the load, `ringmq-loadgen conn` opens ACCEPT_CONNECTIONS MQTT 5 connections;
     connections/s = ready / set-up time.
  b. redirect rate at the cap: cap HOLD_CONNECTIONS, held by a first load
     generator; a second one opens REDIRECT_CONNECTIONS MQTT 5 connections that all
     get CONNACK 0x9C with a Server Reference (not followed: --max-redirects 0);
     redirects/s = redirected / set-up time. The broker's own counters
     (/api/v5/status) must agree.

The broker runs on CPU 0 (one shard), the load generators on CPU 1, as in
`make bench`. Benchmarks are not tests: no rate is asserted; a run that does not
redirect exactly the connections it should stops the script.

Run alone (does not touch docs/benchmarks.md):
  python3 benches/run/redirect.py --out target/bench/redirection.md
`make bench` (benches/run/bench.py) calls `run()` and appends the section to
docs/benchmarks.md.

Environment: RINGMQ_BIN, LOADGEN_BIN (defaults: target/release), BENCH_REPEAT (3).
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import shlex
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BROKER_CPU = 0
LOADGEN_CPU = 1
ACCEPT_CONNECTIONS = 5_000
HOLD_CONNECTIONS = 100
REDIRECT_CONNECTIONS = 10_000
READY_TIMEOUT_S = 15.0


class BenchError(Exception):
    pass


def free_port() -> int:
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port != 1883:
            return port


class Broker:
    def __init__(self, binary: str, workdir: Path, cap: int):
        self.port, self.api_port = free_port(), free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_text = "\n".join([
            "[node]", "shards = 1", f'data_dir = "{workdir / "data"}"', "",
            "[listeners.tcp.default]", f'bind = "127.0.0.1:{self.port}"', "",
            "[log]", 'level = "warn"', "",
            "[api]", f'bind = "127.0.0.1:{self.api_port}"', 'username = "bench"', 'password = "bench"', "",
            "[server_redirection]", "enable = true", f"max_connections = {cap}",
            'redirect_strategy = "round_robin"', "",
            # Never contacted: the load generator counts the redirect without following it.
            "[[server_redirection.redirect_servers]]", 'host = "backup-a.example"', "port = 1883", "",
            "[[server_redirection.redirect_servers]]", 'host = "fd00::2"', "port = 1884", "",
        ])
        self.config_path = workdir / "ringmq.toml"
        self.config_path.write_text(self.config_text)
        self.log_path = workdir / "ringmq.log"
        self.argv = ["taskset", "-c", str(BROKER_CPU), binary, "--config", str(self.config_path)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if self.proc.poll() is not None:
                raise BenchError(f"ringmq exited {self.proc.returncode}: {shlex.join(self.argv)}\n"
                                 f"{self.log_path.read_text()[-2000:]}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise BenchError(f"ringmq not listening after {READY_TIMEOUT_S} s") from None
                time.sleep(0.05)

    def status(self) -> dict:
        req = urllib.request.Request(f"http://127.0.0.1:{self.api_port}/api/v5/status")
        req.add_header("Authorization", "Basic " + base64.b64encode(b"bench:bench").decode())
        with urllib.request.urlopen(req, timeout=5) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


def loadgen_argv(lg_bin: str, port: int, prefix: str, out: Path, *args: str) -> list[str]:
    return [lg_bin, "conn", "-h", "127.0.0.1", "-p", str(port), "-V", "5", "--cpus", str(LOADGEN_CPU),
            "--client-id-prefix", prefix, "--json", str(out), "--quiet", *args]


def run_loadgen(argv: list[str], out: Path, allow_none_ready: bool = False) -> dict:
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    # Exit 1 means no client was set up: what a run of redirects only is.
    if not out.exists() or (p.returncode != 0 and not (allow_none_ready and p.returncode == 1)):
        raise BenchError(f"load generator exited {p.returncode}: {shlex.join(argv)}\n"
                         f"{p.stdout[-2000:]}{p.stderr[-2000:]}")
    return json.loads(out.read_text())


def accept_run(ring_bin: str, lg_bin: str, workdir: Path, rep: int) -> tuple[float, list[str]]:
    b = Broker(ring_bin, workdir / f"accept-{rep}", cap=ACCEPT_CONNECTIONS * 10)
    try:
        out = workdir / f"accept-{rep}.json"
        argv = loadgen_argv(lg_bin, b.port, f"acc{os.getpid()}{rep}", out,
                            "-c", str(ACCEPT_CONNECTIONS), "-d", "1")
        r = run_loadgen(argv, out)
        if r["clients"]["ready"] != ACCEPT_CONNECTIONS or r["redirects"]["connections"]:
            raise BenchError(f"accept run: {r['clients']}, redirects {r['redirects']}: {shlex.join(argv)}")
        return ACCEPT_CONNECTIONS / r["clients"]["setup_s"], argv
    finally:
        b.stop()


def redirect_run(ring_bin: str, lg_bin: str, workdir: Path, rep: int) -> tuple[float, list[str], dict]:
    b = Broker(ring_bin, workdir / f"redirect-{rep}", cap=HOLD_CONNECTIONS)
    holder = None
    try:
        hold_out = workdir / f"hold-{rep}.json"
        hold_argv = loadgen_argv(lg_bin, b.port, f"hold{os.getpid()}{rep}", hold_out,
                                 "-c", str(HOLD_CONNECTIONS), "-d", "120")
        holder = subprocess.Popen(hold_argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while b.status()["connections"] < HOLD_CONNECTIONS:
            if time.monotonic() > deadline or holder.poll() is not None:
                raise BenchError(f"the holder never held {HOLD_CONNECTIONS}: {b.status()}")
            time.sleep(0.05)
        out = workdir / f"redirect-{rep}.json"
        argv = loadgen_argv(lg_bin, b.port, f"red{os.getpid()}{rep}", out,
                            "-c", str(REDIRECT_CONNECTIONS), "-d", "0.1", "--max-redirects", "0")
        r = run_loadgen(argv, out, allow_none_ready=True)
        status = b.status()
        broker_redirected = sum(s["redirected"]["use_another_server"] for s in status["shards"])
        if (r["redirects"]["connections"] != REDIRECT_CONNECTIONS or r["clients"]["ready"] != 0
                or broker_redirected != REDIRECT_CONNECTIONS or status["connections"] != HOLD_CONNECTIONS):
            raise BenchError(f"redirect run: loadgen {r['clients']} {r['redirects']}, broker {status}: "
                             f"{shlex.join(argv)}")
        return REDIRECT_CONNECTIONS / r["clients"]["setup_s"], argv, r["redirects"]["by_target"]
    finally:
        if holder is not None and holder.poll() is None:
            holder.terminate()
            holder.wait(10)
        b.stop()


def run(ring_bin: str, lg_bin: str, workdir: Path, repeat: int, command: str) -> str:
    """Runs both measurements `repeat` times; returns the markdown section."""
    workdir.mkdir(parents=True, exist_ok=True)
    accept, redirect = [], []
    accept_argv = redirect_argv = None
    targets: dict = {}
    for rep in range(repeat):
        rate, accept_argv = accept_run(ring_bin, lg_bin, workdir, rep)
        accept.append(rate)
        print(f"redirection bench: accept run {rep + 1}/{repeat}: {rate:,.0f} conn/s", file=sys.stderr)
        rate, redirect_argv, targets = redirect_run(ring_bin, lg_bin, workdir, rep)
        redirect.append(rate)
        print(f"redirection bench: redirect run {rep + 1}/{repeat}: {rate:,.0f} redirects/s", file=sys.stderr)

    def summary(values: list[float]) -> str:
        return (f"{statistics.median(values):,.0f} (min {min(values):,.0f}, max {max(values):,.0f}, "
                f"n={len(values)})")

    def redact(argv: list[str]) -> str:
        return shlex.join(argv).replace(str(workdir), "$RUN").replace(str(REPO) + "/", "")

    date = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "## Connection admission and server redirection (ringmq only)",
        "",
        f"{date}; command: `{command}` (benches/run/redirect.py). One shard on CPU 0, the load "
        f"generator on CPU 1. Mosquitto has no server redirection, so there is no peer column.",
        "",
        "| measurement | rate, median of runs (min, max) |",
        "|---|---|",
        f"| a. MQTT 5 connections accepted below the cap ({ACCEPT_CONNECTIONS:,} new, "
        f"cap {ACCEPT_CONNECTIONS * 10:,}) | {summary(accept)} conn/s |",
        f"| b. MQTT 5 connections redirected at the cap (cap {HOLD_CONNECTIONS} held, "
        f"{REDIRECT_CONNECTIONS:,} new, each CONNACK 0x9C + Server Reference) | {summary(redirect)} redirects/s |",
        "",
        f"Redirect targets seen by the load generator in the last run (round robin): "
        f"{', '.join(f'`{k}`: {v}' for k, v in sorted(targets.items()))}. Every run checks that the "
        f"load generator counted exactly {REDIRECT_CONNECTIONS:,} redirects, the broker's "
        f"`/api/v5/status` the same, and that the node still held {HOLD_CONNECTIONS}.",
        "",
        "Rates are connections over the load generator's set-up time (first connect to the last "
        "CONNACK, 20 ms resolution). A redirect costs the broker a TCP accept, reading and "
        "checking CONNECT, one admission decision and one CONNACK; an accepted connection also "
        "acquires its session (a message to the client id's home shard).",
        "",
        "```sh",
        redact(accept_argv),
        redact(redirect_argv),
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write the markdown section here (default: stdout)")
    ap.add_argument("--repeat", type=int, default=int(os.environ.get("BENCH_REPEAT", "3")))
    args = ap.parse_args()
    os.sched_setaffinity(0, {LOADGEN_CPU})
    ring_bin = os.environ.get("RINGMQ_BIN") or str(REPO / "target/release/ringmq")
    lg_bin = os.environ.get("LOADGEN_BIN") or str(REPO / "target/release/ringmq-loadgen")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = (REPO / "target" / "bench" / f"redirect-{stamp}").resolve()
    command = "python3 benches/run/redirect.py" + (f" --out {args.out}" if args.out else "")
    text = run(ring_bin, lg_bin, workdir, args.repeat, command)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"redirect.py: {e}", file=sys.stderr)
        sys.exit(1)
