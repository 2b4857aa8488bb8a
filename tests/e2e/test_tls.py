"""MQTT over TLS ([listeners.ssl.<name>]): paho and mosquitto_pub/sub with
certificates made by the test; verify_peer and fail_if_no_peer_cert; the
client certificate's CN as the user name; plain MQTT, a stalled handshake and
a refused certificate close only that connection; unreadable certificate
files stop the start naming the key."""
from __future__ import annotations

import socket
import ssl
import subprocess
import time

import pytest

import mqttraw
from clients import MqttClient
from conftest import free_port
from pki import make_pki, ssl_options
from test_authz import rules_toml

pytestmark = [pytest.mark.timeout(90), pytest.mark.ringmq_only("TLS listeners")]

NOT_AUTHORIZED = 0x87


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_broker(broker_factory, pki, start=True, **listener):
    port = free_port()
    ssl_listener = {"bind": f"127.0.0.1:{port}", "ssl_options": ssl_options(pki)}
    for k, v in listener.items():
        if k == "ssl_options":
            ssl_listener["ssl_options"] = {**ssl_listener["ssl_options"], **v}
        else:
            ssl_listener[k] = v
    b = broker_factory(config={"listeners": {"ssl": {"default": ssl_listener}}}, start=start)
    b.tls_port = port
    return b


def tls_client(b, pki, client_id, cn=None, trusted=True, **kw):
    tls = {"ca_certs": str(pki.cacert)}
    if cn is not None:
        cert, key = pki.client(cn, trusted)
        tls.update(certfile=str(cert), keyfile=str(key))
    c = MqttClient(b.tls_port, client_id, tls=tls, **kw)
    b.clients.append(c)
    return c


def assert_round_trip(publisher, subscriber, topic, payload):
    subscriber.subscribe(topic, qos=1)
    publisher.publish(topic, payload, qos=1)
    m = subscriber.expect_message(topic=topic)
    assert m.payload == payload.encode()


@pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])
def test_paho_over_tls(broker_factory, pki, uid, version):
    b = tls_broker(broker_factory, pki)
    sub = tls_client(b, pki, uid("sub"), version=version)
    pub = tls_client(b, pki, uid("pub"), version=version)
    assert_round_trip(pub, sub, uid("tls/t"), "over tls")
    # The plain TCP listener still serves, and reaches the TLS subscriber.
    tcp = b.client(uid("tcp"))
    topic = uid("tls/mixed")
    sub.subscribe(topic, qos=1)
    tcp.publish(topic, "from tcp", qos=1)
    assert sub.expect_message(topic=topic).payload == b"from tcp"


def test_verify_peer_refuses_client_without_certificate(broker_factory, pki, uid):
    b = tls_broker(broker_factory, pki,
                   ssl_options={"verify": "verify_peer", "fail_if_no_peer_cert": True})
    good = tls_client(b, pki, uid("good"), cn="good-device")
    # No certificate: the handshake fails (the client may see it at the
    # handshake or at its first read, as TLS 1.3 verifies after Finished).
    with pytest.raises((ssl.SSLError, ConnectionError, OSError, AssertionError)):
        tls_client(b, pki, uid("nocert"))
    # A certificate from a CA the broker does not trust.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError, AssertionError)):
        tls_client(b, pki, uid("rogue"), cn="rogue", trusted=False)
    # The verified client kept working through both refusals.
    other = tls_client(b, pki, uid("other"), cn="other-device")
    assert_round_trip(good, other, uid("verified/t"), "still here")


def test_verify_peer_without_fail_if_no_peer_cert_admits_anonymous(broker_factory, pki, uid):
    b = tls_broker(broker_factory, pki,
                   ssl_options={"verify": "verify_peer", "fail_if_no_peer_cert": False})
    anonymous = tls_client(b, pki, uid("anon"))
    verified = tls_client(b, pki, uid("verified"), cn="dev")
    assert_round_trip(anonymous, verified, uid("t"), "both")
    # A certificate is still verified when one is presented.
    with pytest.raises((ssl.SSLError, ConnectionError, OSError, AssertionError)):
        tls_client(b, pki, uid("rogue"), cn="rogue", trusted=False)


def test_peer_cert_cn_becomes_the_username(broker_factory, pki, uid):
    """Only `users/${username}/#` is allowed: the CN decides, not the user
    name the client sends in CONNECT."""
    port = free_port()
    b = broker_factory(config={
        "listeners": {"ssl": {"default": {
            "bind": f"127.0.0.1:{port}",
            "peer_cert_as_username": "cn",
            "ssl_options": ssl_options(pki, "verify_peer", True)}}},
        "authorization": {"no_match": "deny"},
    }, spawn=False)
    b.config_path.write_text(b.config_path.read_text() + rules_toml(
        [{"permission": "allow", "action": "all", "topics": ["users/${username}/#"]}]))
    b.start()
    b.tls_port = port
    c = tls_client(b, pki, uid("dev"), cn="device-7", username="mallory", password="x")
    assert c.subscribe("users/device-7/#", qos=1) == [1]
    # The name the client claimed is not its user name.
    assert c.subscribe("users/mallory/#", qos=1, check=False) == [NOT_AUTHORIZED]
    c.publish("users/device-7/temp", "21", qos=1)
    assert c.expect_message(topic="users/device-7/temp").payload == b"21"
    info = c.publish("users/mallory/temp", "x", qos=1, wait=False)
    info.wait_for_publish(5)
    assert c.puback_rc[info.mid] == NOT_AUTHORIZED


def test_mosquitto_clients_with_certificates(broker_factory, pki, uid):
    b = tls_broker(broker_factory, pki,
                   ssl_options={"verify": "verify_peer", "fail_if_no_peer_cert": True})
    cert, key = pki.client("mosquitto-cli")
    tls_args = ["--cafile", str(pki.cacert), "--cert", str(cert), "--key", str(key)]
    topic = uid("cli/t")
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.tls_port), *tls_args,
                            "-t", topic, "-C", "1", "-q", "1", "-i", uid("msub")],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 10
        out = ""
        while time.monotonic() < deadline and sub.poll() is None:
            pub = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.tls_port),
                                  *tls_args, "-t", topic, "-m", "hello over tls", "-q", "1",
                                  "-i", uid("mpub")], capture_output=True, text=True, timeout=10)
            assert pub.returncode == 0, pub.stderr
            try:
                out, err = sub.communicate(timeout=1)
            except subprocess.TimeoutExpired:
                continue
        assert sub.returncode == 0, sub.stderr.read() if sub.stderr else ""
        assert out.strip() == "hello over tls"
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait()
    # Without a client certificate, mosquitto_pub is refused.
    refused = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.tls_port),
                              "--cafile", str(pki.cacert), "-t", topic, "-m", "x",
                              "-i", uid("nocert")], capture_output=True, text=True, timeout=10)
    assert refused.returncode != 0


def read_until_closed(sock: socket.socket, timeout: float) -> tuple[bytes, float]:
    """Reads until EOF or reset; (bytes read, seconds it took)."""
    start = time.monotonic()
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            chunk = sock.recv(4096)
        except (ConnectionResetError, BrokenPipeError):
            break
        if not chunk:
            break
        data += chunk
    return data, time.monotonic() - start


def test_plain_mqtt_to_tls_port_closes_only_that_connection(broker_factory, pki, uid):
    b = tls_broker(broker_factory, pki)
    sub = tls_client(b, pki, uid("sub"))
    pub = tls_client(b, pki, uid("pub"))
    topic = uid("t")
    sub.subscribe(topic, qos=1)
    with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as s:
        s.sendall(mqttraw.connect(uid("plain")))
        data, _ = read_until_closed(s, 5)
    # Whatever came back (a TLS alert at most) is no CONNACK.
    assert not data.startswith(b"\x20"), data
    assert b.alive
    pub.publish(topic, "still up", qos=1)
    assert sub.expect_message(topic=topic).payload == b"still up"


def test_handshake_timeout_closes_a_silent_connection(broker_factory, pki, uid):
    b = tls_broker(broker_factory, pki, handshake_timeout="1s")
    with socket.create_connection(("127.0.0.1", b.tls_port), timeout=10) as silent:
        _, took = read_until_closed(silent, 10)
    assert 0.8 <= took < 5, took
    # A handshake that started and stalled (half a ClientHello) too.
    with socket.create_connection(("127.0.0.1", b.tls_port), timeout=10) as stalled:
        stalled.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        _, took = read_until_closed(stalled, 10)
    assert 0.8 <= took < 5, took
    c = tls_client(b, pki, uid("after"))
    assert c.is_connected()


@pytest.mark.parametrize("field", ["certfile", "keyfile", "cacertfile"])
def test_unreadable_certificate_file_stops_the_start(broker_factory, pki, tmp_path, field):
    bad = tmp_path / f"missing-{field}.pem"
    b = tls_broker(broker_factory, pki, start=False,
                   ssl_options={field: str(bad), "verify": "verify_peer"})
    b.stopped = True
    assert b.wait_exit(10) == 2
    log = b.log()
    assert f"listeners.ssl.default.ssl_options.{field}" in log, log
    assert str(bad) in log, log


def test_key_that_is_not_a_key_stops_the_start(broker_factory, pki, tmp_path):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    b = tls_broker(broker_factory, pki, start=False, ssl_options={"keyfile": str(garbage)})
    b.stopped = True
    assert b.wait_exit(10) == 2
    assert "listeners.ssl.default.ssl_options.keyfile" in b.log(), b.log()


def test_tls_listener_from_environment(broker_factory, pki, uid, tmp_path):
    port = free_port()
    env = {
        "RINGMQ_LISTENERS__SSL__ENV__BIND": f"127.0.0.1:{port}",
        "RINGMQ_LISTENERS__SSL__ENV__SSL_OPTIONS__CERTFILE": str(pki.cert),
        "RINGMQ_LISTENERS__SSL__ENV__SSL_OPTIONS__KEYFILE": str(pki.key),
        "RINGMQ_LISTENERS__SSL__ENV__HANDSHAKE_TIMEOUT": "5s",
    }
    b = broker_factory(env=env)
    b.tls_port = port
    c = tls_client(b, pki, uid("env"))
    assert_round_trip(c, c, uid("env/t"), "from env")
    # An env value naming a missing file stops the start naming the key
    # and the variable.
    bad = dict(env, RINGMQ_LISTENERS__SSL__ENV__SSL_OPTIONS__CERTFILE=str(tmp_path / "nope.pem"))
    b2 = broker_factory(env=bad, start=False)
    b2.stopped = True
    assert b2.wait_exit(10) == 2
    log = b2.log()
    assert "listeners.ssl.env.ssl_options.certfile" in log, log
    assert "RINGMQ_LISTENERS__SSL__ENV__SSL_OPTIONS__CERTFILE" in log, log


def rss_kib(pid: int) -> int:
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


@pytest.mark.slow
def test_idle_tls_connection_memory(broker_factory, pki, uid):
    """Bytes of broker memory per idle MQTT-over-TLS connection: under 8 KiB
    (issue 12's goal; measured 5.0 KiB: rustls's unbuffered API lets the
    connection release its record buffer while idle). Memory, not time: a
    busy machine does not move it."""
    b = tls_broker(broker_factory, pki)
    ctx = ssl.create_default_context(cafile=str(pki.cacert))
    count = 400

    def open_idle() -> ssl.SSLSocket:
        s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", b.tls_port), timeout=10),
                            server_hostname="localhost")
        s.sendall(mqttraw.connect(uid("idle"), keepalive=0))
        assert s.recv(64)[:1] == b"\x20"
        return s

    # Warm up (allocator arenas, the shards' scratch buffers), then measure.
    warm = [open_idle() for _ in range(50)]
    time.sleep(1.5)
    before = rss_kib(b.proc.pid)
    conns = [open_idle() for _ in range(count)]
    # The shards' tick hands freed memory back (mi_collect) every 100 ms.
    time.sleep(1.5)
    after = rss_kib(b.proc.pid)
    per_conn_b = (after - before) * 1024 / count
    print(f"idle TLS connection: {per_conn_b:.0f} B each ({count} connections)")
    assert per_conn_b < 8 * 1024, per_conn_b
    for s in conns + warm:
        s.close()
