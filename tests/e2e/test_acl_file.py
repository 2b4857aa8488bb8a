"""The Mosquitto-format ACL file (issue 16 item 3): user blocks, anonymous lines, %c/%u
patterns, deny lines, enforced on SUBSCRIBE (0x87 / 0x80) and PUBLISH (PUBACK/PUBREC 0x87
on v5, acknowledged and dropped on 3.1.1); superusers bypass it; [authorization] rules are
checked first; reload."""
import signal

import pytest

import mqttraw
from mqttraw import PUBACK, PUBREC, V5, V311
from test_authentication import USERS, password_file
from test_authz import rules_toml
from test_redirection import api

pytestmark = [pytest.mark.timeout(90), pytest.mark.ringmq_only("ringmq's acl_file")]

ACL = """\
# before any user: anonymous clients
topic read public/#
user alice
topic readwrite alice/#
topic deny alice/secret
user bob
topic write alice/inbox
pattern readwrite devices/%c/#
pattern read users/%u/#
"""
DENIED = {5: 0x87, 4: 0x80}


def acl_broker(broker_factory, tmp_path, acl=ACL, rules=None, **section):
    acl_path = tmp_path / "acl"
    acl_path.write_text(acl)
    cfg = {"authentication": {"password_file": str(password_file(tmp_path)),
                              "acl_file": str(acl_path), **section}}
    b = broker_factory(config=cfg, spawn=False)
    if rules:
        b.config_path.write_text(b.config_path.read_text() + rules_toml(rules))
    b.start()
    return b, acl_path


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_subscribe_is_refused_where_the_acl_grants_nothing(broker_factory, tmp_path, version):
    b, _ = acl_broker(broker_factory, tmp_path)
    alice = b.client("dev-a", version=version, username="alice", password="alice-pw")
    no = DENIED[version]
    rcs = alice.subscribe(["alice/x", "alice/#", "alice/+", "bob/#", "devices/dev-a/#",
                           "devices/dev-b/#", "devices/+/t", "users/alice/#", "users/bob/#",
                           "public/#", "$share/g/alice/y", "#"], qos=1, check=False)
    assert rcs == [1, no, no, no, 1, no, no, 1, no, no, 1, no]
    anon = b.client("anon-1", version=version)
    assert anon.subscribe(["public/#", "public/a", "alice/x", "devices/anon-1/+"],
                          qos=1, check=False) == [1, 1, no, 1]


def test_publish_denied_v5_gets_0x87_and_reaches_nobody(broker_factory, tmp_path):
    b, _ = acl_broker(broker_factory, tmp_path)
    alice = b.client("alice-1", username="alice", password="alice-pw")
    assert alice.subscribe(["alice/inbox", "alice/x", "devices/alice-1/#"], qos=2,
                           check=False) == [2, 2, 2]
    bob = b.raw(version=V5)
    bob.connect("bob-1", username="bob", password=b"bob-pw")
    bob.send(mqttraw.publish("alice/x", b"no", qos=1, pid=1, version=V5))
    assert bob.wait_for(PUBACK, 1).rc == 0x87
    bob.send(mqttraw.publish("alice/x", b"no", qos=2, pid=2, version=V5))
    assert bob.wait_for(PUBREC, 2).rc == 0x87
    bob.publish("alice/x", b"no-q0", qos=0)
    bob.send(mqttraw.publish("alice/inbox", b"yes", qos=1, pid=3, version=V5))
    assert bob.wait_for(PUBACK, 3).rc == 0
    # alice may not publish to her deny line, but may to her own tree and her pattern.
    a2 = b.raw(version=V5)
    a2.connect("alice-2", username="alice", password=b"alice-pw")
    a2.send(mqttraw.publish("alice/secret", b"no", qos=1, pid=4, version=V5))
    assert a2.wait_for(PUBACK, 4).rc == 0x87
    a2.send(mqttraw.publish("devices/alice-1/t", b"no", qos=1, pid=5, version=V5))
    assert a2.wait_for(PUBACK, 5).rc == 0x87, "%c is alice-2 here"
    a2.send(mqttraw.publish("alice/x", b"own", qos=1, pid=6, version=V5))
    assert a2.wait_for(PUBACK, 6).rc == 0
    got = [(m.topic, m.payload) for m in alice.expect_messages(2)]
    assert sorted(got) == [("alice/inbox", b"yes"), ("alice/x", b"own")]
    alice.expect_no_message(0.5)


def test_publish_denied_v311_is_acknowledged_and_dropped(broker_factory, tmp_path):
    b, _ = acl_broker(broker_factory, tmp_path)
    alice = b.client("alice-1", version=4, username="alice", password="alice-pw")
    alice.subscribe(["alice/x", "alice/inbox"], qos=2)
    bob = b.raw(version=V311)
    bob.connect("bob-1", username="bob", password=b"bob-pw")
    bob.send(mqttraw.publish("alice/x", b"no", qos=1, pid=1, version=V311))
    bob.wait_for(PUBACK, 1)
    bob.send(mqttraw.publish("alice/x", b"no", qos=2, pid=2, version=V311))
    bob.wait_for(PUBREC, 2)
    bob.send(mqttraw.publish("alice/inbox", b"yes", qos=1, pid=3, version=V311))
    bob.wait_for(PUBACK, 3)
    m = alice.expect_message()
    assert (m.topic, m.payload) == ("alice/inbox", b"yes")
    alice.expect_no_message(0.5)


def test_patterns_substitute_client_id_and_user_name(broker_factory, tmp_path):
    b, _ = acl_broker(broker_factory, tmp_path)
    watcher = b.client("w", username="alice", password="alice-pw")
    watcher.subscribe("devices/w/#", qos=1)
    # Anonymous client "d1": %c works, %u (no user name) grants nothing.
    d1 = b.client("d1")
    assert d1.subscribe(["devices/d1/cmd", "users/d1/#", "devices/w/#"], qos=1,
                        check=False) == [1, 0x87, 0x87]
    # A client id holding a wildcard must not widen a pattern.
    wild = b.client("+")
    assert wild.subscribe(["devices/+/#", "devices/#"], qos=1, check=False) == [0x87, 0x87]
    bob = b.client("bob-c", username="bob", password="bob-pw")
    assert bob.subscribe(["users/bob/inbox", "users/alice/inbox"], qos=1,
                         check=False) == [1, 0x87]


def test_superuser_bypasses_the_acl(broker_factory, tmp_path):
    b, _ = acl_broker(broker_factory, tmp_path, built_in_database=True)
    assert api(b, "POST", USERS, {"user_id": "root", "password": "r", "is_superuser": True})[0] == 201
    assert api(b, "POST", USERS, {"user_id": "plain", "password": "p"})[0] == 201
    root = b.client("root-c", username="root", password="r")
    assert root.subscribe(["#", "alice/secret"], qos=1, check=False) == [1, 1]
    plain = b.client("plain-c", username="plain", password="p")
    assert plain.subscribe(["#"], qos=1, check=False) == [0x87]
    root.publish("alice/secret", b"root-was-here", qos=1)
    assert root.expect_message().payload == b"root-was-here"
    # Demoted over the API: new connections are held to the ACL again.
    api(b, "PUT", USERS + "/root", {"is_superuser": False})
    again = b.client("root-2", username="root", password="r")
    assert again.subscribe(["#"], qos=1, check=False) == [0x87]


def test_authorization_rules_are_checked_before_the_acl(broker_factory, tmp_path):
    rules = [
        {"permission": "allow", "action": "subscribe", "topics": ["announcements/#"]},
        {"permission": "deny", "action": "all", "username": "alice", "topics": ["alice/locked"]},
    ]
    b, _ = acl_broker(broker_factory, tmp_path, rules=rules)
    anon = b.client("anon")
    # Granted by a rule, which the ACL does not.
    assert anon.subscribe(["announcements/x", "other/x"], qos=1, check=False) == [1, 0x87]
    alice = b.client("a", username="alice", password="alice-pw")
    # Denied by a rule, which the ACL grants.
    assert alice.subscribe(["alice/locked", "alice/open"], qos=1, check=False) == [0x87, 1]


def test_reload_changes_the_acl_for_new_requests(broker_factory, tmp_path):
    b, acl_path = acl_broker(broker_factory, tmp_path)
    anon = b.client("anon")
    assert anon.subscribe(["public/a"], qos=1) == [1]
    assert anon.subscribe(["extra/a"], qos=1, check=False) == [0x87]
    acl_path.write_text("topic read extra/#\n" + ACL)
    b.send_signal(signal.SIGHUP)
    b.wait_log("authentication files reloaded")
    assert anon.subscribe(["extra/a"], qos=1, check=False) == [1]
    # A bad ACL over the API is refused naming the line; the loaded one stays.
    acl_path.write_text("topic read extra/#\nbogus line\n")
    code, body, _ = api(b, "POST", "/api/v5/authentication/reload")
    assert code == 400 and f"{acl_path}, line 2" in body["message"], body
    assert anon.subscribe(["extra/b"], qos=1, check=False) == [1]
