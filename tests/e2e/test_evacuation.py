"""Node evacuation on one node (issue 14, items 1, 3, 4 and 5): refusing new clients with
0x9D + the `redirect_to` Server Reference (v5), 0x9C without one, return code 3 (v3.1.1);
disconnecting the connected clients gradually at `conn_evict_rate`; `availability_check`
for load balancers; EMQX's status shapes; a restart resuming it; `stop`; bad parameters
answered 400 naming the field; and the `ringmq ctl rebalance` forms. Sessions moving to other
nodes need a cluster (test_cluster_evacuation.py)."""
from __future__ import annotations

import time

import pytest

from mqttraw import V5, V311
from test_ctl import ctl
from test_redirection import api

pytestmark = [pytest.mark.timeout(90), pytest.mark.ringmq_only("node evacuation")]

NODE = "test@127.0.0.1"  # conftest's node.name
SERVER_MOVED, USE_ANOTHER_SERVER, RC3_SERVER_UNAVAILABLE = 0x9D, 0x9C, 3
BASE = f"/api/v5/load_rebalance/{NODE}"


def start(broker, body: dict, prefix: str = "/api/v5") -> None:
    code, answer, _ = api(broker, "POST", f"{prefix}/load_rebalance/{NODE}/evacuation/start", body)
    assert code == 200, answer


def stop(broker) -> None:
    code, answer, _ = api(broker, "POST", f"{BASE}/evacuation/stop")
    assert code == 200, answer


def status(broker) -> dict:
    code, body, _ = api(broker, "GET", "/api/v5/load_rebalance/status")
    assert code == 200, body
    return body


def availability(broker) -> int:
    # No credentials: load balancers' health checks carry none.
    code, _, _ = api(broker, "GET", "/api/v5/load_rebalance/availability_check", auth=None)
    return code


def wait_state(broker, want: str, timeout: float = 10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        s = status(broker)
        if s.get("state") == want:
            return s
        if time.monotonic() > deadline:
            raise AssertionError(f"evacuation state {s.get('state')!r}, want {want!r}: {s}")
        time.sleep(0.05)


def test_evacuation_refuses_new_clients_and_evicts_the_connected_ones_at_its_rate(broker):
    # 20 raw v5 clients with sessions (to read each DISCONNECT), and paho clients of both
    # versions with persistent sessions.
    raws = [broker.raw(V5, connect=f"ev-raw-{i}", clean=False, props={"session_expiry_interval": 300})
            for i in range(20)]
    p5 = broker.client("ev-paho5", version=5, clean=False, session_expiry=300)
    p3 = broker.client("ev-paho3", version=4, clean=False)
    p3.subscribe("ev/t", qos=1)
    assert availability(broker) == 200
    assert status(broker) == {"status": "disabled"}

    start(broker, {"redirect_to": "127.0.0.2:1999 [::1]:2000", "conn_evict_rate": 10,
                   "wait_health_check": 0, "wait_takeover": 1})
    began = time.monotonic()
    assert availability(broker) == 503
    s = status(broker)
    assert (s["status"], s["process"], s["state"]) == ("enabled", "evacuation", "evicting_conns"), s
    assert (s["connection_eviction_rate"], s["session_eviction_rate"]) == (10, 500), s
    assert s["stats"]["initial_connected"] == 22 and s["stats"]["initial_sessions"] == 22, s

    # New clients: 0x9D with the operator's references (v5), return code 3 (v3.1.1).
    c = broker.raw(V5)
    ack = c.connect("ev-new5", expect_rc=SERVER_MOVED)
    assert ack.props.get("server_reference") == "127.0.0.2:1999 [::1]:2000", ack
    c.expect_disconnect()
    c3 = broker.raw(V311)
    c3.connect("ev-new3", expect_rc=RC3_SERVER_UNAVAILABLE)
    c3.expect_disconnect()

    # The connected ones: DISCONNECT 0x9D with the references, at about 10 per second; the
    # list rotates from one client to the next, so clients following its first entry spread.
    closed_at, firsts = [], []
    both = ("127.0.0.2:1999 [::1]:2000", "[::1]:2000 127.0.0.2:1999")
    for r in raws:
        d = r.expect_disconnect(SERVER_MOVED, timeout=20)
        assert d.props.get("server_reference") in both, d
        firsts.append(d.props["server_reference"].split()[0])
        closed_at.append(time.monotonic())
    assert 5 <= firsts.count("127.0.0.2:1999") <= 15, firsts
    assert p5.wait_disconnected(20) == SERVER_MOVED
    assert p5.disconnect_props.get("server_reference") in both
    p3.wait_disconnected(20)
    # 22 clients at 10 per second cannot all go within the first second (a lower bound:
    # a slow machine only makes it longer).
    assert max(closed_at) - began > 1.0, closed_at

    # Then: wait_takeover (1 s), no node to move the 22 sessions to, prohibiting.
    s = wait_state(broker, "prohibiting")
    assert s["stats"]["current_connected"] == 0, s
    assert s["stats"]["current_sessions"] == 22 and s["stats"]["current_disconnected_sessions"] == 22, s
    code, glob, _ = api(broker, "GET", "/api/v5/load_rebalance/global_status")
    assert code == 200 and glob["rebalances"] == [], glob
    assert [e["node"] for e in glob["evacuations"]] == [NODE], glob
    assert glob["evacuations"][0]["state"] == "prohibiting", glob
    broker.raw(V5).connect("ev-late", expect_rc=SERVER_MOVED)

    # Stopped: available again, and the sessions were kept.
    stop(broker)
    assert availability(broker) == 200
    assert status(broker) == {"status": "disabled"}
    again = broker.raw(V5, connect="ev-raw-0", clean=False, props={"session_expiry_interval": 300})
    assert again.connack.session_present, "the session stayed on the node"
    p3b = broker.client("ev-paho3", version=4, clean=False)
    assert p3b.session_present


def test_health_check_wait_still_accepts_then_0x9c_without_redirect_to(broker):
    start(broker, {"wait_health_check": 2, "wait_takeover": 0})
    # Unavailable to load balancers at once, but clients are still taken meanwhile.
    assert availability(broker) == 503
    assert status(broker)["state"] == "wait_health_check"
    held = broker.raw(V5, connect="hc-early")
    wait_state(broker, "evicting_conns", timeout=10)
    # No redirect_to: 0x9C with no Server Reference.
    d = held.expect_disconnect(USE_ANOTHER_SERVER, timeout=10)
    assert "server_reference" not in d.props, d
    ack = broker.raw(V5).connect("hc-late", expect_rc=USE_ANOTHER_SERVER)
    assert "server_reference" not in ack.props, ack
    stop(broker)
    broker.raw(V5, connect="hc-after")


def test_a_restarted_node_resumes_its_evacuation(broker):
    start(broker, {"wait_health_check": 0, "wait_takeover": 0, "redirect_to": "127.0.0.9:1883"})
    wait_state(broker, "prohibiting")
    broker.stop()
    broker.stopped = False
    broker.start()
    # From the first CONNECT on.
    broker.raw(V5).connect("rs-1", expect_rc=SERVER_MOVED)
    assert availability(broker) == 503
    s = status(broker)
    assert s["process"] == "evacuation" and s["redirect_to"] == "127.0.0.9:1883", s
    stop(broker)
    broker.stop()
    broker.stopped = False
    broker.start()
    assert availability(broker) == 200
    broker.raw(V5, connect="rs-2")


@pytest.mark.parametrize("body, field", [
    ({"conn_evict_rate": 0}, "conn_evict_rate"),
    ({"sess_evict_rate": -5}, "sess_evict_rate"),
    ({"wait_takeover": "soon"}, "wait_takeover"),
    ({"redirect_to": "no-port"}, "redirect_to"),
    ({"migrate_to": ["nobody@127.0.0.9"]}, "migrate_to"),
    ({"speed": 3}, "speed"),
])
def test_bad_parameters_are_refused_naming_the_field(broker, body, field):
    code, answer, _ = api(broker, "POST", f"{BASE}/evacuation/start", body)
    assert code == 400, answer
    assert answer["code"] == "BAD_REQUEST" and answer["field"] == field, answer
    assert field in answer["message"], answer
    assert status(broker) == {"status": "disabled"}


def test_unknown_node_second_start_and_stop_without_one_get_400(broker):
    code, answer, _ = api(broker, "POST", "/api/v5/load_rebalance/nobody@127.0.0.9/evacuation/start", {})
    assert code == 400 and "not running" in answer["message"], answer
    code, answer, _ = api(broker, "POST", f"{BASE}/evacuation/stop")
    assert code == 400 and "no evacuation" in answer["message"], answer
    # The v4 paths answer the same.
    start(broker, {"wait_health_check": 0}, prefix="/api/v4")
    code, answer, _ = api(broker, "POST", f"{BASE}/evacuation/start", {})
    assert code == 400 and "already running" in answer["message"], answer
    code, body, _ = api(broker, "GET", "/api/v4/load_rebalance/status")
    assert code == 200 and body["process"] == "evacuation", body
    code, _, _ = api(broker, "GET", "/api/v4/load_rebalance/availability_check", auth=None)
    assert code == 503
    # The rest of the API needs the credentials.
    code, _, _ = api(broker, "GET", "/api/v5/load_rebalance/status", auth=None)
    assert code == 401
    code, _, _ = api(broker, "POST", f"/api/v4/load_rebalance/{NODE}/evacuation/stop")
    assert code == 200
    assert availability(broker) == 200


def test_ctl_rebalance_start_node_status_and_stop(broker):
    raws = [broker.raw(V5, connect=f"ctl-ev-{i}") for i in range(3)]
    p = ctl(broker, "rebalance", "node-status")
    assert p.returncode == 0 and p.stdout == "Rebalance status: disabled\n", (p.stdout, p.stderr)
    p = ctl(broker, "rebalance", "start", "--evacuation", "--redirect-to", "127.0.0.2:1883 127.0.0.3:1883",
            "--conn-evict-rate", "100", "--wait-takeover", "30", "--sess-evict-rate", "50",
            "--wait-health-check", "0")
    assert p.returncode == 0, p.stderr
    for r in raws:
        r.expect_disconnect(SERVER_MOVED, timeout=10)
    deadline = time.monotonic() + 10
    while True:
        p = ctl(broker, "rebalance", "node-status")
        assert p.returncode == 0, p.stderr
        if "Rebalance state: wait_takeover" in p.stdout or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    lines = p.stdout.splitlines()
    assert lines[0] == "Rebalance type: evacuation", p.stdout
    assert "Rebalance state: wait_takeover" in lines, p.stdout
    assert "Connection eviction rate: 100 connections/second" in lines, p.stdout
    assert "Session eviction rate: 50 sessions/second" in lines, p.stdout
    assert "Channel statistics:" in lines and "  current_connected: 0" in lines, p.stdout
    assert "  initial_connected: 3" in lines, p.stdout
    # A second start is refused with the API's message; exit status 1.
    p = ctl(broker, "rebalance", "start", "--evacuation")
    assert p.returncode == 1 and "already running" in p.stderr, p.stderr
    p = ctl(broker, "rebalance", "stop")
    assert p.returncode == 0 and "evacuation stopped" in p.stdout, (p.stdout, p.stderr)
    p = ctl(broker, "rebalance", "start", "--evacuation", "--conn-evict-rate", "0")
    assert p.returncode == 1 and "conn_evict_rate" in p.stderr, p.stderr
    # Evacuation-only options need --evacuation (clap refuses: exit 2).
    p = ctl(broker, "rebalance", "start", "--redirect-to", "127.0.0.2:1883")
    assert p.returncode == 2, p.stderr
