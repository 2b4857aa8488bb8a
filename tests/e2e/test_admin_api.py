"""The admin HTTP API (issue 4): basic auth, live `server_redirection` config (GET / PUT,
validated like the file, applied to every shard without a restart), `/api/v5/status`."""
from __future__ import annotations

import socket

import pytest

from conftest import free_port, make_uid
from mqttraw import V5
from test_redirection import (REFERENCES, SERVERS, USE_ANOTHER_SERVER, api, connect_raw,
                              expect_redirect, hold, redirection, status, wait_connections)

pytestmark = [pytest.mark.timeout(60), pytest.mark.ringmq_only("admin API")]

PATH = "/api/v5/config/server_redirection"


# ---------------------------------------------------------------- auth

@pytest.mark.parametrize("auth", [None, ("admin", "wrong"), ("root", "public")],
                         ids=["none", "bad-password", "bad-user"])
@pytest.mark.parametrize("method,path", [("GET", PATH), ("PUT", PATH), ("GET", "/api/v5/status")])
def test_401_without_credentials(broker, auth, method, path):
    code, body, headers = api(broker, method, path, body={"enable": False} if method == "PUT" else None,
                              auth=auth)
    assert code == 401, body
    assert headers.get("WWW-Authenticate", "").startswith("Basic"), dict(headers)
    assert body["code"] == "UNAUTHORIZED"


def test_default_credentials_warn_at_start(broker):
    broker.wait_log(r"WARN.*default credentials")


def test_configured_credentials(broker_factory):
    b = broker_factory(config={"api": {"username": "ops", "password": "s3cret:x"}})
    assert api(b, "GET", PATH)[0] == 401
    assert api(b, "GET", PATH, auth=("ops", "s3cret:x"))[0] == 200
    assert "default credentials" not in b.log()


# ---------------------------------------------------------------- GET / PUT

def test_get_returns_the_live_config(broker_factory):
    b = broker_factory(config=redirection(7, "random"))
    code, body, headers = api(b, "GET", PATH)
    assert code == 200 and headers.get("Content-Type", "").startswith("application/json")
    assert body == {
        "enable": True,
        "redirect_strategy": "random",
        "max_connections": 7,
        "redirect_servers": SERVERS,
    }


def test_defaults(broker):
    code, body, _ = api(broker, "GET", PATH)
    assert code == 200
    assert body == {"enable": False, "redirect_strategy": "random", "max_connections": 1000,
                    "redirect_servers": []}


def test_put_applies_to_every_shard_without_restart(broker_factory):
    b = broker_factory(shards=2)
    pid = b.proc.pid
    held = hold(b, 6)
    code, body, _ = api(b, "PUT", PATH, {
        "enable": True, "max_connections": 6, "redirect_strategy": "round_robin",
        "redirect_servers": SERVERS})
    assert code == 200, body
    assert body["enable"] is True and body["max_connections"] == 6
    # Several attempts land on both shards (SO_REUSEPORT): all redirected, in order.
    assert [expect_redirect(b) for _ in range(6)] == REFERENCES * 2
    # A subset: only max_connections changes.
    code, body, _ = api(b, "PUT", PATH, {"max_connections": 8})
    assert code == 200 and body["redirect_servers"] == SERVERS and body["redirect_strategy"] == "round_robin"
    held += hold(b, 2)
    assert expect_redirect(b) in REFERENCES
    # The server list is replaced as a whole; round robin starts over on it.
    code, body, _ = api(b, "PUT", PATH, {"redirect_servers": [{"host": "::1", "port": 2000}]})
    assert code == 200 and body["redirect_servers"] == [{"host": "::1", "port": 2000}], body
    assert expect_redirect(b) == "[::1]:2000"
    # Off again: admitted past the old cap.
    assert api(b, "PUT", PATH, {"enable": False})[0] == 200
    held += hold(b, 3)
    assert b.proc.pid == pid and b.alive
    assert api(b, "GET", PATH)[1]["enable"] is False


@pytest.mark.parametrize("patch,field", [
    ({"redirect_strategy": "least_connections"}, "redirect_strategy"),
    ({"redirect_servers": [{"host": "", "port": 1883}]}, "redirect_servers[0].host"),
    ({"redirect_servers": [{"host": "a", "port": 0}]}, "redirect_servers[0].port"),
    ({"redirect_servers": [{"host": "a"}, {"host": "b", "port": 65536}]}, "redirect_servers[1].port"),
    ({"redirect_servers": [{"port": 1883}]}, "redirect_servers[0].host"),
    ({"redirect_servers": [{"host": "a", "weight": 1}]}, "redirect_servers[0].weight"),
    ({"redirect_servers": "a:1883"}, "redirect_servers"),
    ({"enable": True, "redirect_servers": []}, "redirect_servers"),
    ({"max_connections": -5}, "max_connections"),
    ({"max_connections": "lots"}, "max_connections"),
    ({"enable": "maybe"}, "enable"),
    ({"redirect_strategie": "random"}, "redirect_strategie"),
], ids=["strategy", "empty-host", "port-0", "port-65536", "no-host", "unknown-server-key",
        "servers-not-array", "enable-no-servers", "negative-cap", "cap-not-int", "enable-not-bool",
        "unknown-field"])
def test_put_400_names_the_field_and_changes_nothing(broker_factory, patch, field):
    b = broker_factory(config=redirection(5, "random"))
    before = api(b, "GET", PATH)[1]
    code, body, _ = api(b, "PUT", PATH, patch)
    assert code == 400, body
    assert body["code"] == "BAD_REQUEST" and body["field"] == field, body
    assert f"server_redirection.{field}" in body["message"], body
    assert api(b, "GET", PATH)[1] == before


@pytest.mark.parametrize("raw", [b"enable=true", b"{", b"[1,2]", b"42", b""],
                         ids=["form", "truncated", "array", "number", "empty"])
def test_put_non_object_body_is_400(broker, raw):
    code, body, _ = api(broker, "PUT", PATH, raw=raw)
    assert code == 400 and body["code"] == "BAD_REQUEST", body


# ---------------------------------------------------------------- status

def test_status(broker_factory):
    b = broker_factory(config=redirection(3), shards=2)
    held = hold(b, 3)
    expect_redirect(b)
    s = wait_connections(b, 3)
    assert s["node"] == "test@127.0.0.1"
    assert s["version"]
    assert [x["id"] for x in s["shards"]] == [0, 1]
    assert sum(x["connections"] for x in s["shards"]) == 3
    assert sum(x["redirected"]["use_another_server"] for x in s["shards"]) == 1
    assert all(set(x["refused"]) >= {"quota_exceeded", "server_unavailable"} for x in s["shards"])
    for r in held:
        r.disconnect()
    wait_connections(b, 0)


# ---------------------------------------------------------------- bind

def test_taken_api_bind_stops_the_start(broker_factory):
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    try:
        b = broker_factory(config={"api": {"bind": f"127.0.0.1:{port}"}}, start=False)
        assert b.wait_exit(10) != 0
        assert "api.bind" in b.log(), b.log()
    finally:
        blocker.close()


def test_api_bind_overlapping_a_listener_is_a_config_error(broker_factory):
    port = free_port()
    b = broker_factory(port=port, config={"api": {"bind": f"127.0.0.1:{port}"}}, start=False)
    assert b.wait_exit(10) != 0
    assert "api.bind" in b.log(), b.log()


def test_api_can_be_disabled(broker_factory):
    b = broker_factory(config={"api": {"enable": False}})
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", b.api_port), timeout=1).close()
    r, ack = connect_raw(b, V5, make_uid("c"))
    assert ack.rc == 0
