"""Client management API (issue 12, item 6): `/api/v5/clients` (paged), one client, its
subscriptions, `/api/v5/subscriptions` (paged), and the kick (`DELETE`), answered by the shards
through the shard services inbox. Shapes as EMQX 5's: `{"data": [...], "meta": {...}}`."""
from __future__ import annotations

import time
import urllib.parse
from datetime import datetime, timedelta, timezone

import pytest

import mqttraw
from conftest import make_uid
from mqttraw import V5, V311, sub_options
from test_redirection import api

pytestmark = [pytest.mark.timeout(120), pytest.mark.ringmq_only("admin API")]

CLIENT_FIELDS = {"clientid", "username", "node", "connected", "proto_ver", "ip_address", "port",
                 "keepalive", "clean_start", "expiry_interval", "subscriptions_cnt", "mqueue_len",
                 "inflight_cnt", "connected_at"}


def client_path(client_id: str, rest: str = "") -> str:
    return "/api/v5/clients/" + urllib.parse.quote(client_id, safe="") + rest


def get_ok(b, path: str):
    code, body, _ = api(b, "GET", path)
    assert code == 200, (path, code, body)
    return body


def wait_gone(b, client_id: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        code, body, _ = api(b, "GET", client_path(client_id))
        if code == 404:
            assert body["code"] == "CLIENTID_NOT_FOUND", body
            return
        assert time.monotonic() < deadline, f"{client_id} still listed: {body}"
        time.sleep(0.05)


def wait_listed(b, client_id: str, connected: bool, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body, _ = api(b, "GET", client_path(client_id))
        if code == 200 and body["connected"] == connected:
            return body
        assert time.monotonic() < deadline, f"{client_id}: {code} {body}"
        time.sleep(0.05)


def parse_time(s: str) -> datetime:
    return datetime.fromisoformat(s)


def test_fifty_clients_over_two_shards_are_listed_and_paged(broker_factory):
    b = broker_factory(shards=2)
    prefix = make_uid("list")
    started = datetime.now(timezone.utc) - timedelta(seconds=2)
    clients = {}
    for i in range(50):
        cid = f"{prefix}-{i:02d}"
        v5 = i % 2 == 0
        r = b.raw(version=V5 if v5 else V311)
        kw = dict(keepalive=10 + i, clean=i % 3 != 0, username=f"user{i}" if i % 5 else None)
        if v5:
            kw["props"] = {"session_expiry_interval": 100 + i}
        r.connect(cid, **kw)
        if i % 4 == 0:
            r.subscribe([(f"{prefix}/a/{i}", 1), (f"{prefix}/b/#", 0)])
        clients[cid] = (r, v5, kw)
    ended = datetime.now(timezone.utc) + timedelta(seconds=2)

    body = get_ok(b, "/api/v5/clients?limit=100")
    assert body["meta"] == {"page": 1, "limit": 100, "count": 50, "hasnext": False}, body["meta"]
    listed = {c["clientid"]: c for c in body["data"]}
    assert set(listed) == set(clients)
    assert {c["shard"] for c in listed.values()} == {0, 1}, "50 connections all on one shard"
    for cid, (r, v5, kw) in clients.items():
        c = listed[cid]
        assert CLIENT_FIELDS <= set(c), set(CLIENT_FIELDS) - set(c)
        i = int(cid.rsplit("-", 1)[1])
        assert c["node"] == "test@127.0.0.1"
        assert c["connected"] is True
        assert c["proto_ver"] == (5 if v5 else 4) and c["proto_name"] == "MQTT"
        assert c["ip_address"] == "127.0.0.1"
        assert c["port"] == r.local_port
        assert c["keepalive"] == kw["keepalive"]
        assert c["clean_start"] is kw["clean"]
        assert c["username"] == kw["username"]
        # v3.1.1: Clean Session 0 keeps the session (up to the broker's cap), 1 ends it.
        want_expiry = 100 + i if v5 else (0 if kw["clean"] else 7200)
        assert c["expiry_interval"] == want_expiry, c
        assert c["subscriptions_cnt"] == (2 if i % 4 == 0 else 0)
        assert c["mqueue_len"] == 0 and c["inflight_cnt"] == 0
        assert started <= parse_time(c["connected_at"]) <= ended, c["connected_at"]
        assert c["disconnected_at"] is None

    # Pages of 7: every client exactly once, in a stable order.
    seen = []
    for page in range(1, 9):
        body = get_ok(b, f"/api/v5/clients?page={page}&limit=7")
        assert body["meta"]["count"] == 50 and body["meta"]["limit"] == 7
        assert body["meta"]["hasnext"] == (page < 8), body["meta"]
        assert len(body["data"]) == (7 if page < 8 else 1)
        seen += [c["clientid"] for c in body["data"]]
    assert sorted(seen) == sorted(clients)
    assert get_ok(b, "/api/v5/clients?page=9&limit=7")["data"] == []
    default = get_ok(b, "/api/v5/clients")
    assert default["meta"]["limit"] == 100 and len(default["data"]) == 50


@pytest.mark.parametrize("query,field", [
    ("page=0", "page"), ("page=abc", "page"), ("limit=0", "limit"), ("limit=10001", "limit"),
    ("limit=-5", "limit"), ("colour=red", "query"),
])
@pytest.mark.parametrize("path", ["/api/v5/clients", "/api/v5/subscriptions"])
def test_bad_page_or_limit_is_400_naming_it(broker, path, query, field):
    code, body, _ = api(broker, "GET", f"{path}?{query}")
    assert code == 400, body
    assert body["code"] == "BAD_REQUEST" and body["field"] == field, body
    assert body["message"], body


def test_the_client_api_needs_credentials(broker):
    for method, path in [("GET", "/api/v5/clients"), ("GET", client_path("x")),
                         ("DELETE", client_path("x")), ("GET", "/api/v5/subscriptions")]:
        code, body, _ = api(broker, method, path, auth=None)
        assert code == 401, (method, path, body)


def test_offline_session_is_listed_disconnected(broker_factory):
    b = broker_factory(shards=2)
    cid = make_uid("off")
    r = b.raw(connect=cid, clean=False, props={"session_expiry_interval": 300})
    r.subscribe(f"{cid}/t", qos=1)
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    r.disconnect()
    c = wait_listed(b, cid, connected=False)
    assert c["expiry_interval"] == 300 and c["subscriptions_cnt"] == 1
    assert c["ip_address"] is None and c["connected_at"] is None
    assert before <= parse_time(c["disconnected_at"]) <= datetime.now(timezone.utc) + timedelta(seconds=1)
    # Messages wait in its queue and the listing shows them.
    p = b.raw(connect=make_uid("pub"))
    for i in range(3):
        p.publish(f"{cid}/t", f"m{i}", qos=1)
    deadline = time.monotonic() + 5
    while get_ok(b, client_path(cid))["mqueue_len"] != 3:
        assert time.monotonic() < deadline, get_ok(b, client_path(cid))
        time.sleep(0.05)
    assert cid in {c["clientid"] for c in get_ok(b, "/api/v5/clients")["data"]}


def test_kicked_v5_client_gets_0x98_and_its_session_is_gone(broker_factory):
    b = broker_factory(shards=2)
    cid = make_uid("kick")
    r = b.raw(connect=cid, clean=False, props={"session_expiry_interval": 600})
    r.subscribe(f"{cid}/t", qos=1)
    assert get_ok(b, client_path(cid))["connected"] is True
    code, body, _ = api(b, "DELETE", client_path(cid))
    assert code == 204, body
    r.expect_disconnect(0x98)
    wait_gone(b, cid)
    # The session was discarded, not kept for its 600 s: no session on reconnect, and the
    # subscription is gone with it.
    again = b.raw(version=V5)
    ack = again.connect(cid, clean=False, props={"session_expiry_interval": 600})
    assert ack.session_present is False, ack
    assert get_ok(b, client_path(cid, "/subscriptions")) == []
    p = b.raw(connect=make_uid("pub"))
    p.publish(f"{cid}/t", "after", qos=1)
    again.expect_nothing(0.3)


def test_kick_of_a_v311_client_and_of_an_offline_session(broker_factory):
    b = broker_factory(shards=2)
    v3 = make_uid("kick3")
    r = b.raw(version=V311, connect=v3, clean=False)
    assert api(b, "DELETE", client_path(v3))[0] == 204
    r.expect_disconnect()  # 3.1.1 has no server DISCONNECT: the socket closes
    wait_gone(b, v3)

    off = make_uid("kickoff")
    o = b.raw(connect=off, clean=False, props={"session_expiry_interval": 600})
    o.subscribe(f"{off}/t")
    o.disconnect()
    wait_listed(b, off, connected=False)
    assert api(b, "DELETE", client_path(off))[0] == 204
    wait_gone(b, off)
    again = b.raw(version=V5)
    assert again.connect(off, clean=False, props={"session_expiry_interval": 600}).session_present is False


def test_unknown_client_is_404(broker):
    for method, path in [("GET", client_path("nobody")), ("DELETE", client_path("nobody")),
                         ("GET", client_path("nobody", "/subscriptions"))]:
        code, body, _ = api(broker, method, path)
        assert code == 404, (method, path, body)
        assert body["code"] == "CLIENTID_NOT_FOUND", body


def test_subscriptions_are_listed(broker_factory):
    b = broker_factory(shards=2)
    prefix = make_uid("subs")
    ids = []
    for i in range(6):
        cid = f"{prefix}-{i}"
        r = b.raw(connect=cid)
        r.subscribe([(f"{prefix}/x/{i}", sub_options(qos=1, no_local=True, rap=True, rh=2)),
                     (f"$share/g/{prefix}/s", sub_options(qos=2))],
                    props={"subscription_identifier": 40 + i})
        ids.append(cid)
    subs = get_ok(b, client_path(ids[3], "/subscriptions"))
    by_topic = {s["topic"]: s for s in subs}
    assert set(by_topic) == {f"{prefix}/x/3", f"$share/g/{prefix}/s"}
    x = by_topic[f"{prefix}/x/3"]
    assert (x["qos"], x["nl"], x["rap"], x["rh"], x["sub_id"]) == (1, 1, 1, 2, 43), x
    assert x["clientid"] == ids[3] and x["node"] == "test@127.0.0.1"
    assert by_topic[f"$share/g/{prefix}/s"]["qos"] == 2

    body = get_ok(b, "/api/v5/subscriptions?limit=5")
    assert body["meta"]["count"] == 12 and len(body["data"]) == 5 and body["meta"]["hasnext"]
    seen = []
    for page in range(1, 4):
        seen += [(s["clientid"], s["topic"]) for s in
                 get_ok(b, f"/api/v5/subscriptions?page={page}&limit=5")["data"]]
    assert sorted(seen) == sorted((c, t) for c in ids
                                  for t in (f"{prefix}/x/{c.rsplit('-', 1)[1]}", f"$share/g/{prefix}/s"))
