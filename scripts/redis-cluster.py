#!/usr/bin/env python3
"""A real Redis Cluster on loopback for tests: 6 Debian `redis-server`s
(3 masters, 3 replicas) in cluster mode on free ports, in a temp dir.

Usage: scripts/redis-cluster.py [--nodes 6] [--replicas 1] [--node-timeout-ms 1500]

Prints, once `cluster_state:ok` is seen on every node:

    NODE <port> <pid>          (one line per server)
    SEEDS 127.0.0.1:<p1>,127.0.0.1:<p2>,...
    READY

then waits. It stops every server and removes the temp dir when its stdin
closes (the test that started it ended, even by a crash), on SIGTERM/SIGINT,
or on any error. The Rust helper is tests/redis_cluster/mod.rs.
"""

import argparse
import atexit
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

PROCS = []
TMP = None


def free_port():
    # The cluster bus listens on port + 10000: both must be free.
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port + 10000 > 65535:
            continue
        with socket.socket() as b:
            try:
                b.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def stop_all():
    for p in PROCS:
        if p.poll() is None:
            p.kill()
    for p in PROCS:
        try:
            p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    if TMP and os.path.isdir(TMP):
        shutil.rmtree(TMP, ignore_errors=True)


def cli(port, *args, timeout=10):
    return subprocess.run(
        ["redis-cli", "-p", str(port), *args],
        capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
    )


def wait_ping(port, deadline):
    while time.time() < deadline:
        if cli(port, "PING").stdout.strip() == "PONG":
            return
        time.sleep(0.05)
    raise SystemExit(f"redis-server on port {port} did not answer PING")


def main():
    global TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=6)
    ap.add_argument("--replicas", type=int, default=1)
    ap.add_argument("--node-timeout-ms", type=int, default=1500)
    args = ap.parse_args()
    for tool in ("redis-server", "redis-cli"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install redis-server redis-tools")
    atexit.register(stop_all)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    signal.signal(signal.SIGINT, lambda *_: sys.exit(0))
    TMP = tempfile.mkdtemp(prefix="ringmq-redis-cluster-")
    ports = []
    for _ in range(args.nodes):
        port = free_port()
        while port in ports:
            port = free_port()
        ports.append(port)
    for port in ports:
        d = os.path.join(TMP, str(port))
        os.mkdir(d)
        # appendfsync everysec: Redis's own durability (docs/durability.md, "The Redis backend");
        # no RDB snapshots (a test cluster needs none).
        PROCS.append(subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
             "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
             "--cluster-node-timeout", str(args.node_timeout_ms),
             "--appendonly", "yes", "--appendfsync", "everysec", "--save", "",
             "--dir", d, "--daemonize", "no", "--logfile", os.path.join(d, "redis.log"),
             "--protected-mode", "no"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ))
    deadline = time.time() + 20
    for port in ports:
        wait_ping(port, deadline)
    create = subprocess.run(
        ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{p}" for p in ports],
         "--cluster-replicas", str(args.replicas), "--cluster-yes"],
        capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )
    if create.returncode != 0:
        raise SystemExit(f"redis-cli --cluster create failed:\n{create.stdout}\n{create.stderr}")
    deadline = time.time() + 30
    while True:
        states = [cli(p, "CLUSTER", "INFO").stdout for p in ports]
        if all("cluster_state:ok" in s for s in states):
            # Every replica must be attached before the tests count on failover.
            roles = [cli(p, "ROLE").stdout.split("\n")[0].strip() for p in ports]
            links = [cli(p, "INFO", "replication").stdout for p in ports]
            up = sum("master_link_status:up" in s for s in links)
            if roles.count("slave") == args.nodes - args.nodes // (args.replicas + 1) and up == roles.count("slave"):
                break
        if time.time() > deadline:
            raise SystemExit("the Redis Cluster did not reach cluster_state:ok within 30 s")
        time.sleep(0.1)
    for port, proc in zip(ports, PROCS):
        print(f"NODE {port} {proc.pid}")
    print("SEEDS " + ",".join(f"127.0.0.1:{p}" for p in ports))
    print("READY", flush=True)
    # Until the parent closes our stdin (or dies: the pipe closes too).
    try:
        while sys.stdin.read(4096):
            pass
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    main()
