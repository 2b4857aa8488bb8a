#!/usr/bin/env python3
"""Small MQTT 3.1.1 load tools for measuring kernel knobs on loopback
(standard library only; see tuning/measure/run.sh and docs/tuning.md).

  mqtt_load.py storm HOST PORT N
      Opens N TCP connections as fast as possible (non-blocking connects, all
      in flight at once), sends CONNECT on each, waits for every CONNACK.
      Prints one JSON line: completed, failed, wall time, connect-to-CONNACK
      latency percentiles, and the namespace's TcpExtListenOverflows /
      ListenDrops deltas (/proc/net/netstat).

  mqtt_load.py throughput HOST PORT SECONDS PAYLOAD_BYTES
      One subscriber on `bench/t` (QoS 0) and one publisher (a forked child)
      sending QoS 0 PUBLISHes of PAYLOAD_BYTES back to back for SECONDS. Prints
      one JSON line: messages and bytes per second received by the subscriber,
      messages sent, and the share delivered (QoS 0 beyond a subscriber's
      queue is dropped by the broker).

Every loop is bounded by a deadline; both commands stop by themselves.
"""

import json
import os
import selectors
import socket
import sys
import time


def vbi(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s):
    b = s.encode()
    return len(b).to_bytes(2, "big") + b


def connect_packet(client_id, keepalive_s=60):
    body = mqtt_str("MQTT") + bytes([4, 0x02]) + keepalive_s.to_bytes(2, "big") + mqtt_str(client_id)
    return bytes([0x10]) + vbi(len(body)) + body


def subscribe_packet(topic, packet_id=1):
    body = packet_id.to_bytes(2, "big") + mqtt_str(topic) + bytes([0])
    return bytes([0x82]) + vbi(len(body)) + body


def publish_packet(topic, payload):
    body = mqtt_str(topic) + payload
    return bytes([0x30]) + vbi(len(body)) + body


def netstat():
    """TcpExt counters of this network namespace."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            return dict(zip(names.split()[1:], map(int, values.split()[1:])))
    return {}


def percentile(sorted_values, p):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(len(sorted_values) * p / 100))]


def storm(host, port, n, timeout_s=60.0):
    before = netstat()
    sel = selectors.DefaultSelector()
    started, latency_ms, failed = {}, [], 0
    t0 = time.monotonic()
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        err = s.connect_ex((host, port))
        if err not in (0, 115):  # EINPROGRESS
            failed += 1
            s.close()
            continue
        started[s] = time.monotonic()
        sel.register(s, selectors.EVENT_WRITE, [i, b""])
    deadline = t0 + timeout_s
    pending = len(started)
    while pending and time.monotonic() < deadline:
        for key, events in sel.select(timeout=0.5):
            s, state = key.fileobj, key.data
            if events & selectors.EVENT_WRITE:
                if s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    failed += 1
                    pending -= 1
                    sel.unregister(s)
                    s.close()
                    continue
                s.send(connect_packet(f"storm-{os.getpid()}-{state[0]}"))
                sel.modify(s, selectors.EVENT_READ, state)
                continue
            try:
                data = s.recv(16)
            except OSError:
                data = b""
            if not data:
                failed += 1
                pending -= 1
                sel.unregister(s)
                s.close()
                continue
            state[1] += data
            if len(state[1]) >= 4:
                ok = state[1][:4] == b"\x20\x02\x00\x00"
                if ok:
                    latency_ms.append((time.monotonic() - started[s]) * 1000)
                else:
                    failed += 1
                pending -= 1
                sel.unregister(s)
    wall_s = time.monotonic() - t0
    after = netstat()
    for s in started:
        s.close()
    latency_ms.sort()
    return {
        "connections": n,
        "completed": len(latency_ms),
        "failed": failed,
        "timed_out": pending,
        "wall_s": round(wall_s, 3),
        "latency_ms_p50": round(percentile(latency_ms, 50), 1) if latency_ms else None,
        "latency_ms_p90": round(percentile(latency_ms, 90), 1) if latency_ms else None,
        "latency_ms_p99": round(percentile(latency_ms, 99), 1) if latency_ms else None,
        "latency_ms_max": round(latency_ms[-1], 1) if latency_ms else None,
        "over_1s": sum(x > 1000 for x in latency_ms),
        "listen_overflows": after.get("ListenOverflows", 0) - before.get("ListenOverflows", 0),
        "listen_drops": after.get("ListenDrops", 0) - before.get("ListenDrops", 0),
    }


def read_exact_packet(sock, timeout_s=5.0):
    sock.settimeout(timeout_s)
    buf = b""
    while len(buf) < 2:
        buf += sock.recv(64)
    return buf


def throughput(host, port, seconds, payload_bytes):
    """The publisher runs in a forked child so the subscriber's reads and the
    publisher's writes get a CPU share each, as two clients would."""
    sub = socket.create_connection((host, port))
    sub.sendall(connect_packet(f"tp-sub-{os.getpid()}"))
    read_exact_packet(sub)  # CONNACK
    sub.sendall(subscribe_packet("bench/t"))
    read_exact_packet(sub)  # SUBACK
    one = publish_packet("bench/t", b"\x5a" * payload_bytes)
    ready_r, ready_w = os.pipe()
    sent_r, sent_w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(ready_r)
        os.close(sent_r)
        pub = socket.create_connection((host, port))
        pub.sendall(connect_packet(f"tp-pub-{os.getpid()}"))
        read_exact_packet(pub)
        pub.settimeout(1.0)
        chunk = one * max(1, 65536 // len(one))
        per_chunk = len(chunk) // len(one)
        os.write(ready_w, b"1")
        sent = 0
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            try:
                pub.sendall(chunk)
            except socket.timeout:
                break
            sent += per_chunk
        os.write(sent_w, str(sent).encode())
        os._exit(0)
    os.close(ready_w)
    os.close(sent_w)
    os.read(ready_r, 1)
    sub.settimeout(0.5)
    recv_bytes = 0
    t0 = time.monotonic()
    deadline = t0 + seconds
    while time.monotonic() < deadline:
        try:
            data = sub.recv(1 << 20)
        except socket.timeout:
            continue
        if not data:
            break
        recv_bytes += len(data)
    elapsed = time.monotonic() - t0
    sub.close()
    os.waitpid(child, 0)
    sent_msgs = int(os.read(sent_r, 32) or b"0")
    recv_msgs = recv_bytes // len(one)
    return {
        "seconds": round(elapsed, 2),
        "payload_bytes": payload_bytes,
        "sent_msgs_per_s": round(sent_msgs / elapsed),
        "recv_msgs_per_s": round(recv_msgs / elapsed),
        "recv_mib_per_s": round(recv_bytes / elapsed / (1 << 20), 1),
        "delivered_pct": round(100 * recv_msgs / sent_msgs, 1) if sent_msgs else None,
    }


def main():
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "storm" and len(sys.argv) == 5:
        result = storm(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif cmd == "throughput" and len(sys.argv) == 6:
        result = throughput(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
