"""A real HAProxy (Debian's `haproxy`) in front of cluster nodes, as the seed document and
docs/operations.md configure it: TCP round robin over the nodes' MQTT listeners, each node
health-checked on its admin API's `GET /api/v5/load_rebalance/availability_check` with
`option httpchk` (a donor or evacuating node answers 503 and leaves the rotation)."""
from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

from conftest import MqttClient, free_port

HAPROXY = shutil.which("haproxy") or "/usr/sbin/haproxy"


@contextlib.contextmanager
def haproxy_in_front(nodes, workdir: Path, maxconn: int = 2000):
    """Starts HAProxy on a free port in front of `nodes` (cluster.ClusterNode), checks its
    configuration, waits until an MQTT client gets through, yields the port, stops it."""
    port = free_port()
    servers = "\n".join(
        f"    server n{n.index} {n.host}:{n.listen_port} check addr 127.0.0.1 port {n.api_port} "
        f"inter 200ms fall 1 rise 1"
        for n in nodes)
    path = workdir / "haproxy.cfg"
    path.write_text(f"""
global
    maxconn {maxconn}
defaults
    mode tcp
    timeout connect 2s
    timeout client 120s
    timeout server 120s
frontend mqtt
    bind 127.0.0.1:{port}
    default_backend nodes
backend nodes
    balance roundrobin
    option httpchk GET /api/v5/load_rebalance/availability_check
    http-check expect status 200
{servers}
""")
    check = subprocess.run([HAPROXY, "-c", "-f", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    log = open(workdir / "haproxy.log", "wb")
    proc = subprocess.Popen([HAPROXY, "-db", "-f", str(path)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                MqttClient(port, "haproxy-probe", version=4).stop()
                break
            except (AssertionError, OSError):
                assert proc.poll() is None, (workdir / "haproxy.log").read_text()
                assert time.monotonic() < deadline, "HAProxy does not pass MQTT through"
                time.sleep(0.2)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
