"""A broker with TLS, WebSocket and WebSocket-over-TLS listeners besides TCP,
for tests of clients on those transports (MQTT.js, the load generator).

    b, ports = start_with_transports(broker_factory, pki, ("ssl", "ws", "wss"))
    ports["ws"]  -> the WebSocket listener's port (path WS_PATH)

ringmq gets EMQX-shaped listener tables (`[listeners.ssl.default]`, ...);
under RINGMQ_TEST_BROKER=mosquitto the same listeners become mosquitto.conf
`listener` blocks (`protocol websockets`, `cafile`/`certfile`/`keyfile`),
so the tests can be checked against a reference broker.
"""
from __future__ import annotations

import socket
import time

from pki import Pki
from conftest import BROKER_KIND, deep_merge, free_port

WS_PATH = "/mqtt"


def ringmq_listeners(ports: dict[str, int], pki: Pki, verify_peer: bool = False) -> dict:
    ssl_options = {
        "certfile": str(pki.cert),
        "keyfile": str(pki.key),
        "cacertfile": str(pki.cacert),
        "verify": "verify_peer" if verify_peer else "verify_none",
    }
    if verify_peer:
        ssl_options["fail_if_no_peer_cert"] = True
    out: dict = {}
    for kind, port in ports.items():
        table: dict = {"bind": f"127.0.0.1:{port}"}
        if kind in ("ws", "wss"):
            table["websocket"] = {"mqtt_path": WS_PATH}
        if kind in ("ssl", "wss"):
            table["ssl_options"] = dict(ssl_options)
        out[kind] = {"default": table}
    return {"listeners": out}


# Debian's mosquitto 2.0.11 fails to open a websockets listener with TLS
# ("Unable to create websockets listener"): under mosquitto these kinds are
# left out and the tests that need them skip.
MOSQUITTO_LACKS = frozenset({"wss"})


def mosquitto_listeners(ports: dict[str, int], pki: Pki, verify_peer: bool = False) -> str:
    # As root, mosquitto drops to user `mosquitto` before it reads the
    # certificate files, which sit in root's 0700 pytest directory.
    lines = ["user root"]
    for kind, port in ports.items():
        lines.append(f"listener {port} 127.0.0.1")
        if kind in ("ws", "wss"):
            lines.append("protocol websockets")
        if kind in ("ssl", "wss"):
            lines += [f"cafile {pki.cacert}", f"certfile {pki.cert}", f"keyfile {pki.key}"]
            if verify_peer:
                lines.append("require_certificate true")
    return "\n".join(lines) + "\n"


def start_with_transports(broker_factory, pki: Pki, kinds=("ssl", "ws", "wss"),
                          config: dict | None = None, verify_peer: bool = False, **kw):
    """A started broker with a TCP listener plus one listener of each of
    `kinds` ("ssl", "ws", "wss"); returns (broker, {kind: port}). Under
    mosquitto the kinds in MOSQUITTO_LACKS are missing from the ports.
    `verify_peer`: TLS listeners require a client certificate signed by the CA."""
    if BROKER_KIND == "mosquitto":
        kinds = [k for k in kinds if k not in MOSQUITTO_LACKS]
    ports = {kind: free_port() for kind in kinds}
    b = broker_factory(config=deep_merge(ringmq_listeners(ports, pki, verify_peer), config), spawn=False, **kw)
    if b.kind == "mosquitto":
        with open(b.config_path, "a") as f:
            f.write(mosquitto_listeners(ports, pki, verify_peer))
    try:
        b.start()
    except BaseException:
        b.stopped = True
        raise
    # The TCP port answers first; wait for the others as well.
    deadline = time.monotonic() + 10
    for port in ports.values():
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{b.kind}: nothing listens on port {port}:\n" + b.tail(40))
                time.sleep(0.02)
    return b, ports
