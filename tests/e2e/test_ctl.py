"""`ringmq ctl` and the nodes API (issue 13, item 6): `ringmq ctl cluster status` against a
running node, its errors, and `GET /api/v5/nodes`, `/api/v5/nodes/{node}`, `/api/v5/cluster` as
EMQX 5 shapes them. One node here: the cluster's own members come from the cluster thread, which
these tests do not start (the membership operations answer 400 on a non-manual node)."""
from __future__ import annotations

import os
import subprocess
import time
import urllib.parse

import pytest

from conftest import RINGMQ_BIN
from test_redirection import api

pytestmark = [pytest.mark.timeout(60), pytest.mark.ringmq_only("ringmq ctl, nodes API")]

NODE = "test@127.0.0.1"  # conftest's node.name


def ctl(broker, *args: str, env: dict | None = None, config: bool = True) -> subprocess.CompletedProcess:
    """`ringmq ctl [--config the broker's file] ARGS`, with only the given RINGMQ_* variables
    (every RINGMQ_ variable is a config key, the harness's own included)."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
    clean.update(env or {})
    argv = [str(RINGMQ_BIN), "ctl", *(["--config", str(broker.config_path)] if config else []), *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=clean)


def table(out: str) -> dict[str, list[str]]:
    """`cluster status` rows by node name: [role, status, connections, uptime...]."""
    lines = out.strip().splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("NODE"))
    assert lines[header].split() == ["NODE", "ROLE", "STATUS", "CONNECTIONS", "UPTIME"], out
    return {cells[0]: cells[1:] for cells in (line.split() for line in lines[header + 1:])}


def wait_nodes_connections(broker, want: int, timeout: float = 5.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        code, nodes, _ = api(broker, "GET", "/api/v5/nodes")
        assert code == 200, nodes
        if nodes[0]["connections"] == want or time.monotonic() > deadline:
            return nodes
        time.sleep(0.05)


# ---------------------------------------------------------------- ringmq ctl

def test_status_lists_the_node_with_its_connections(broker):
    for i in range(3):
        broker.client(f"ctl-{i}")  # paho, connected
    wait_nodes_connections(broker, 3)
    p = ctl(broker, "cluster", "status")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Cluster ringmqcl: 1 node, 1 running (discovery: singleton)"), p.stdout
    rows = table(p.stdout)
    assert list(rows) == [NODE], p.stdout
    role, status, connections, *_uptime = rows[NODE]
    assert (role, status, connections) == ("core", "running", "3"), p.stdout

    broker.close_clients()
    wait_nodes_connections(broker, 0)
    p = ctl(broker, "cluster", "status")
    assert p.returncode == 0 and table(p.stdout)[NODE][2] == "0", p.stdout


def test_the_environment_overlay_gives_address_and_credentials(broker_factory):
    b = broker_factory(config={"api": {"username": "ops", "password": "s3cret"}})
    env = {"RINGMQ_API__BIND": f"127.0.0.1:{b.api_port}", "RINGMQ_API__USERNAME": "ops",
           "RINGMQ_API__PASSWORD": "s3cret"}
    p = ctl(b, "cluster", "status", env=env, config=False)
    assert p.returncode == 0, p.stderr
    assert NODE in table(p.stdout)


def test_config_given_before_ctl_is_used_too(broker):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
    p = subprocess.run([str(RINGMQ_BIN), "--config", str(broker.config_path), "ctl", "cluster", "status"],
                       capture_output=True, text=True, timeout=30, env=clean)
    assert p.returncode == 0, p.stderr
    assert NODE in table(p.stdout)


def test_a_bad_password_exits_1_with_the_servers_message(broker):
    p = ctl(broker, "cluster", "status", env={"RINGMQ_API__PASSWORD": "wrong"})
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stdout == ""
    assert "401 UNAUTHORIZED" in p.stderr and "api.username and api.password" in p.stderr, p.stderr


def test_a_node_that_is_not_running_exits_1_naming_the_address(broker):
    port = broker.api_port
    broker.stop()
    p = ctl(broker, "cluster", "status")
    assert p.returncode == 1
    assert f"cannot reach the admin API at 127.0.0.1:{port} (api.bind)" in p.stderr, p.stderr


def test_a_bad_configuration_exits_2_naming_the_key(broker):
    p = ctl(broker, "cluster", "status", env={"RINGMQ_API__BIND": "nowhere"})
    assert p.returncode == 2
    assert "configuration error" in p.stderr and "api.bind" in p.stderr, p.stderr
    p = ctl(broker, "cluster", "status", env={"RINGMQ_API__ENABLE": "false"})
    assert p.returncode == 2 and "api.enable = false" in p.stderr, p.stderr


@pytest.mark.parametrize("args", [["join", "127.0.0.1:4370"], ["leave"], ["force-leave", "b@127.0.0.2"]],
                         ids=["join", "leave", "force-leave"])
def test_membership_changes_need_the_manual_strategy(broker, args):
    p = ctl(broker, "cluster", *args)
    assert p.returncode == 1, p.stdout
    assert "400 BAD_REQUEST" in p.stderr, p.stderr
    assert 'cluster.discovery_strategy = "singleton"' in p.stderr and '"manual"' in p.stderr, p.stderr
    broker.check_alive()


def test_usage_errors_exit_2(broker):
    p = ctl(broker, "cluster", "join")
    assert p.returncode == 2 and "HOST:PORT" in p.stderr, p.stderr


# ---------------------------------------------------------------- the nodes API

NODE_FIELDS = {"node", "node_status", "role", "connections", "live_connections", "sessions",
               "version", "uptime", "max_fds", "memory_used", "load1", "load5", "load15"}


def test_nodes_is_an_array_of_emqx_shaped_nodes(broker):
    clients = [broker.client(f"n-{i}") for i in range(2)]
    nodes = wait_nodes_connections(broker, 2)
    assert isinstance(nodes, list) and len(nodes) == 1
    n = nodes[0]
    assert set(n) == NODE_FIELDS, n
    assert n["node"] == NODE and n["node_status"] == "running" and n["role"] == "core"
    assert n["connections"] == n["live_connections"] == 2
    assert n["sessions"] == 2
    assert isinstance(n["version"], str) and n["version"]
    assert isinstance(n["uptime"], int) and 0 < n["uptime"] < 600_000  # milliseconds
    assert isinstance(n["max_fds"], int) and n["max_fds"] > 0
    assert isinstance(n["memory_used"], str) and n["memory_used"][-1] in "KMG", n["memory_used"]
    assert all(isinstance(n[k], float) for k in ("load1", "load5", "load15"))

    # One session kept offline after its client left: a session, not a connection.
    clients[0].stop()
    kept = broker.client("n-kept", session_expiry=300, clean=False)
    kept.stop()
    nodes = wait_nodes_connections(broker, 1)
    assert nodes[0]["connections"] == 1 and nodes[0]["sessions"] == 2, nodes

    time.sleep(0.2)
    later = api(broker, "GET", "/api/v5/nodes")[1][0]
    assert later["uptime"] > n["uptime"]


def test_one_node_by_name_and_404_for_another(broker):
    broker.client("one")
    wait_nodes_connections(broker, 1)
    code, n, _ = api(broker, "GET", "/api/v5/nodes/" + urllib.parse.quote(NODE))
    assert code == 200 and set(n) == NODE_FIELDS and n["connections"] == 1, n
    for other in ["ringmq@127.0.0.2", "test%40127.0.0.1x"]:
        code, body, _ = api(broker, "GET", "/api/v5/nodes/" + other)
        assert code == 404, body
        assert body["code"] == "NOT_FOUND" and body["message"] == "Node not found", body


def test_nodes_and_cluster_need_credentials(broker):
    for path in ["/api/v5/nodes", "/api/v5/nodes/" + NODE, "/api/v5/cluster"]:
        code, body, _ = api(broker, "GET", path, auth=("admin", "wrong"))
        assert code == 401, (path, body)


def test_cluster_names_the_node(broker):
    code, body, _ = api(broker, "GET", "/api/v5/cluster")
    assert code == 200
    assert body == {"name": "ringmqcl", "self": NODE, "nodes": [NODE],
                    "discovery_strategy": "singleton"}


def test_join_body_and_strategy_are_checked_over_http(broker):
    code, body, _ = api(broker, "PUT", "/api/v5/cluster/join", body={"address": "127.0.0.1:4370"})
    assert code == 400 and body["field"] == "cluster.discovery_strategy", body
    code, body, _ = api(broker, "DELETE", "/api/v5/cluster/b@127.0.0.2/force_leave")
    assert code == 400, body


def test_a_second_node_on_other_ports_is_its_own(broker_factory):
    # Two independent nodes: each lists only itself (no cluster thread joins them).
    a = broker_factory()
    b = broker_factory(config={"node": {"name": "other@127.0.0.1"}})
    assert [n["node"] for n in api(a, "GET", "/api/v5/nodes")[1]] == [NODE]
    assert [n["node"] for n in api(b, "GET", "/api/v5/nodes")[1]] == ["other@127.0.0.1"]
