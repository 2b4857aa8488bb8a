#!/usr/bin/env python3
"""How often a TCP probe of the port reaches a dead broker after `kill -9`.

Kills a ringmq holding a few client connections, starts it again at once on
the same port, probes the port as a naive readiness check does (a TCP connect
every 20 ms) and compares the time the probe connected with the new broker's
first "shard listening" log line. A probe that connected first reached the dead
broker's listeners, which its io_uring keeps for a while after the process is
gone (docs/install.md, "Readiness after a restart"; docs/performance.md,
"Restart on the port of a killed broker").

    python3 benches/run/restart_probe.py --port 31870 --restarts 60 [--durable]
"""
import argparse
import datetime
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bin", default=str(ROOT / "target/release/ringmq"))
    ap.add_argument("--port", type=int, required=True, help="MQTT port (the admin API takes port+1)")
    ap.add_argument("--restarts", type=int, default=60)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--clients", type=int, default=5, help="connections held at each kill")
    ap.add_argument("--durable", action="store_true", help="with durable sessions")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="restart-probe-"))
    cfg = (f'[node]\nname = "probe@127.0.0.1"\nshards = {a.shards}\ndata_dir = "{work}/data"\n'
           f'[listeners.tcp.default]\nbind = "127.0.0.1:{a.port}"\n'
           f'[log]\nlevel = "info"\n[api]\nbind = "127.0.0.1:{a.port + 1}"\n')
    if a.durable:
        cfg += "[durable_sessions]\nenable = true\n"
    (work / "ringmq.toml").write_text(cfg)

    def spawn(i: int) -> subprocess.Popen:
        log = open(work / f"start{i}.log", "wb")
        return subprocess.Popen([a.bin, "--config", str(work / "ringmq.toml")], stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def probe() -> float:
        while True:
            try:
                socket.create_connection(("127.0.0.1", a.port), timeout=0.5).close()
                return time.time()
            except OSError:
                time.sleep(0.02)

    def first_listen(i: int) -> float | None:
        for _ in range(500):
            m = re.search(r"^(\S+) .*shard listening", (work / f"start{i}.log").read_text(), re.M)
            if m:
                return datetime.datetime.fromisoformat(m.group(1).replace("Z", "+00:00")).timestamp()
            time.sleep(0.01)
        return None

    proc = spawn(0)
    probe()
    early = []
    try:
        for i in range(1, a.restarts + 1):
            held = [socket.create_connection(("127.0.0.1", a.port)) for _ in range(a.clients)]
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc = spawn(i)
            connected, listened = probe(), first_listen(i)
            if listened is None or connected < listened:
                ahead = "?" if listened is None else f"{(listened - connected) * 1000:.1f}"
                early.append(ahead)
                print(f"restart {i}: the probe connected {ahead} ms before the new broker listened",
                      flush=True)
            for c in held:
                c.close()
    finally:
        proc.kill()
        proc.wait()
    print(f"probes that reached the dead broker: {len(early)} of {a.restarts} (logs in {work})")


if __name__ == "__main__":
    main()
