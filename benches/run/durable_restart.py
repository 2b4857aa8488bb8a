#!/usr/bin/env python3
"""Restart time with 1 million queued messages (issue 15; goal: under 10 s), for the
builtin store and for a Redis Cluster, with one shard and with the default (one per CPU).

Each run: start ringmq (`durable_sessions` on, `sync = "batch"`), connect --sessions
persistent subscribers (MQTT 5, Clean Start 0, Session Expiry 3600 s, a QoS 1
subscription to `rs/<i>` each) and disconnect them, publish --messages QoS 1 messages of
--size bytes round robin over their topics (so each offline session queues
messages/sessions of them), then stop ringmq (SIGTERM, a clean stop; or `kill -9` after
--settle seconds: the writes are in the OS, so nothing should be lost) and start it again
on the same store. Measured from the second exec:

* `listen`: the first TCP connect that succeeds (the socket listens; clients may still
  wait in the backlog);
* `accept`: the first CONNACK to a probe client (Clean Start 1, no expiry): ringmq takes
  connections only once every shard restored its sessions;
* `sessions`: every subscriber reconnected (Clean Start 0) with session present 1 and got
  its first message;
* `drain`: every queued message received (and PUBACKed); `got` counts them (DUP
  re-sends of inflight messages included);
* RSS of ringmq before the stop, right after `accept`, and after the drain; the store's
  size (builtin: disk blocks of `data_dir/durable-log`, the log engine's; fjall: the builtin
  backend with `engine = "fjall"`, `data_dir/durable`; Redis: `used_memory` of the masters).

The clients are raw sockets in this process (paho is too slow for a million messages);
the publisher keeps the server's Receive Maximum of PUBLISH packets in flight. Nothing is
pinned: the broker, its store threads, Redis and this script share the machine's CPUs.

Benchmarks are not tests: nothing is asserted. Prints one line per run and a Markdown
table at the end.

    python3 benches/run/durable_restart.py [--backends builtin,fjall,redis] [--shards 1,default]
        [--stops term,kill] [--messages 1000000] [--sessions 100] [--size 64]
"""
from __future__ import annotations

import argparse
import datetime
import os
import selectors
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from durable_bench import start_redis  # noqa: E402  (the same Redis Cluster start)

REPO = Path(__file__).resolve().parents[2]
RINGMQ = os.environ.get("RINGMQ_BIN", str(REPO / "target/release/ringmq"))
# ringmq reads RINGMQ_* variables as configuration (RINGMQ_BIN would be an unknown key).
BROKER_ENV = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}

# ---------------------------------------------------------------- MQTT 5 by hand


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def mqtt_str(s: str) -> bytes:
    b = s.encode()
    return struct.pack(">H", len(b)) + b


def packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + varint(len(body)) + body


def connect_packet(client_id: str, clean: bool, expiry_s: int) -> bytes:
    props = b"\x11" + struct.pack(">I", expiry_s) + b"\x21" + struct.pack(">H", 65535)
    body = (mqtt_str("MQTT") + bytes([5, 0x02 if clean else 0x00]) + struct.pack(">H", 60)
            + varint(len(props)) + props + mqtt_str(client_id))
    return packet(0x10, body)


def subscribe_packet(pid: int, topic: str) -> bytes:
    return packet(0x82, struct.pack(">H", pid) + b"\x00" + mqtt_str(topic) + b"\x01")


DISCONNECT = b"\xe0\x00"


def split_packets(buf: bytearray) -> tuple[list[tuple[int, bytes]], int]:
    """Whole packets at the start of `buf` as (first byte, body), and the bytes they took."""
    out, pos, n = [], 0, len(buf)
    while pos + 2 <= n:
        mult, length, i = 1, 0, pos + 1
        while True:
            if i >= n:
                return out, pos
            b = buf[i]
            length += (b & 0x7F) * mult
            mult <<= 7
            i += 1
            if not b & 0x80:
                break
        if i + length > n:
            break
        out.append((buf[pos], bytes(buf[i:i + length])))
        pos = i + length
    return out, pos


def read_packet(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    while True:
        pkts, used = split_packets(buf)
        if pkts:
            first, body = pkts[0]
            # Keep whatever followed the first packet.
            del buf[:len(packet(first, body))]
            return first, body
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buf += data


def connack_props(body: bytes) -> dict[int, int]:
    """The CONNACK's numeric properties we look at (Receive Maximum 0x21)."""
    plen, i, mult = 0, 2, 1
    while True:
        b = body[i]
        plen += (b & 0x7F) * mult
        mult <<= 7
        i += 1
        if not b & 0x80:
            break
    props, end = {}, i + plen
    sizes = {0x01: 1, 0x24: 1, 0x25: 1, 0x28: 1, 0x29: 1, 0x2A: 1, 0x13: 2, 0x21: 2,
             0x22: 2, 0x11: 4, 0x27: 4}
    while i < end:
        pid = body[i]
        i += 1
        if pid in sizes:
            size = sizes[pid]
            props[pid] = int.from_bytes(body[i:i + size], "big")
            i += size
        elif pid in (0x12, 0x15, 0x1A, 0x1C, 0x1F, 0x16):
            ln = struct.unpack(">H", body[i:i + 2])[0]
            i += 2 + ln
        elif pid == 0x26:
            a = struct.unpack(">H", body[i:i + 2])[0]
            i += 2 + a
            b = struct.unpack(">H", body[i:i + 2])[0]
            i += 2 + b
        else:
            break
    return props


def open_client(port: int, client_id: str, clean: bool, expiry_s: int,
                timeout: float = 60.0) -> tuple[socket.socket, bytearray, bytes]:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(connect_packet(client_id, clean, expiry_s))
    buf = bytearray()
    first, body = read_packet(s, buf)
    if first >> 4 != 2 or body[1] != 0:
        raise SystemExit(f"{client_id}: CONNACK {body.hex()}")
    return s, buf, body


# ---------------------------------------------------------------- the broker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(backend: str, shards: str, port: int, api_port: int, data: Path,
           seeds: list[str], mqueue_len: int) -> str:
    node = ["[node]", f'data_dir = "{data}"']
    if shards != "default":
        node.append(f"shards = {int(shards)}")
    lines = [*node, "",
             "[listeners.tcp.default]", f'bind = "127.0.0.1:{port}"', "",
             "[mqtt]", "max_inflight = 100", f"max_mqueue_len = {mqueue_len}", "",
             "[log]", 'level = "info"', "",
             "[api]", "enable = true", f'bind = "127.0.0.1:{api_port}"', "",
             "[durable_sessions]", "enable = true",
             *(['backend = "builtin"', 'engine = "fjall"'] if backend == "fjall"
               else [f'backend = "{backend}"']),
             'sync = "batch"', ""]
    if backend == "redis":
        servers = ", ".join(f'"{s}"' for s in seeds)
        lines += ["[redis]", 'redis_type = "cluster"', f"servers = [{servers}]", ""]
    return "\n".join(lines)


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def store_root(data: Path, backend: str) -> Path:
    """builtin: the log engine's stores; fjall: the builtin backend with `engine = "fjall"`."""
    return data / ("durable" if backend == "fjall" else "durable-log")


def disk_mib(path: Path) -> float:
    """Disk blocks in use (fjall's journals are preallocated sparse files)."""
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total / 2**20


def redis_masters(seeds: list[str]) -> list[tuple[str, str]]:
    out = []
    for s in seeds:
        host, port = s.rsplit(":", 1)
        role = subprocess.run(["redis-cli", "-h", host, "-p", port, "ROLE"],
                              capture_output=True, text=True).stdout.split()
        if role and role[0] == "master":
            out.append((host, port))
    return out


def flush_redis(seeds: list[str]) -> None:
    """Each run starts from an empty store (masters only; replicas follow)."""
    for host, port in redis_masters(seeds):
        subprocess.run(["redis-cli", "-h", host, "-p", port, "FLUSHALL"],
                       capture_output=True, check=True)


def redis_used_mib(seeds: list[str]) -> float:
    total = 0
    for host, port in redis_masters(seeds):
        info = subprocess.run(["redis-cli", "-h", host, "-p", port, "INFO", "memory"],
                              capture_output=True, text=True).stdout
        for line in info.splitlines():
            if line.startswith("used_memory:"):
                total += int(line.split(":")[1])
    return total / 2**20


def redis_ops(api_port: int) -> int | None:
    """`ringmq_durable_redis_ops_total`: ops the Redis thread wrote."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/v5/prometheus/stats",
                                    timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("ringmq_durable_redis_ops_total"):
                    return int(float(line.split()[-1]))
    except OSError:
        pass
    return None


def redis_deliveries(seeds: list[str], sessions: int) -> int:
    """The delivery records Redis holds for the subscribers (HLEN of each one's `d` hash,
    asked of every master: the masters not holding a key answer MOVED)."""
    cmds = "".join(f"HLEN {{c:rs-sub-{i}}}:d\n" for i in range(sessions))
    total = 0
    for host, port in redis_masters(seeds):
        out = subprocess.run(["redis-cli", "-h", host, "-p", port], input=cmds,
                             capture_output=True, text=True).stdout
        total += sum(int(x) for x in out.split() if x.isdigit())
    return total


def wait_synced(backend: str, api_port: int, data: Path, seeds: list[str],
                settle_s: float, sessions: int = 0, messages: int = 0) -> float:
    """Waits until the store stopped taking writes (Redis: the ops counter and the
    masters' memory, builtin: the store's disk use) for `settle_s`: everything the shards
    acknowledged is written."""
    t = time.monotonic()
    if backend == "redis":
        # A writer retrying after timeouts moves no counter for seconds: wait until Redis
        # holds a record for every message first.
        while redis_deliveries(seeds, sessions) < messages and time.monotonic() - t < 600:
            time.sleep(0.5)
    # Redis: the ops counter moves once per group (a group may take seconds), so Redis's
    # own memory use too, in 4 MiB steps (it moves by a few KiB at rest).
    probe = (lambda: (redis_ops(api_port), int(redis_used_mib(seeds) / 4))) \
        if backend == "redis" \
        else (lambda: disk_mib(store_root(data, backend)))
    last, since = probe(), time.monotonic()
    while time.monotonic() - since < settle_s and time.monotonic() - t < 600:
        time.sleep(0.25)
        now = probe()
        if now != last:
            last, since = now, time.monotonic()
    return time.monotonic() - t


def log_phases(log: Path, exec_wall: float) -> dict:
    """Seconds from exec to the log lines that end the store's open and the shards'
    restore (the last shard's)."""
    out: dict = {}
    marks = {"durable store opened": "opened_s", "durable sessions restored": "restored_s"}
    for line in log.read_text(errors="replace").splitlines():
        for text, key in marks.items():
            if text in line:
                stamp = line.split()[0].rstrip("Z")
                try:
                    wall = datetime.datetime.fromisoformat(stamp).replace(
                        tzinfo=datetime.timezone.utc).timestamp()
                except ValueError:
                    continue
                out[key] = max(out.get(key, 0.0), wall - exec_wall)
    return out


# ---------------------------------------------------------------- the phases


def fill(port: int, sessions: int, messages: int, size: int) -> float:
    """Persistent subscribers go offline, then `messages` QoS 1 PUBLISHes reach them:
    returns the publish rate (msg/s, to the last PUBACK)."""
    for i in range(sessions):
        s, buf, _ = open_client(port, f"rs-sub-{i}", clean=False, expiry_s=3600)
        s.sendall(subscribe_packet(1, f"rs/{i}"))
        first, body = read_packet(s, buf)
        if first >> 4 != 9 or body[-1] != 1:
            raise SystemExit(f"rs-sub-{i}: SUBACK {body.hex()}")
        s.sendall(DISCONNECT)
        s.close()
    s, buf, body = open_client(port, "rs-pub", clean=True, expiry_s=0)
    window = min(connack_props(body).get(0x21, 65535), 60000)
    pad = b"x" * (size - 8)
    heads = [bytes([0x32]) + varint(2 + len(f"rs/{i}") + 2 + 1 + size) + mqtt_str(f"rs/{i}")
             for i in range(sessions)]
    sent = acked = 0
    pid = 0
    rbuf = bytearray()
    t0 = time.monotonic()
    s.settimeout(60)
    while acked < messages:
        room = min(window - (sent - acked), messages - sent, 2000)
        if room > 0:
            chunk = []
            for _ in range(room):
                pid = pid % 65535 + 1
                # The payload starts with the message's index: the drain finds any lost.
                chunk.append(heads[sent % sessions] + pid.to_bytes(2, "big") + b"\x00"
                             + sent.to_bytes(8, "big") + pad)
                sent += 1
            s.sendall(b"".join(chunk))
            if sent - acked < window and sent < messages:
                # Read what is there without waiting.
                s.setblocking(False)
                try:
                    data = s.recv(1 << 20)
                except BlockingIOError:
                    data = None
                s.settimeout(60)
                if data is None:
                    continue
            else:
                data = s.recv(1 << 20)
        else:
            data = s.recv(1 << 20)
        if not data:
            raise SystemExit(f"publisher closed after {acked} PUBACKs")
        rbuf += data
        pkts, used = split_packets(rbuf)
        del rbuf[:used]
        for first, body in pkts:
            if first >> 4 == 4:
                if len(body) > 2 and body[2] >= 0x80:
                    raise SystemExit(f"PUBACK reason {body[2]:#x}")
                acked += 1
    rate = messages / (time.monotonic() - t0)
    s.sendall(DISCONNECT)
    s.close()
    return rate


def wait_accepting(port: int, proc: subprocess.Popen, t0: float,
                   timeout: float) -> tuple[float, float]:
    """(time to the first TCP connect, time to the first CONNACK), from t0."""
    t_listen = None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"ringmq exited {proc.returncode} while starting")
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=0.5)
        except OSError:
            time.sleep(0.005)
            continue
        if t_listen is None:
            t_listen = time.monotonic() - t0
        s.settimeout(timeout)
        s.sendall(connect_packet("rs-probe", clean=True, expiry_s=0))
        buf = bytearray()
        try:
            read_packet(s, buf)
        except (ConnectionError, OSError):
            s.close()
            continue
        t_accept = time.monotonic() - t0
        s.sendall(DISCONNECT)
        s.close()
        return t_listen, t_accept
    raise SystemExit("ringmq did not accept in time")


def drain(port: int, sessions: int, expect: int, t0: float, idle_s: float) -> dict:
    """Every subscriber reconnects: session present, first message, then all messages
    PUBACKed. Times from t0."""
    sel = selectors.DefaultSelector()
    bufs: dict[socket.socket, bytearray] = {}
    present = 0
    for i in range(sessions):
        s, buf, body = open_client(port, f"rs-sub-{i}", clean=False, expiry_s=3600)
        present += body[0] & 1
        s.setblocking(False)
        bufs[s] = buf
        sel.register(s, selectors.EVENT_READ)
    t_connected = time.monotonic() - t0
    started: set[socket.socket] = set()
    st = {"got": 0, "unique": 0, "dups": 0, "first": None, "sessions": None}
    seen = bytearray(expect)

    def handle(s: socket.socket, buf: bytearray) -> None:
        pkts, used = split_packets(buf)
        del buf[:used]
        acks = []
        for first, body in pkts:
            if first >> 4 != 3:
                continue
            st["got"] += 1
            st["dups"] += (first >> 3) & 1
            tlen = (body[0] << 8) | body[1]
            acks.append(b"\x40\x02" + body[2 + tlen:4 + tlen])
            # Packet id, properties (their length: one byte here), then the index.
            plen = body[4 + tlen]
            at = 5 + tlen + plen
            index = int.from_bytes(body[at:at + 8], "big")
            if index < expect and not seen[index]:
                seen[index] = 1
                st["unique"] += 1
        if acks:
            if st["first"] is None:
                st["first"] = time.monotonic() - t0
            started.add(s)
            if st["sessions"] is None and len(started) == sessions:
                st["sessions"] = time.monotonic() - t0
            s.setblocking(True)
            s.sendall(b"".join(acks))
            s.setblocking(False)

    # What came with the CONNACK.
    for s, buf in bufs.items():
        handle(s, buf)
    last = time.monotonic()
    while st["unique"] < expect and time.monotonic() - last < idle_s:
        for key, _ in sel.select(timeout=0.5):
            s = key.fileobj
            try:
                data = s.recv(1 << 20)
            except BlockingIOError:
                continue
            if not data:
                sel.unregister(s)
                continue
            last = time.monotonic()
            bufs[s] += data
            handle(s, bufs[s])
    got, dups, t_first, t_sessions = st["got"], st["dups"], st["first"], st["sessions"]
    unique = st["unique"]
    t_drain = time.monotonic() - t0 if unique >= expect else None
    missing = [i for i, v in enumerate(seen) if not v][:10]
    for s in bufs:
        try:
            s.setblocking(True)
            s.sendall(DISCONNECT)
        except OSError:
            pass
        s.close()
    return {"present": present, "connected_s": t_connected, "first_s": t_first,
            "sessions_s": t_sessions, "drain_s": t_drain, "got": got, "dups": dups,
            "unique": unique, "missing": missing}


def run_one(backend: str, shards: str, stop: str, a, seeds: list[str], work: Path) -> dict:
    tag = f"{backend}-{shards}-{stop}"
    port, api_port = free_port(), free_port()
    data = work / f"data-{tag}"
    shutil.rmtree(data, ignore_errors=True)
    data.mkdir(parents=True)
    cfg = work / f"{tag}.toml"
    mqueue_len = max(1000, -(-a.messages // a.sessions) * 2)
    cfg.write_text(config(backend, shards, port, api_port, data, seeds, mqueue_len))
    if backend == "redis":
        flush_redis(seeds)
    res: dict = {"backend": backend, "shards": shards, "stop": stop}
    with open(work / f"{tag}-1.log", "w") as log:
        broker = subprocess.Popen([RINGMQ, "--config", str(cfg)], stdout=log,
                                  stderr=subprocess.STDOUT, env=BROKER_ENV)
        try:
            wait_accepting(port, broker, time.monotonic(), 30)
            res["fill_msg_s"] = fill(port, a.sessions, a.messages, a.size)
            res["sync_wait_s"] = wait_synced(backend, api_port, data, seeds, a.settle,
                                             a.sessions, a.messages)
            res["rss_before_mib"] = rss_mib(broker.pid)
            if stop == "none":
                # No restart: what the sessions hold in memory (a loss here is not the
                # restart's).
                t0 = time.monotonic()
                res.update(listen_s=0.0, accept_s=0.0, rss_restored_mib=res["rss_before_mib"])
                res.update(drain(port, a.sessions, a.messages, t0, a.idle))
                res["rss_drained_mib"] = rss_mib(broker.pid)
            t = time.monotonic()
            if stop == "kill":
                broker.kill()
                broker.wait(30)
            else:
                broker.send_signal(signal.SIGTERM)
                broker.wait(300)
            res["stop_s"] = time.monotonic() - t
        finally:
            if broker.poll() is None:
                broker.kill()
                broker.wait()
    res["store_mib"] = disk_mib(store_root(data, backend)) if backend != "redis" \
        else redis_used_mib(seeds)
    if stop == "none":
        return res
    log_path = work / f"{tag}-2.log"
    with open(log_path, "w") as log:
        exec_wall, t0 = time.time(), time.monotonic()
        broker = subprocess.Popen([RINGMQ, "--config", str(cfg)], stdout=log,
                                  stderr=subprocess.STDOUT, env=BROKER_ENV)
        try:
            res["listen_s"], res["accept_s"] = wait_accepting(port, broker, t0, a.timeout)
            res["rss_restored_mib"] = rss_mib(broker.pid)
            res.update(drain(port, a.sessions, a.messages, t0, a.idle))
            res["rss_drained_mib"] = rss_mib(broker.pid)
        finally:
            broker.terminate()
            try:
                broker.wait(120)
            except subprocess.TimeoutExpired:
                broker.kill()
                broker.wait()
    res.update(log_phases(log_path, exec_wall))
    return res


def fmt(v, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backends", default="builtin,redis")
    ap.add_argument("--shards", default="1,default", help="comma list: a count or `default`")
    ap.add_argument("--stops", default="term,kill", help="term (SIGTERM), kill (-9), none (no restart: drain the same process)")
    ap.add_argument("--messages", type=int, default=1_000_000)
    ap.add_argument("--sessions", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--settle", type=float, default=2.0,
                    help="before the stop: seconds the store must stay unchanged (Redis: its ops "
                         "counter; builtin: its disk use) to count as synced")
    ap.add_argument("--timeout", type=float, default=300.0, help="restart: most seconds to wait")
    ap.add_argument("--idle", type=float, default=20.0,
                    help="drain: give up after this many seconds without a message")
    ap.add_argument("--work", default=None)
    a = ap.parse_args()
    work = Path(a.work or tempfile.mkdtemp(prefix="durable-restart-"))
    work.mkdir(parents=True, exist_ok=True)
    backends = a.backends.split(",")
    redis, seeds = (None, [])
    if "redis" in backends:
        redis, seeds = start_redis()
    print(f"load before: {os.getloadavg()[0]:.2f} (1 min), {os.cpu_count()} CPUs", flush=True)
    rows = []
    try:
        for backend in backends:
            for shards in a.shards.split(","):
                for stop in a.stops.split(","):
                    r = run_one(backend, shards, stop, a, seeds, work)
                    rows.append(r)
                    print(f"{backend:7} shards={shards:7} {stop:4} fill {r['fill_msg_s']:,.0f} msg/s "
                          f"sync wait {r['sync_wait_s']:.1f} s store {r['store_mib']:.0f} MiB; restart: "
                          f"opened {fmt(r.get('opened_s'))} s restored {fmt(r.get('restored_s'))} s "
                          f"listen {r['listen_s']:.2f} s "
                          f"accept {r['accept_s']:.2f} s sessions {fmt(r['sessions_s'])} s "
                          f"drain {fmt(r['drain_s'])} s got {r['got']:,} (dup {r['dups']}, unique {r['unique']:,}"
                          f", missing e.g. {r['missing']}) "
                          f"present {r['present']}/{a.sessions} RSS {r['rss_before_mib']:.0f}/"
                          f"{r['rss_restored_mib']:.0f}/{r['rss_drained_mib']:.0f} MiB "
                          f"(load {os.getloadavg()[0]:.2f})", flush=True)
    finally:
        if redis:
            redis.stdin.close()
            redis.wait(30)
    print()
    print(f"{a.messages:,} QoS 1 messages of {a.size} B queued in {a.sessions} offline sessions; "
          "times from the restart's exec")
    print()
    print("| backend | shards | stop | store read (s) | accepting (s) | sessions present + first message (s) "
          "| all drained (s) | received (distinct) | RSS before stop / restored / drained (MiB) "
          "| store (MiB) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        stop = {"term": "SIGTERM", "kill": "kill -9", "none": "none (no restart)"}[r["stop"]]
        print(f"| {r['backend']} | {r['shards']} | {stop} | {fmt(r.get('opened_s'))} "
              f"| {r['accept_s']:.2f} | {fmt(r['sessions_s'])} | {fmt(r['drain_s'])} "
              f"| {r['unique']:,} | {r['rss_before_mib']:.0f} / {r['rss_restored_mib']:.0f} / "
              f"{r['rss_drained_mib']:.0f} | {r['store_mib']:.0f} |")
    print(f"\n(work dir: {work}; load after: {os.getloadavg()[0]:.2f})")


if __name__ == "__main__":
    main()
