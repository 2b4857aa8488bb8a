"""MQTT.js (npm `mqtt`) against the broker: in Node over ws:// and wss://, and
in a web page in headless Chromium (Debian's `chromium`, driven by
playwright-core) over ws://.

The Node scripts are in tests/js/ (`npm ci` there installs MQTT.js and
playwright-core from its package-lock.json; scripts/install-test-deps.sh does
it, with Node.js and Chromium from Debian). Certificates are made per test
module by tests/e2e/pki.py.
"""
from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import subprocess
import threading
import urllib.parse
from pathlib import Path

import pytest

from pki import make_pki
from conftest import REPO, free_port, make_uid
from transports import WS_PATH, start_with_transports

pytestmark = pytest.mark.timeout(120)

JS_DIR = REPO / "tests" / "js"
NODE = shutil.which("node") or "/usr/bin/node"
CHROMIUM = os.environ.get("CHROMIUM_BIN") or shutil.which("chromium") or "/usr/bin/chromium"
MQTT_BUNDLE = JS_DIR / "node_modules" / "mqtt" / "dist" / "mqtt.min.js"


def require_js_deps(browser: bool = False) -> None:
    """A missing dependency is a failure that says how to install it, not a skip."""
    missing = []
    if not Path(NODE).exists():
        missing.append("node (Debian package nodejs)")
    if not MQTT_BUNDLE.exists() or not (JS_DIR / "node_modules" / "playwright-core").exists():
        missing.append("tests/js/node_modules (npm ci in tests/js)")
    if browser and not Path(CHROMIUM).exists():
        missing.append("chromium (Debian package chromium)")
    if missing:
        pytest.fail("missing " + ", ".join(missing) + ": run scripts/install-test-deps.sh",
                    pytrace=False)


def run_node(script: str, args: dict, timeout: float = 60) -> tuple[int, dict, str]:
    """Runs tests/js/<script> with `args` as its JSON argument; returns (exit
    code, its JSON line, its stderr)."""
    p = subprocess.run([NODE, str(JS_DIR / script), json.dumps(args)], cwd=JS_DIR,
                       capture_output=True, text=True, timeout=timeout,
                       env={**os.environ, "CHROMIUM_BIN": CHROMIUM})
    lines = [line for line in p.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{script} printed no JSON (exit {p.returncode}):\n{p.stdout}\n{p.stderr}"
    return p.returncode, json.loads(lines[-1]), p.stderr


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("mqttjs"))


def wss_port(ports: dict[str, int]) -> int:
    if "wss" not in ports:
        pytest.skip("Debian's mosquitto cannot serve WebSocket over TLS (ringmq can)")
    return ports["wss"]


@pytest.fixture
def js_broker(broker_factory, pki):
    """A broker with ws and wss listeners besides TCP: (broker, {kind: port})."""
    require_js_deps()
    return start_with_transports(broker_factory, pki, ("ws", "wss"))


@pytest.mark.parametrize("proto", [4, 5], ids=["v311", "v5"])
def test_mqttjs_node_over_ws(js_broker, proto):
    b, ports = js_broker
    topic = make_uid("js/ws")
    payload = f"hello over ws {make_uid('p')}"
    rc, out, err = run_node("node_client.mjs", {
        "url": f"ws://127.0.0.1:{ports['ws']}{WS_PATH}", "topic": topic, "payload": payload,
        "clientId": make_uid("js-ws"), "protocolVersion": proto})
    assert rc == 0 and out["ok"], (out, err, b.tail(30))
    assert (out["topic"], out["payload"], out["qos"]) == (topic, payload, 1)
    assert out["connack"]["reasonCode"] == 0
    b.check_alive()


def test_mqttjs_node_over_wss_trusting_the_test_ca(js_broker, pki):
    b, ports = js_broker
    topic = make_uid("js/wss")
    payload = f"hello over wss {make_uid('p')}"
    rc, out, err = run_node("node_client.mjs", {
        "url": f"wss://127.0.0.1:{wss_port(ports)}{WS_PATH}", "topic": topic, "payload": payload,
        "clientId": make_uid("js-wss"), "protocolVersion": 5, "ca": str(pki.cacert)})
    assert rc == 0 and out["ok"], (out, err, b.tail(30))
    assert (out["topic"], out["payload"]) == (topic, payload)


def test_mqttjs_node_over_wss_refuses_an_untrusted_server(js_broker):
    """Without the test CA, Node's TLS refuses the server certificate: the
    wss listener really serves TLS with the configured certificate."""
    b, ports = js_broker
    rc, out, err = run_node("node_client.mjs", {
        "url": f"wss://127.0.0.1:{wss_port(ports)}{WS_PATH}", "topic": "t", "payload": "p",
        "clientId": make_uid("js-untrusted"), "timeoutMs": 8000})
    assert rc == 1 and not out["ok"], out
    assert "certificate" in out["error"].lower() or "cert" in str(out.get("code", "")).lower(), out
    b.check_alive()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep pytest's output clean
        pass


@pytest.fixture
def page_server():
    """tests/js over HTTP on a free loopback port (the page and MQTT.js's bundle)."""
    port = free_port()
    handler = functools.partial(_QuietHandler, directory=str(JS_DIR))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{port}"
    srv.shutdown()
    srv.server_close()


def test_chromium_page_with_mqttjs_over_ws(js_broker, page_server, tmp_path):
    """A web page in headless Chromium loads MQTT.js's browser bundle,
    connects over ws://, subscribes, publishes and lists what it receives:
    its own message, then one published by a paho client over TCP. The test
    reads the page's text; a paho subscriber on TCP sees the page's message."""
    require_js_deps(browser=True)
    b, ports = js_broker
    topic = make_uid("js/page")
    from_page = f"hello from chromium {make_uid('p')}"
    from_tcp = f"hello from tcp {make_uid('p')}"
    watcher = b.client(make_uid("tcp-watch"))
    watcher.subscribe(topic, qos=1)
    query = urllib.parse.urlencode({
        "broker": f"ws://127.0.0.1:{ports['ws']}{WS_PATH}", "topic": topic,
        "payload": from_page, "client_id": make_uid("page")})
    shot = tmp_path / "page.png"
    args = {"pageUrl": f"{page_server}/page/index.html?{query}", "expect": 2,
            "timeoutMs": 40000, "screenshot": str(shot)}
    proc = subprocess.Popen([NODE, str(JS_DIR / "browser_page.mjs"), json.dumps(args)],
                            cwd=JS_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CHROMIUM_BIN": CHROMIUM})
    try:
        # The page subscribes before it publishes: once its message is here,
        # a message from TCP reaches it too.
        m = watcher.expect_message(timeout=45)
        assert (m.topic, m.payload.decode()) == (topic, from_page)
        pub = b.client(make_uid("tcp-pub"))
        pub.publish(topic, from_tcp.encode(), qos=1)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"browser_page.mjs printed no JSON (exit {proc.returncode}):\n{stdout}\n{stderr}"
    out = json.loads(lines[-1])
    assert proc.returncode == 0 and out["ok"], (out, stderr, b.tail(30))
    assert out["messages"] == [f"{topic}: {from_page}", f"{topic}: {from_tcp}"], out
    assert out["status"] == "received 2"
    assert from_page in out["text"] and from_tcp in out["text"]
    assert shot.exists() and shot.stat().st_size > 0
