"""Topic authorization rules ([authorization], EMQX-style): denied subscriptions and
publishes, allow lists, placeholders, who-matchers, deny_action, config errors."""
import pytest

import mqttraw
from conftest import _toml_value
from mqttraw import PUBACK, PUBCOMP, PUBREC, V311, V5

pytestmark = [pytest.mark.timeout(60), pytest.mark.ringmq_only("ringmq's [authorization] rules")]

NOT_AUTHORIZED = 0x87
SUBACK_FAILURE = 0x80


def rules_toml(rules: list[dict]) -> str:
    """`[[authorization.rules]]` tables (the harness's TOML writer has no arrays of tables)."""
    out = ""
    for rule in rules:
        out += "\n[[authorization.rules]]\n"
        out += "".join(f"{k} = {_toml_value(v)}\n" for k, v in rule.items())
    return out


def authz_broker(broker_factory, rules: list[dict], start: bool = True, env: dict | None = None,
                 **section):
    """A broker with these rules and `[authorization]` keys (no_match=, deny_action=)."""
    b = broker_factory(config={"authorization": section} if section else None, env=env, spawn=False)
    b.config_path.write_text(b.config_path.read_text() + rules_toml(rules))
    if start:
        b.start()
    else:
        b.stopped = True  # expected to exit
        b.spawn()
    return b


DENY_SUBSCRIBE = {"permission": "deny", "action": "subscribe",
                  "topics": ["test/nosubscribe", "secret/#"]}
DENY_PUBLISH = {"permission": "deny", "action": "publish", "topics": ["secret/#"]}


def test_deny_subscribe(broker_factory, version, uid):
    """A denied filter gets 0x87 (v5) / 0x80 (3.1.1); the others in the packet are granted."""
    b = authz_broker(broker_factory, [DENY_SUBSCRIBE])
    sub = b.client(uid("sub"), version=version)
    denied = NOT_AUTHORIZED if version == 5 else SUBACK_FAILURE
    rcs = sub.subscribe(["test/nosubscribe", "secret/+", "secret/#", "$share/g/secret/a", "ok/x"],
                        qos=1, check=False)
    assert rcs == [denied, denied, denied, denied, 1]
    pub = b.client(uid("pub"), version=version)
    pub.publish("test/nosubscribe", b"no", qos=1)
    pub.publish("secret/a", b"no", qos=1)
    pub.publish("ok/x", b"yes", qos=1)
    m = sub.expect_message()
    assert (m.topic, m.payload) == ("ok/x", b"yes")
    sub.expect_no_message(0.3)


def test_wider_filter_is_not_covered_by_a_deny(broker_factory, uid):
    """Documented: a deny on secret/# does not refuse `#`; an `eq #` rule does."""
    b = authz_broker(broker_factory, [DENY_SUBSCRIBE])
    assert b.client(uid("wide")).subscribe("#", qos=0) == [0]
    b2 = authz_broker(broker_factory, [{"permission": "deny", "action": "subscribe",
                                        "topics": ["eq #"]}])
    c = b2.client(uid("wide"))
    assert c.subscribe(["#", "a/#"], check=False) == [NOT_AUTHORIZED, 0]


def test_deny_publish_v5_reason_codes(broker_factory, uid):
    """v5: QoS 1 gets PUBACK 0x87, QoS 2 PUBREC 0x87, QoS 0 is dropped; nothing is routed
    and the connection stays."""
    b = authz_broker(broker_factory, [DENY_PUBLISH])
    sub = b.client(uid("sub"))
    sub.subscribe(["secret/#", "public/#"], qos=2)
    r = b.raw(version=V5, connect=uid("pub"))
    r.publish("secret/q0", b"x", qos=0)
    r.send(mqttraw.publish("secret/q1", b"x", qos=1, pid=11, version=V5))
    assert r.wait_for(PUBACK, 11).rc == NOT_AUTHORIZED
    r.send(mqttraw.publish("secret/q2", b"x", qos=2, pid=12, version=V5))
    assert r.wait_for(PUBREC, 12).rc == NOT_AUTHORIZED
    r.ping()
    r.publish("public/ok", b"marker", qos=1)
    m = sub.expect_message()
    assert (m.topic, m.payload) == ("public/ok", b"marker")
    sub.expect_no_message(0.3)


def test_deny_publish_v311_acked_but_not_delivered(broker_factory, uid):
    """3.1.1 cannot refuse a PUBLISH: the handshake completes, the message goes nowhere."""
    b = authz_broker(broker_factory, [DENY_PUBLISH])
    sub = b.client(uid("sub"), version=4)
    sub.subscribe(["secret/#", "public/#"], qos=2)
    r = b.raw(version=V311, connect=uid("pub"))
    r.publish("secret/q0", b"x", qos=0)
    r.publish("secret/q1", b"x", qos=1)   # waits for PUBACK
    r.publish("secret/q2", b"x", qos=2)   # PUBREC, PUBREL, PUBCOMP
    r.publish("public/ok", b"marker", qos=1)
    m = sub.expect_message()
    assert (m.topic, m.payload) == ("public/ok", b"marker")
    sub.expect_no_message(0.3)
    # paho 3.1.1 publisher: the publish completes normally too.
    p = b.client(uid("paho"), version=4)
    p.publish("secret/paho", b"x", qos=2)
    sub.expect_no_message(0.3)


def test_deny_reason_unspecified_error(broker_factory, uid):
    """deny_reason = "unspecified_error": v5 refusals carry 0x80 instead of 0x87."""
    b = authz_broker(broker_factory, [DENY_SUBSCRIBE, DENY_PUBLISH], deny_reason="unspecified_error")
    r = b.raw(version=V5, connect=uid("c"))
    assert r.subscribe([("test/nosubscribe", 1), ("ok/x", 1)]).rcs == [SUBACK_FAILURE, 1]
    r.send(mqttraw.publish("secret/q1", b"x", qos=1, pid=21, version=V5))
    assert r.wait_for(PUBACK, 21).rc == 0x80
    r.send(mqttraw.publish("secret/q2", b"x", qos=2, pid=22, version=V5))
    assert r.wait_for(PUBREC, 22).rc == 0x80


def test_allow_list_with_no_match_deny(broker_factory, version, uid):
    b = authz_broker(broker_factory, [
        {"permission": "allow", "action": "publish", "topics": ["sensors/+/temp"]},
        {"permission": "allow", "action": "subscribe", "topics": ["sensors/#"]},
    ], no_match="deny")
    sub = b.client(uid("sub"), version=version)
    denied = NOT_AUTHORIZED if version == 5 else SUBACK_FAILURE
    assert sub.subscribe(["sensors/#", "other/#", "#"], qos=1, check=False) == [1, denied, denied]
    pub = b.client(uid("pub"), version=version)
    pub.publish("sensors/1/temp", b"21.5", qos=1)
    m = sub.expect_message()
    assert (m.topic, m.payload) == ("sensors/1/temp", b"21.5")
    if version == 5:
        info = pub.publish("sensors/1/humidity", b"40", qos=1)
        assert pub.puback_rc[info.mid] == NOT_AUTHORIZED
    else:
        pub.publish("sensors/1/humidity", b"40", qos=1)
    sub.expect_no_message(0.3)


def test_clientid_placeholder(broker_factory, version, uid):
    b = authz_broker(broker_factory, [
        {"permission": "allow", "action": "all", "topics": ["devices/${clientid}/#"]},
    ], no_match="deny")
    me = uid("dev")
    c = b.client(me, version=version)
    denied = NOT_AUTHORIZED if version == 5 else SUBACK_FAILURE
    rcs = c.subscribe([f"devices/{me}/#", "devices/other/#", "devices/+/state"], qos=1, check=False)
    assert rcs == [1, denied, denied]
    c.publish(f"devices/{me}/state", b"on", qos=1)
    assert c.expect_message().topic == f"devices/{me}/state"
    # Someone else's tree: not routed.
    other = b.client(uid("other"), version=version)
    other.publish(f"devices/{me}/state", b"spoof", qos=1)
    c.expect_no_message(0.3)


def test_client_id_and_username_matchers(broker_factory, uid):
    blocked = uid("blocked")
    b = authz_broker(broker_factory, [
        {"permission": "deny", "action": "all", "topics": ["#"], "client_id": blocked},
        {"permission": "deny", "action": "publish", "topics": ["#"], "username": "readonly"},
        {"permission": "deny", "action": "subscribe", "topics": ["admin/#"],
         "client_id": uid("nobody"), "username": "alice"},
    ])
    x = b.client(blocked)
    assert x.subscribe("a/b", check=False) == [NOT_AUTHORIZED]
    ro = b.client(uid("ro"), username="readonly", password="pw")
    assert ro.subscribe("a/b", qos=1) == [1]
    info = ro.publish("a/b", b"x", qos=1)
    assert ro.puback_rc[info.mid] == NOT_AUTHORIZED
    # Both matchers must match: alice with another client id is not denied.
    alice = b.client(uid("alice"), username="alice", password="pw")
    assert alice.subscribe("admin/x", qos=1) == [1]
    free = b.client(uid("free"))
    free.publish("a/b", b"ok", qos=1)
    assert ro.expect_message().payload == b"ok"


def test_deny_action_disconnect(broker_factory, version, uid):
    """deny_action = "disconnect": a denied PUBLISH closes the connection (v5: DISCONNECT
    0x87); the publisher's will, to an allowed topic, goes out."""
    b = authz_broker(broker_factory, [DENY_PUBLISH], deny_action="disconnect")
    sub = b.client(uid("sub"), version=version)
    sub.subscribe(["secret/#", "wills/#"], qos=1)
    r = b.raw(version=version, connect=uid("pub"),
              will={"topic": "wills/pub", "payload": b"gone", "qos": 1})
    r.publish("secret/x", b"x", qos=0)
    r.expect_disconnect(NOT_AUTHORIZED)
    m = sub.expect_message()
    assert (m.topic, m.payload) == ("wills/pub", b"gone")
    sub.expect_no_message(0.3)


def test_will_to_denied_topic_is_dropped(broker_factory, version, uid):
    """The CONNECT is accepted; the will is checked when due and dropped (as EMQX)."""
    b = authz_broker(broker_factory, [DENY_PUBLISH])
    sub = b.client(uid("sub"), version=version)
    sub.subscribe(["secret/#", "public/#"], qos=1)
    denied = b.raw(version=version)
    assert denied.connect(uid("w1"), will={"topic": "secret/will", "payload": b"x"}).rc == 0
    allowed = b.raw(version=version, connect=uid("w2"),
                    will={"topic": "public/will", "payload": b"bye"})
    denied.close()
    allowed.close()
    m = sub.expect_message()
    assert (m.topic, m.payload) == ("public/will", b"bye")
    sub.expect_no_message(0.3)


@pytest.mark.parametrize("rules,section,key", [
    ([{"permission": "deny", "action": "pub", "topics": ["a"]}], {}, "authorization.rules[0].action"),
    ([DENY_PUBLISH, {"permission": "deny", "action": "all", "topics": ["a/#/b"]}], {},
     "authorization.rules[1].topics[0]"),
    ([{"action": "all", "topics": ["a"]}], {}, "authorization.rules[0].permission"),
    ([{"permission": "deny", "action": "all", "topics": ["a"], "clientid": "x"}], {},
     "authorization.rules[0].clientid"),
    ([], {"no_match": "maybe"}, "authorization.no_match"),
    ([], {"deny_reason": "0x87"}, "authorization.deny_reason"),
], ids=["bad-action", "bad-topic", "missing-permission", "unknown-key", "bad-no-match",
        "bad-deny-reason"])
def test_bad_rule_exits_naming_the_key(broker_factory, rules, section, key):
    b = authz_broker(broker_factory, rules, start=False, **section)
    assert b.wait_exit(10) != 0
    assert key in b.log(), f"stderr does not name {key}:\n" + b.tail(20)


def test_bad_deny_action_from_env(broker_factory):
    b = authz_broker(broker_factory, [], start=False,
                     env={"RINGMQ_AUTHORIZATION__DENY_ACTION": "kick"})
    assert b.wait_exit(10) != 0
    log = b.log()
    assert "authorization.deny_action" in log and "RINGMQ_AUTHORIZATION__DENY_ACTION" in log, b.tail(20)


def test_no_match_deny_from_env(broker_factory, uid):
    b = authz_broker(broker_factory, [DENY_PUBLISH], env={"RINGMQ_AUTHORIZATION__NO_MATCH": "deny"})
    c = b.client(uid("c"))
    assert c.subscribe("anything", check=False) == [NOT_AUTHORIZED]
