"""ringmq-loadgen `--reconnect` (issue 14, item 7): clients the server disconnects come back, to
the Server Reference when one is given (MQTT 5) or to `--reconnect-addr` (MQTT 3.1.1, whose
evicted connection is just closed), with their client ids, and the report says how many times
each client was disconnected. Two independent brokers: A is evacuated, B takes the clients."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from test_ctl import wait_nodes_connections
from test_loadgen import LOADGEN_BIN
from test_redirection import api

pytestmark = [pytest.mark.timeout(120), pytest.mark.ringmq_only("evacuation, admin API")]


@pytest.mark.parametrize("version", [5, 4])
def test_evicted_clients_reconnect_once_each_and_are_counted(broker_factory, tmp_path, version):
    a = broker_factory()
    b = broker_factory(config={"node": {"name": "other@127.0.0.1"}})
    at_a, at_b = f"127.0.0.1:{a.listen_port}", f"127.0.0.1:{b.listen_port}"
    report = tmp_path / "conn.json"
    argv = [str(LOADGEN_BIN), "conn", "-c", "12", "-d", "60s", "-V", str(version),
            "--client-id-prefix", f"rc{os.getpid()}v{version}", "--clean-start", "false",
            "--session-expiry", "300", "--pub-addrs", at_a, "--reconnect", "--quiet",
            "--json", str(report)]
    if version == 4:
        argv += ["--reconnect-addr", at_b]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_nodes_connections(a, 12, timeout=15)
        body = {"conn_evict_rate": 20, "wait_health_check": 0, "wait_takeover": 60}
        if version == 5:
            body["redirect_to"] = at_b
        code, answer, _ = api(a, "POST", "/api/v5/load_rebalance/test@127.0.0.1/evacuation/start", body)
        assert code == 200, answer
        # Every client moves to B, once.
        wait_nodes_connections(b, 12, timeout=20)
        wait_nodes_connections(a, 0, timeout=5)
    finally:
        p.send_signal(2)  # SIGINT: the run reports what it had
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    r = json.loads(report.read_text())
    ev = r["evictions"]
    assert (ev["clients"], ev["clients_more_than_once"], ev["max_per_client"]) == (12, 0, 1), ev
    assert ev["by_count"] == {"1": 12}, ev
    assert r["redirects"]["connected_by_server"] == {at_a: 12, at_b: 12}, r["redirects"]
    assert r["errors_total"] == 0, r["errors"]


@pytest.mark.parametrize("version", [5, 4])
def test_a_refused_reconnect_is_tried_again_after_a_backoff(broker_factory, tmp_path, version):
    """The clients come back to the evacuating node itself (no Server Reference, `--reconnect-addr`
    names it): it refuses them (MQTT 5: CONNACK 0x9C, 3.1.1: return code 3) until the evacuation
    stops; they keep trying, as real clients do, and are all back once it stops. Without the
    retries each refused client would end as an error."""
    a = broker_factory()
    at_a = f"127.0.0.1:{a.listen_port}"
    report = tmp_path / "retry.json"
    argv = [str(LOADGEN_BIN), "conn", "-c", "12", "-d", "60s", "-V", str(version),
            "--client-id-prefix", f"rr{os.getpid()}v{version}", "--clean-start", "false",
            "--session-expiry", "300", "--pub-addrs", at_a, "--reconnect",
            "--reconnect-addr", at_a, "--quiet", "--json", str(report)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_nodes_connections(a, 12, timeout=15)
        body = {"conn_evict_rate": 50, "wait_health_check": 0, "wait_takeover": 60}
        code, answer, _ = api(a, "POST", "/api/v5/load_rebalance/test@127.0.0.1/evacuation/start", body)
        assert code == 200, answer
        assert wait_nodes_connections(a, 0, timeout=10)[0]["connections"] == 0
        # Refused for a while: nobody gets in.
        code, status, _ = api(a, "GET", "/api/v5/load_rebalance/status")
        assert code == 200 and status["process"] == "evacuation", status
        code, answer, _ = api(a, "POST", "/api/v5/load_rebalance/test@127.0.0.1/evacuation/stop")
        assert code == 200, answer
        assert wait_nodes_connections(a, 12, timeout=20)[0]["connections"] == 12
    finally:
        p.send_signal(2)
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    r = json.loads(report.read_text())
    ev = r["evictions"]
    assert (ev["clients"], ev["max_per_client"]) == (12, 1), ev
    assert sum(ev["refused_reconnects_retried"].values()) >= 12, ev
    assert r["errors_total"] == 0, r["errors"]
