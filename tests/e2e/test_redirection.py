"""Server redirection (issue 4): node-wide connection cap decided inside each shard,
MQTT 5 CONNACK 0x9C with Server Reference, v3.1.1 return code 3, slot reuse,
strategies, env overlay, live reconfiguration over the admin API.

Real clients: paho-mqtt where it shows the reason code and properties, raw sockets
(tests/e2e/mqttraw.py) to see exactly what is on the wire and when the socket closes.
"""
from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request

import pytest

from conftest import make_uid
from mqttraw import CONNACK, V311, V5, RawClient

pytestmark = [pytest.mark.timeout(90), pytest.mark.ringmq_only("server redirection")]

USE_ANOTHER_SERVER = 0x9C
QUOTA_EXCEEDED = 0x97
V3_SERVER_UNAVAILABLE = 3

SERVERS = [
    {"host": "server1.example.com", "port": 1883, "description": "Primary backup"},
    {"host": "10.0.0.2", "port": 1884},
    {"host": "fd00::2", "port": 1885},
]
REFERENCES = ["server1.example.com:1883", "10.0.0.2:1884", "[fd00::2]:1885"]


def redirection(max_connections: int, strategy: str = "round_robin", servers=None, enable=True) -> dict:
    return {"server_redirection": {
        "enable": enable,
        "redirect_strategy": strategy,
        "max_connections": max_connections,
        "redirect_servers": SERVERS if servers is None else servers,
    }}


# ---------------------------------------------------------------- admin API helpers

def api(
    broker,
    method: str,
    path: str,
    body=None,
    auth=("admin", "public"),
    raw: bytes | None = None,
    timeout: float = 5,
):
    """(status, parsed JSON or None, headers) of one admin API request."""
    data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
    req = urllib.request.Request(f"http://127.0.0.1:{broker.api_port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        req.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            text = resp.read()
            return resp.status, (json.loads(text) if text else None), resp.headers
    except urllib.error.HTTPError as e:
        text = e.read()
        return e.code, (json.loads(text) if text else None), e.headers


def status(broker) -> dict:
    code, body, _ = api(broker, "GET", "/api/v5/status")
    assert code == 200, body
    return body


def wait_connections(broker, want: int, timeout: float = 5.0) -> dict:
    """The status once the node holds `want` connections (disconnects are asynchronous)."""
    deadline = time.monotonic() + timeout
    while True:
        s = status(broker)
        if s["connections"] == want:
            return s
        assert time.monotonic() < deadline, f"node holds {s['connections']} connections, wanted {want}: {s}"
        time.sleep(0.05)


# ---------------------------------------------------------------- MQTT helpers

def connect_raw(broker, version: int = V5, client_id: str | None = None):
    """(RawClient, CONNACK) for one new connection."""
    r = broker.raw(version=version)
    ack = r.connect(client_id or make_uid("c"), expect_rc=None)
    return r, ack


def expect_redirect(broker, version: int = V5) -> str:
    """Connect once, expect CONNACK 0x9C with a Server Reference and then a close; the reference."""
    r, ack = connect_raw(broker, version)
    assert ack.rc == USE_ANOTHER_SERVER, f"CONNACK 0x{ack.rc:02x}, expected 0x9C: {ack!r}"
    ref = ack.props.get("server_reference")
    assert ref, f"0x9C without Server Reference: {ack!r}"
    r.wait_closed(5)
    return ref


def hold(broker, n: int, version: int = V5) -> list[RawClient]:
    out = []
    for _ in range(n):
        r, ack = connect_raw(broker, version)
        assert ack.rc == 0, f"connection {len(out) + 1} of {n} refused below the cap: {ack!r}"
        out.append(r)
    return out


# ---------------------------------------------------------------- the cap

def test_exact_node_cap_across_two_shards(broker_factory):
    """Every client below the cap is accepted, whichever shard SO_REUSEPORT gave it; at the
    cap every further v5 client is redirected, on either shard."""
    cap = 40
    b = broker_factory(config=redirection(cap), shards=2, log_level="debug")
    held = hold(b, cap)
    s = wait_connections(b, cap)
    assert len(s["shards"]) == 2 and sum(x["connections"] for x in s["shards"]) == cap, s
    refs = [expect_redirect(b) for _ in range(12)]
    assert all(r in REFERENCES for r in refs), refs
    s = status(b)
    assert s["connections"] == cap, s
    redirected = sum(x["redirected"]["use_another_server"] for x in s["shards"])
    assert redirected == 12, s
    # Each shard that holds connections admitted them itself: together exactly the cap.
    assert sum(x["accepted"] for x in s["shards"]) == cap, s
    b.wait_log(r"client redirected", count=12)
    del held


def test_paho_v5_client_sees_use_another_server(broker_factory):
    b = broker_factory(config=redirection(1, servers=[{"host": "backup.example.net"}]))
    first = b.client(version=5)
    assert first.connack_rc == 0
    second = b.client(version=5, expect_rc=None)
    assert second.connack_rc == USE_ANOTHER_SERVER, second.connack
    # port defaults to 1883
    assert second.connack_props.get("server_reference") == "backup.example.net:1883", second.connack_props
    second.wait_disconnected(5)


def test_v311_client_gets_return_code_3_and_a_close(broker_factory):
    b = broker_factory(config=redirection(2))
    hold(b, 2, version=V311)
    r, ack = connect_raw(b, V311)
    assert ack.rc == V3_SERVER_UNAVAILABLE, ack
    r.wait_closed(5)
    paho = b.client(version=4, expect_rc=None)
    # paho 2 reports a 3.1.1 return code 3 as its ReasonCode "Server unavailable" (0x88);
    # the raw client above saw the 3 on the wire.
    assert paho.connack_rc in (V3_SERVER_UNAVAILABLE, 0x88), paho.connack
    s = status(b)
    assert sum(x["refused"]["server_unavailable"] for x in s["shards"]) == 2, s
    assert s["connections"] == 2, s


def test_mixed_protocols_share_the_node_cap(broker_factory):
    b = broker_factory(config=redirection(4))
    hold(b, 2, version=V311)
    hold(b, 2, version=V5)
    assert expect_redirect(b) in REFERENCES
    r, ack = connect_raw(b, V311)
    assert ack.rc == V3_SERVER_UNAVAILABLE


def test_freed_slot_is_reused(broker_factory):
    b = broker_factory(config=redirection(3))
    held = hold(b, 3)
    expect_redirect(b)
    held[0].disconnect()
    wait_connections(b, 2)
    again, ack = connect_raw(b)
    assert ack.rc == 0, ack
    expect_redirect(b)
    # An abrupt close frees its slot too.
    held[1].abort()
    wait_connections(b, 2)
    hold(b, 1)
    expect_redirect(b)


def test_below_the_cap_nothing_changes(broker_factory):
    b = broker_factory(config=redirection(1000))
    sub = b.raw(connect=make_uid("sub"))
    topic = make_uid("t")
    sub.subscribe(topic, qos=1)
    pub = b.raw(connect=make_uid("pub"))
    pub.publish(topic, b"x", qos=1)
    assert sub.expect_publish().payload == b"x"


# ---------------------------------------------------------------- strategies and format

def test_round_robin_follows_configured_order_node_wide(broker_factory):
    b = broker_factory(config=redirection(1, "round_robin"), shards=2)
    hold(b, 1)
    refs = [expect_redirect(b) for _ in range(9)]
    assert refs == REFERENCES * 3, refs


def test_random_picks_every_server_and_only_them(broker_factory):
    b = broker_factory(config=redirection(0, "random"), shards=2)
    refs = [expect_redirect(b) for _ in range(60)]
    assert set(refs) == set(REFERENCES), refs  # each missed with probability (2/3)^60


def test_server_reference_formats(broker_factory):
    servers = [
        {"host": "::1", "port": 2883},
        {"host": "[2001:db8::7]", "port": 8883},
        {"host": "192.0.2.10"},
        {"host": "mqtt.example.org", "port": 11883},
    ]
    b = broker_factory(config=redirection(0, "round_robin", servers))
    refs = [expect_redirect(b) for _ in range(4)]
    assert refs == ["[::1]:2883", "[2001:db8::7]:8883", "192.0.2.10:1883", "mqtt.example.org:11883"], refs
    # One reference per redirect (the picked server), so no space in it.
    assert all(" " not in r for r in refs)


# ---------------------------------------------------------------- disabled / listener cap

@pytest.mark.parametrize("enable", [False, True], ids=["disabled", "enabled-high-cap"])
def test_full_listener_refuses_v5_with_quota_exceeded(broker_factory, enable):
    config = {"listeners": {"tcp": {"default": {"max_connections": 2}}}}
    if enable:
        config.update(redirection(100))
    b = broker_factory(config=config)
    hold(b, 2)
    r, ack = connect_raw(b)
    if enable:
        # Redirection on: a full listener also sends the client elsewhere.
        assert ack.rc == USE_ANOTHER_SERVER and ack.props.get("server_reference") in REFERENCES, ack
    else:
        assert ack.rc == QUOTA_EXCEEDED, f"not 0x97 but 0x{ack.rc:02x}: {ack!r}"
    r.wait_closed(5)
    r3, ack3 = connect_raw(b, V311)
    assert ack3.rc == V3_SERVER_UNAVAILABLE


def test_disabled_redirection_admits_past_max_connections(broker_factory):
    b = broker_factory(config=redirection(2, enable=False))
    hold(b, 5)


# ---------------------------------------------------------------- environment

def test_env_overlay(broker_factory):
    file_cfg = redirection(100, "random", enable=False)
    env = {
        "RINGMQ_SERVER_REDIRECTION__ENABLE": "true",
        "RINGMQ_SERVER_REDIRECTION__MAX_CONNECTIONS": "2",
        "RINGMQ_SERVER_REDIRECTION__REDIRECT_STRATEGY": "round_robin",
    }
    b = broker_factory(config=file_cfg, env=env)
    code, cfg, _ = api(b, "GET", "/api/v5/config/server_redirection")
    assert code == 200
    assert (cfg["enable"], cfg["max_connections"], cfg["redirect_strategy"]) == (True, 2, "round_robin"), cfg
    hold(b, 2)
    assert [expect_redirect(b) for _ in range(3)] == REFERENCES


def test_env_overlay_servers_by_index(broker_factory):
    env = {
        "RINGMQ_SERVER_REDIRECTION__ENABLE": "true",
        "RINGMQ_SERVER_REDIRECTION__MAX_CONNECTIONS": "0",
        "RINGMQ_SERVER_REDIRECTION__REDIRECT_STRATEGY": "round_robin",
        "RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__0__HOST": "env-a.example",
        "RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__1__HOST": "::1",
        "RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__1__PORT": "1999",
    }
    b = broker_factory(env=env)
    assert [expect_redirect(b) for _ in range(2)] == ["env-a.example:1883", "[::1]:1999"]


# ---------------------------------------------------------------- bad config at start

@pytest.mark.parametrize("section,key", [
    ({"enable": True, "redirect_strategy": "least_loaded", "redirect_servers": SERVERS},
     "server_redirection.redirect_strategy"),
    ({"enable": True, "redirect_servers": [{"host": ""}]}, "server_redirection.redirect_servers[0].host"),
    ({"enable": True, "redirect_servers": [{"host": "a", "port": 0}]},
     "server_redirection.redirect_servers[0].port"),
    ({"enable": True, "redirect_servers": [{"host": "a"}, {"host": "b", "port": 65536}]},
     "server_redirection.redirect_servers[1].port"),
    ({"enable": True}, "server_redirection.redirect_servers"),
    ({"enable": True, "redirect_servers": [{"host": "a", "weight": 2}]},
     "server_redirection.redirect_servers[0].weight"),
    ({"max_connections": -1}, "server_redirection.max_connections"),
], ids=["strategy", "empty-host", "port-0", "port-65536", "enable-no-servers", "unknown-key", "negative-cap"])
def test_bad_config_stops_the_start(broker_factory, section, key):
    b = broker_factory(config={"server_redirection": section}, start=False)
    rc = b.wait_exit(10)
    assert rc != 0
    assert key in b.log(), f"{key} not named:\n{b.log()}"


@pytest.mark.parametrize("var,value,key", [
    ("RINGMQ_SERVER_REDIRECTION__REDIRECT_STRATEGY", "weighted", "server_redirection.redirect_strategy"),
    ("RINGMQ_SERVER_REDIRECTION__ENABLE", "true", "server_redirection.redirect_servers"),
    ("RINGMQ_SERVER_REDIRECTION__MAX_CONNECTIONS", "many", "server_redirection.max_connections"),
    ("RINGMQ_API__BIND", "localhost:1", "api.bind"),
])
def test_bad_env_stops_the_start(broker_factory, var, value, key):
    b = broker_factory(env={var: value}, start=False)
    assert b.wait_exit(10) != 0
    assert key in b.log() and var in b.log(), b.log()


# ---------------------------------------------------------------- load generator

def test_loadgen_follows_server_reference_to_another_broker(broker_factory, tmp_path):
    """ringmq-loadgen's conn scenario: clients past the cap are redirected to a second
    broker, reconnect there, and the report says how many went where."""
    from test_loadgen import loadgen
    target = broker_factory(shards=1)
    ref = f"127.0.0.1:{target.port}"
    source = broker_factory(config=redirection(5, servers=[{"host": "127.0.0.1", "port": target.port}]))
    r = loadgen(tmp_path, "conn", "-p", str(source.port), "-c", "12", "-V", "5", "-d", "1",
                "--client-id-prefix", make_uid("lg"))
    assert r["clients"]["ready"] == 12 and r["errors_total"] == 0, r
    red = r["redirects"]
    assert red["connections"] == 7 and red["by_target"] == {ref: 7}, red
    assert red["connected_by_server"] == {f"127.0.0.1:{source.port}": 5, ref: 7}, red
