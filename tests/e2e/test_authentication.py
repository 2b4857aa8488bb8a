"""[authentication] (issue 16 items 1 and 2): Mosquitto password files written by Debian's
mosquitto_passwd (both hash formats) with paho and mosquitto_pub/sub, refusal codes on v5
and 3.1.1, allow_anonymous = false, reload (SIGHUP and the API) after editing the file,
malformed files, the built-in user database over the admin API, and 200 wrong-password
attempts while other clients carry on."""
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request

import pytest

from conftest import make_uid
from mqttraw import V5, V311
from test_redirection import api

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.ringmq_only("ringmq's [authentication]"),
    pytest.mark.skipif(not shutil.which("mosquitto_passwd"), reason="needs mosquitto_passwd"),
]

BAD_USER_OR_PASSWORD = {5: 0x86, 4: 4}
NOT_AUTHORIZED = {5: 0x87, 4: 5}
USERS = "/api/v5/authentication/password_based:built_in_database/users"


def passwd(path, user, password, *flags):
    """mosquitto_passwd -b [flags] FILE USER PASSWORD (the file is created with -c)."""
    subprocess.run(["mosquitto_passwd", *flags, "-b", str(path), user, password], check=True,
                   capture_output=True, timeout=10)


def password_file(tmp_path):
    """alice: $7$ (PBKDF2, mosquitto_passwd's default), bob: $6$ (-H sha512)."""
    path = tmp_path / "passwd"
    passwd(path, "alice", "alice-pw", "-c")
    passwd(path, "bob", "bob-pw", "-H", "sha512")
    lines = path.read_text().splitlines()
    assert lines[0].startswith("alice:$7$101$") and lines[1].startswith("bob:$6$"), lines
    return path


def auth_broker(broker_factory, **section):
    section = {k: str(v) if hasattr(v, "parent") else v for k, v in section.items()}
    return broker_factory(config={"authentication": section})


def raw_connect(b, version, rc, **kw):
    """A raw CONNECT expecting CONNACK `rc`; a refusal must then close the connection."""
    r = b.raw(version=version)
    r.connect(make_uid("raw"), expect_rc=rc, **kw)
    if rc != 0:
        r.wait_closed()
    return r


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_mosquitto_passwd_file_both_formats_with_paho(broker_factory, tmp_path, version, uid):
    b = auth_broker(broker_factory, password_file=password_file(tmp_path))
    sub = b.client(uid("sub"), version=version, username="alice", password="alice-pw")
    sub.subscribe("auth/t", qos=1)
    pub = b.client(uid("pub"), version=version, username="bob", password="bob-pw")
    pub.publish("auth/t", b"hello", qos=1)
    assert sub.expect_message().payload == b"hello"
    v = V5 if version == 5 else V311
    rc = BAD_USER_OR_PASSWORD[version]
    raw_connect(b, v, rc, username="alice", password=b"bob-pw")
    raw_connect(b, v, rc, username="bob", password=b"wrong")
    raw_connect(b, v, rc, username="nobody", password=b"alice-pw")
    raw_connect(b, v, rc, username="alice")  # no password
    # Anonymous clients are still allowed (allow_anonymous defaults to true).
    raw_connect(b, v, 0)
    # paho sees the refusal too.
    refused = b.client(uid("bad"), version=version, username="alice", password="nope",
                       expect_rc=None)
    refused.stop()  # paho's loop would retry
    # paho reports a 3.1.1 return code 4 as the v5 code 0x86.
    assert refused.connack_rc in (rc, 0x86)


@pytest.mark.skipif(not shutil.which("mosquitto_pub"), reason="needs mosquitto_pub/sub")
@pytest.mark.parametrize("proto", ["mqttv311", "mqttv5"])
def test_mosquitto_pub_sub_with_a_mosquitto_passwd_file(broker_factory, tmp_path, proto):
    b = auth_broker(broker_factory, password_file=password_file(tmp_path), allow_anonymous=False)
    base = ["-h", "127.0.0.1", "-p", str(b.listen_port), "-V", proto]
    sub = subprocess.Popen(["mosquitto_sub", *base, "-u", "alice", "-P", "alice-pw", "-t", "cli/t",
                            "-C", "1", "-W", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        time.sleep(0.5)  # mosquitto_sub subscribes; the loop below retries anyway
        deadline = time.monotonic() + 10
        while True:
            r = subprocess.run(["mosquitto_pub", *base, "-u", "bob", "-P", "bob-pw", "-t", "cli/t",
                                "-m", "via-cli", "-q", "1"], capture_output=True, text=True,
                               timeout=20)
            assert r.returncode == 0, r.stderr
            try:
                out, err = sub.communicate(timeout=0.5)
                break
            except subprocess.TimeoutExpired:
                assert time.monotonic() < deadline, "mosquitto_sub received nothing"
        assert out.strip().splitlines()[0] == "via-cli", (out, err)
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    bad = subprocess.run(["mosquitto_pub", *base, "-u", "bob", "-P", "wrong", "-t", "cli/t",
                          "-m", "x"], capture_output=True, text=True, timeout=20)
    assert bad.returncode != 0
    assert "bad user name or password" in (bad.stderr + bad.stdout).lower(), bad.stderr
    anon = subprocess.run(["mosquitto_pub", *base, "-t", "cli/t", "-m", "x"], capture_output=True,
                          text=True, timeout=20)
    assert anon.returncode != 0
    assert "not authori" in (anon.stderr + anon.stdout).lower(), anon.stderr


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_allow_anonymous_false_refuses_anonymous_clients(broker_factory, tmp_path, version):
    b = auth_broker(broker_factory, password_file=password_file(tmp_path), allow_anonymous=False)
    v = V5 if version == 5 else V311
    raw_connect(b, v, NOT_AUTHORIZED[version])
    raw_connect(b, v, 0, username="alice", password=b"alice-pw")
    text = urllib.request.urlopen(f"http://127.0.0.1:{b.api_port}/api/v5/prometheus/stats").read()
    assert b"ringmq_authentication_failures_total 1\n" in text
    assert "anonymous client refused" in b.log()


def test_allow_anonymous_false_alone_accepts_any_user_name(broker_factory):
    """Without a password source a user name is not checked (as Mosquitto without
    password_file); only anonymous clients are refused."""
    b = auth_broker(broker_factory, allow_anonymous=False)
    raw_connect(b, V5, 0x87)
    raw_connect(b, V5, 0, username="anyone", password=b"x")


def test_reload_after_editing_the_file_keeps_connections(broker_factory, tmp_path, uid):
    path = password_file(tmp_path)
    b = auth_broker(broker_factory, password_file=path)
    stay = b.client(uid("stay"), username="alice", password="alice-pw")
    stay.subscribe("reload/t", qos=1)
    # Change alice's password and add carol; SIGHUP reloads.
    passwd(path, "alice", "alice-new")
    passwd(path, "carol", "carol-pw")
    raw_connect(b, V5, 0x86, username="carol", password=b"carol-pw")
    b.send_signal(signal.SIGHUP)
    b.wait_log("authentication files reloaded")
    raw_connect(b, V5, 0, username="carol", password=b"carol-pw")
    raw_connect(b, V5, 0x86, username="alice", password=b"alice-pw")
    raw_connect(b, V5, 0, username="alice", password=b"alice-new")
    # Through the API: delete carol.
    subprocess.run(["mosquitto_passwd", "-D", str(path), "carol"], check=True, capture_output=True)
    code, body, _ = api(b, "POST", "/api/v5/authentication/reload")
    assert code == 204, body
    raw_connect(b, V5, 0x86, username="carol", password=b"carol-pw")
    # A malformed line: 400 naming file and line, the old file stays.
    good = path.read_text()
    path.write_text(good + "dave-without-hash\n")
    code, body, _ = api(b, "POST", "/api/v5/authentication/reload")
    assert code == 400, body
    line = len(good.splitlines()) + 1
    assert f"{path}, line {line}" in body["message"], body
    raw_connect(b, V5, 0, username="alice", password=b"alice-new")
    # SIGHUP with the bad file: logged, the node runs on with the old file.
    b.send_signal(signal.SIGHUP)
    b.wait_log("reload refused")
    assert b.alive
    raw_connect(b, V5, 0, username="alice", password=b"alice-new")
    # The connection made before all of this is still there.
    pub = b.client(uid("pub"), username="alice", password="alice-new")
    pub.publish("reload/t", b"still", qos=1)
    assert stay.expect_message().payload == b"still"


def test_sighup_without_authentication_does_not_stop_the_node(broker):
    broker.send_signal(signal.SIGHUP)
    broker.wait_log("SIGHUP")
    broker.check_alive()


@pytest.mark.parametrize("key,content,line", [
    ("password_file", "alice:$7$101$AAAA$AAAA\n", 1),
    ("password_file", "# ok\nbob:plain\n", 2),
    ("acl_file", "user a\ntopic readd\nfoo bar\n", 3),
])
def test_a_malformed_file_stops_the_start_naming_file_and_line(broker_factory, tmp_path, key,
                                                               content, line):
    path = tmp_path / "bad-file"
    path.write_text(content)
    b = broker_factory(config={"authentication": {key: str(path)}}, start=False)
    assert b.wait_exit(10) == 2
    assert f"authentication.{key}: {path}, line {line}:" in b.log(), b.tail(5)


def test_missing_password_file_stops_the_start(broker_factory, tmp_path):
    path = tmp_path / "nope"
    b = broker_factory(config={"authentication": {"password_file": str(path)}}, start=False)
    assert b.wait_exit(10) == 2
    assert f"authentication.password_file: {path}: cannot read it" in b.log()


def user_path(user_id: str) -> str:
    return USERS + "/" + urllib.parse.quote(user_id, safe="")


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_builtin_database_users_over_the_api(broker_factory, version):
    b = auth_broker(broker_factory, built_in_database=True, allow_anonymous=False)
    v = V5 if version == 5 else V311
    bad = BAD_USER_OR_PASSWORD[version]
    raw_connect(b, v, bad, username="u1", password=b"p1")
    code, body, _ = api(b, "POST", USERS, {"user_id": "u1", "password": "p1"})
    assert (code, body) == (201, {"user_id": "u1", "is_superuser": False})
    assert api(b, "POST", USERS, {"user_id": "u1", "password": "x"})[0] == 409
    code, body, _ = api(b, "POST", USERS, {"user_id": "u2", "password": "p2", "is_superuser": True})
    assert code == 201
    code, body, _ = api(b, "POST", USERS, {"user_id": "u3"})
    assert code == 400 and "password" in body["message"], body
    raw_connect(b, v, 0, username="u1", password=b"p1")
    raw_connect(b, v, bad, username="u1", password=b"p2")
    # Listed and read without passwords.
    code, body, _ = api(b, "GET", USERS + "?page=1&limit=1")
    assert code == 200
    assert body["data"] == [{"user_id": "u1", "is_superuser": False}]
    assert body["meta"] == {"page": 1, "limit": 1, "count": 2, "hasnext": True}
    code, body, _ = api(b, "GET", user_path("u2"))
    assert (code, body) == (200, {"user_id": "u2", "is_superuser": True})
    # Changed: the new password works for new connections, the old one no more.
    code, body, _ = api(b, "PUT", user_path("u1"), {"password": "p1-new"})
    assert (code, body) == (200, {"user_id": "u1", "is_superuser": False})
    raw_connect(b, v, bad, username="u1", password=b"p1")
    raw_connect(b, v, 0, username="u1", password=b"p1-new")
    # Deleted.
    code, _, _ = api(b, "DELETE", user_path("u1"))
    assert code == 204
    assert api(b, "GET", user_path("u1"))[0] == 404
    assert api(b, "DELETE", user_path("u1"))[0] == 404
    raw_connect(b, v, bad, username="u1", password=b"p1-new")
    # Stored hashed under node.data_dir, never in clear.
    stored = (b.workdir / "data" / "authn" / "users.json").read_text()
    assert '"p2"' not in stored and '"password"' not in stored
    assert "$7$4096$" in stored and "u2" in stored


def test_builtin_database_survives_a_restart_and_order_with_a_password_file(broker_factory,
                                                                           tmp_path):
    """The password file is asked first; a user it does not have is looked up in the
    database."""
    path = password_file(tmp_path)
    cfg = {"authentication": {"built_in_database": True, "password_file": str(path)}}
    b = broker_factory(config=cfg)
    api(b, "POST", USERS, {"user_id": "alice", "password": "db-pw"})
    api(b, "POST", USERS, {"user_id": "erin", "password": "erin-pw"})
    raw_connect(b, V5, 0, username="alice", password=b"alice-pw")
    raw_connect(b, V5, 0x86, username="alice", password=b"db-pw")
    raw_connect(b, V5, 0, username="erin", password=b"erin-pw")
    b.stop()
    b2 = broker_factory(config={**cfg, "node": {"data_dir": str(b.workdir / "data")}})
    raw_connect(b2, V5, 0, username="erin", password=b"erin-pw")


def test_builtin_database_api_is_404_when_disabled(broker):
    code, body, _ = api(broker, "GET", USERS)
    assert code == 404 and "built_in_database" in body["message"]


def connack_from(source_ip: str, port: int, user: str, password: bytes) -> bytes:
    """A v3.1.1 CONNECT from `source_ip`; the 4 CONNACK bytes."""
    import mqttraw
    with socket.create_connection(("127.0.0.1", port), timeout=10,
                                  source_address=(source_ip, 0)) as s:
        s.sendall(mqttraw.connect(make_uid("ip"), version=V311, username=user, password=password))
        got = b""
        while len(got) < 4:
            chunk = s.recv(4 - len(got))
            if not chunk:
                break
            got += chunk
        return got


def test_200_wrong_passwords_do_not_disturb_other_clients(broker_factory, tmp_path, uid):
    """200 wrong-password CONNECTs from one address, 20 at a time, while a connected pair
    keeps exchanging QoS 1 messages promptly; the address is throttled after
    AUTHN_FAILURES_PER_IP_MAX failures (its correct logins refused too, until the window
    ends), another address logs in at once; every failure is counted."""
    b = auth_broker(broker_factory, password_file=password_file(tmp_path))
    sub = b.client(uid("sub"), username="alice", password="alice-pw")
    sub.subscribe("busy/t", qos=1)
    pub = b.client(uid("pub"), username="bob", password="bob-pw")
    codes: list[bytes] = []
    lock = threading.Lock()

    def attacker(n: int):
        for _ in range(n):
            got = connack_from("127.0.0.1", b.listen_port, "alice", b"guess")
            with lock:
                codes.append(got)

    threads = [threading.Thread(target=attacker, args=(10,)) for _ in range(20)]
    for t in threads:
        t.start()
    worst = 0.0
    sent = 0
    during: tuple[bytes, bytes] | None = None
    while any(t.is_alive() for t in threads) or sent < 20:
        t0 = time.monotonic()
        pub.publish("busy/t", f"m{sent}".encode(), qos=1)
        assert sub.expect_message(timeout=5).payload == f"m{sent}".encode()
        worst = max(worst, time.monotonic() - t0)
        sent += 1
        with lock:
            throttled_now = len(codes) >= 40
        if throttled_now and during is None:
            # Throttled: the attacked address is refused even with the right password;
            # another address logs in at once.
            during = (connack_from("127.0.0.1", b.listen_port, "alice", b"alice-pw"),
                      connack_from("127.0.0.2", b.listen_port, "alice", b"alice-pw"))
    for t in threads:
        t.join()
    assert len(codes) == 200
    assert all(c == b"\x20\x02\x00\x04" for c in codes), set(codes)
    assert worst < 1.0, f"a round trip took {worst:.3f}s during the attack"
    assert during == (b"\x20\x02\x00\x04", b"\x20\x02\x00\x00"), during
    text = urllib.request.urlopen(f"http://127.0.0.1:{b.api_port}/api/v5/prometheus/stats").read()
    failures = int(text.split(b"\nringmq_authentication_failures_total ")[1].split(b"\n")[0])
    assert failures >= 201
    log = b.log()
    assert "authentication failed" in log and "guess" not in log
