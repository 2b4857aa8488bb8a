"""A cluster of real ringmq processes on loopback (issue 13), for the cluster e2e tests.

Node i is named `ringmq@127.0.0.{i+1}`; its MQTT listener is on 127.0.0.{i+1}:<free port>, its
QUIC endpoint (`cluster.bind`) on 127.0.0.{i+1}:<free UDP port> (never 4370), its admin API on
127.0.0.1:<free port> with the harness's credentials (admin / public). The nodes share a cookie and
a cluster name; discovery is `static` (every node's QUIC address as seeds), `manual` (the test
joins) or `dns` (the test runs a DNS server: every node then has the same QUIC port, as A records
carry no port). `tls=True` gives every node a certificate from one `ringmq gen-certs` CA.

Start one `Cluster` per test module where the tests allow it (`module_cluster` below): three
processes and their convergence cost seconds each time.

    c = Cluster(tmp_dir, n=3).start()
    c.wait_running(3)              # every node lists 3 running members (GET /api/v5/nodes)
    c.nodes[1].kill()              # kill -9
    c.wait_status(c.nodes[1].node_name, "stopped", among=[c.nodes[0], c.nodes[2]])
    c.nodes[1].restart()
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from conftest import (RINGMQ_BIN, Broker, MqttClient, RawClient, V5, _ports_given, deep_merge,
                      free_port, make_uid, to_toml)
from test_redirection import api

COOKIE = "e2e-cluster-cookie"
CLUSTER_NAME = "e2ecl"
JOIN_TIMEOUT = 20.0


def free_udp_port(*hosts: str) -> int:
    """A UDP port free on every one of `hosts`, never 4370 or 1883, never given before in this run."""
    while True:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((hosts[0], 0))
        port = s.getsockname()[1]
        s.close()
        if port in (4370, 1883) or port in _ports_given:
            continue
        ok = True
        for host in hosts[1:]:
            t = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                t.bind((host, port))
            except OSError:
                ok = False
            finally:
                t.close()
        if ok:
            _ports_given.add(port)
            return port


def node_name(i: int) -> str:
    return f"ringmq@127.0.0.{i + 1}"


class ClusterNode(Broker):
    """One node: a Broker whose MQTT host is 127.0.0.{i+1}."""

    def __init__(self, workdir: Path, index: int, config: dict, log_level: str = "info"):
        self.index = index
        self.node_name = node_name(index)
        host = f"127.0.0.{index + 1}"
        port = free_port()
        super().__init__(workdir, config=config, log_level=log_level, shards=2, port=port,
                         name=f"node{index}")
        self.host = host
        self.quic_addr = self.config["cluster"]["bind"]

    # -- clients on this node's address
    def client(self, client_id: str | None = None, version: int = 5, **kw) -> MqttClient:
        c = MqttClient(self.listen_port, make_uid("c") if client_id is None else client_id,
                       version=version, connect=False, host=self.host,
                       **{k: v for k, v in kw.items() if k not in ("connect", "expect_rc")})
        self.clients.append(c)
        if kw.get("connect", True):
            c.connect(expect_rc=kw.get("expect_rc", 0))
        return c

    def raw(self, version: int = V5, connect: str | None = None, **kw) -> RawClient:
        timeout = kw.pop("timeout", 5.0)
        r = RawClient(self.listen_port, host=self.host, version=version, timeout=timeout)
        self.clients.append(r)
        if connect is not None:
            r.connect(connect, **kw)
        return r

    # -- process
    def kill(self) -> None:
        """kill -9, and wait for the process to be gone."""
        self.close_clients()
        self.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def restart(self, timeout: float = 20.0) -> "ClusterNode":
        """Start the process again (same config, data_dir and log file) and wait until it listens."""
        if self.alive:
            self.stop()
        self._log_file.close()
        self.stopped = False
        self.start(timeout)
        return self

    def log_since(self, mark: int) -> str:
        return self.log()[mark:]

    # -- admin API
    def api(self, method: str, path: str, body=None, timeout: float = 5):
        return api(self, method, path, body, timeout=timeout)

    def nodes(self) -> list[dict]:
        code, body, _ = api(self, "GET", "/api/v5/nodes")
        assert code == 200, body
        return body

    def statuses(self) -> dict[str, str]:
        """node name -> node_status, as this node lists the cluster."""
        return {n["node"]: n["node_status"] for n in self.nodes()}

    def ctl(self, *args: str) -> subprocess.CompletedProcess:
        """`ringmq ctl --config <this node's file> ARGS`."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
        return subprocess.run([str(RINGMQ_BIN), "ctl", "--config", str(self.config_path), *args],
                              capture_output=True, text=True, timeout=30, env=env)


class Cluster:
    def __init__(self, workdir: Path, n: int = 3, strategy: str = "static", tls: bool = False,
                 cookie: str = COOKIE, cluster_name: str = CLUSTER_NAME,
                 dns_nameserver: str | None = None, dns_name: str = "nodes.ringmq.test",
                 extra: dict | None = None, per_node: dict[int, dict] | None = None,
                 log_level: str = "info"):
        """extra: config merged into every node's; per_node: {index: config} merged after it."""
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.strategy = strategy
        hosts = [f"127.0.0.{i + 1}" for i in range(n)]
        if strategy == "dns":
            shared = free_udp_port(*hosts)
            udp_ports = [shared] * n
        else:
            udp_ports = [free_udp_port(h) for h in hosts]
        self.quic_addrs = [f"{h}:{p}" for h, p in zip(hosts, udp_ports)]
        pki = None
        if tls:
            pki = self.workdir / "pki"
            p = subprocess.run([str(RINGMQ_BIN), "gen-certs", str(pki), "--nodes",
                                ",".join(node_name(i) for i in range(n))],
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 0, p.stderr
        self.pki = pki
        self.nodes: list[ClusterNode] = []
        for i in range(n):
            cluster: dict = {"name": cluster_name, "discovery_strategy": strategy,
                             "bind": self.quic_addrs[i]}
            if strategy == "static":
                cluster["static"] = {"seeds": list(self.quic_addrs)}
            if strategy == "dns":
                cluster["dns"] = {"name": dns_name, "nameserver": dns_nameserver or ""}
            if pki is not None:
                cluster["ssl_options"] = {"certfile": str(pki / f"{node_name(i)}.pem"),
                                          "keyfile": str(pki / f"{node_name(i)}.key"),
                                          "cacertfile": str(pki / "ca.pem")}
            config = {"node": {"name": node_name(i), "cookie": cookie}, "cluster": cluster}
            config = deep_merge(deep_merge(config, extra), (per_node or {}).get(i))
            # The MQTT listener on this node's own loopback address.
            node = ClusterNode(self.workdir / f"node{i}", i, config, log_level=log_level)
            node.config["listeners"]["tcp"]["default"]["bind"] = f"{node.host}:{node.port}"
            node.config_path.write_text(to_toml(node.config))
            self.nodes.append(node)

    def start(self, timeout: float = 20.0) -> "Cluster":
        for node in self.nodes:
            node.spawn()
        for node in self.nodes:
            try:
                node.wait_ready(timeout)
            except BaseException:
                self.stop()
                raise
        return self

    def stop(self) -> None:
        for node in self.nodes:
            node.close_clients()
            node.stop(timeout=5)

    def running(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.alive]

    def wait_running(self, count: int | None = None, nodes: list[ClusterNode] | None = None,
                     timeout: float = JOIN_TIMEOUT) -> None:
        """Until each of `nodes` (default: every live node) lists `count` (default: all of
        `nodes`) members running."""
        nodes = nodes if nodes is not None else self.running()
        count = count if count is not None else len(nodes)
        deadline = time.monotonic() + timeout
        while True:
            seen = {}
            for node in nodes:
                try:
                    seen[node.node_name] = node.statuses()
                except (AssertionError, OSError) as e:
                    seen[node.node_name] = repr(e)
            if all(isinstance(s, dict) and sum(v == "running" for v in s.values()) == count
                   for s in seen.values()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"not {count} running members on every node after {timeout}s: "
                                     f"{seen}\n" + "\n".join(f"--- {n.name}\n{n.tail(25)}" for n in nodes))
            time.sleep(0.1)

    def wait_status(self, name: str, status: str, among: list[ClusterNode],
                    timeout: float = JOIN_TIMEOUT) -> float:
        """Until every node in `among` lists `name` with `status` (or, for "stopped", not at
        all); returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            seen = {n.node_name: n.statuses().get(name) for n in among}
            if all(s == status or (status == "stopped" and s is None) for s in seen.values()):
                return time.monotonic() - start
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not {status} on every node after {timeout}s: {seen}")
            time.sleep(0.1)
