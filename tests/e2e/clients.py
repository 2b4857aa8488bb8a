"""Blocking wrappers around paho-mqtt 2.x (CallbackAPIVersion.VERSION2).

Every call that waits takes a short timeout and fails the test with a message
saying what did not arrive. The paho network loop runs in its own thread;
results cross over through queues and events.
"""
from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

DEFAULT_TIMEOUT = 5.0


def _camel(snake: str) -> str:
    return "".join(w.capitalize() for w in snake.split("_"))


def _snake(name: str) -> str:
    return name.lower().replace(" ", "_")


def make_props(packet_type: int, props: dict[str, Any] | None) -> Properties | None:
    """Build paho Properties from snake_case names (the same names mqttraw uses)."""
    if not props:
        return None
    p = Properties(packet_type)
    for k, v in props.items():
        setattr(p, _camel(k), v)
    return p


def props_dict(p: Properties | None) -> dict[str, Any]:
    """paho Properties -> dict with snake_case names (only the ones present)."""
    if p is None:
        return {}
    out = {}
    for name in p.names:
        attr = name.replace(" ", "")
        if hasattr(p, attr):
            out[_snake(name)] = getattr(p, attr)
    return out


@dataclass
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    mid: int
    props: dict = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.payload.decode()


class MqttClient:
    """A paho client with blocking helpers. version: 4 (3.1.1) or 5."""

    def __init__(self, port: int, client_id: str = "", version: int = 5, clean: bool = True,
                 keepalive: int = 60, session_expiry: int | None = None,
                 props: dict | None = None, will: dict | None = None,
                 username: str | None = None, password: str | None = None,
                 connect: bool = True, expect_rc: int | None = 0, manual_ack: bool = False,
                 host: str = "127.0.0.1", timeout: float = DEFAULT_TIMEOUT,
                 max_inflight: int = 20, transport: str = "tcp", ws_path: str = "/mqtt",
                 tls: dict | None = None):
        """transport "websockets" speaks MQTT over WebSocket at `ws_path`; `tls`
        (ca_certs=, certfile=, keyfile=) wraps the connection in TLS."""
        self.port, self.host = port, host
        self.client_id = client_id
        self.version = version
        self.clean = clean
        self.keepalive = keepalive
        self.timeout = timeout
        self.connect_props = dict(props or {})
        if session_expiry is not None:
            self.connect_props["session_expiry_interval"] = session_expiry
        kwargs: dict[str, Any] = dict(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
            transport=transport,
        )
        if version != 5:
            kwargs["clean_session"] = clean
        self.c = mqtt.Client(**kwargs)
        self.c.max_inflight_messages_set(max_inflight)
        if transport == "websockets":
            self.c.ws_set_options(path=ws_path)
        if tls is not None:
            self.c.tls_set(**tls)
        if username is not None:
            self.c.username_pw_set(username, password)
        if will is not None:
            self.c.will_set(will["topic"], will.get("payload", b""), will.get("qos", 0),
                            will.get("retain", False),
                            make_props(PacketTypes.WILLMESSAGE, will.get("props")))
        self.messages: queue.Queue[Msg] = queue.Queue()
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._disconnected = threading.Event()
        self._acks: dict[int, tuple[list[int], dict]] = {}
        self._ack_cv = threading.Condition(self._lock)
        self.puback_rc: dict[int, int] = {}
        self.connack: tuple[bool, int, dict] | None = None
        self.session_present: bool | None = None
        self.connack_rc: int | None = None
        self.connack_props: dict = {}
        self.disconnect_rc: int | None = None
        self.disconnect_from_server: bool | None = None
        self.disconnect_props: dict = {}
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = self._on_disconnect
        self.c.on_message = self._on_message
        self.c.on_subscribe = self._on_suback
        self.c.on_unsubscribe = self._on_suback
        self.c.on_publish = self._on_publish
        self._loop_started = False
        if connect:
            self.connect(expect_rc=expect_rc)

    # -- callbacks (paho thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self.session_present = bool(flags.session_present)
        self.connack_rc = reason_code.value if isinstance(reason_code, ReasonCode) else int(reason_code)
        self.connack_props = props_dict(properties)
        self.connack = (self.session_present, self.connack_rc, self.connack_props)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.disconnect_rc = reason_code.value if isinstance(reason_code, ReasonCode) else int(reason_code)
        self.disconnect_from_server = bool(getattr(flags, "is_disconnect_packet_from_server", False))
        self.disconnect_props = props_dict(properties)
        self._disconnected.set()
        self._connected.set()  # wake a connect() waiting on a refused CONNACK

    def _on_message(self, client, userdata, m):
        self.messages.put(Msg(m.topic, bytes(m.payload), m.qos, bool(m.retain), bool(m.dup), m.mid,
                              props_dict(getattr(m, "properties", None))))

    def _on_suback(self, client, userdata, mid, reason_code_list, properties):
        with self._ack_cv:
            rcs = [r.value if isinstance(r, ReasonCode) else int(r) for r in (reason_code_list or [])]
            self._acks[mid] = (rcs, props_dict(properties))
            self._ack_cv.notify_all()

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self.puback_rc[mid] = reason_code.value if isinstance(reason_code, ReasonCode) else int(reason_code)

    # -- connection
    def connect(self, expect_rc: int | None = 0, timeout: float | None = None):
        self._connected.clear()
        self._disconnected.clear()
        props = make_props(PacketTypes.CONNECT, self.connect_props) if self.version == 5 else None
        if self.version == 5:
            self.c.connect(self.host, self.port, self.keepalive, clean_start=self.clean, properties=props)
        else:
            self.c.connect(self.host, self.port, self.keepalive)
        if not self._loop_started:
            self.c.loop_start()
            self._loop_started = True
        if not self._connected.wait(timeout or self.timeout):
            raise AssertionError(f"client {self.client_id!r}: no CONNACK within {timeout or self.timeout}s")
        if expect_rc is not None:
            assert self.connack_rc == expect_rc, (
                f"client {self.client_id!r}: CONNACK rc {self.connack_rc}, expected {expect_rc}")
        return self.connack

    @property
    def assigned_client_id(self) -> str | None:
        return self.connack_props.get("assigned_client_identifier")

    def wait_disconnected(self, timeout: float | None = None) -> int:
        """Wait until the connection is gone; returns the reason code paho reports."""
        if not self._disconnected.wait(timeout or self.timeout):
            raise AssertionError(f"client {self.client_id!r} still connected after {timeout or self.timeout}s")
        return self.disconnect_rc

    def is_connected(self) -> bool:
        return self.c.is_connected()

    def disconnect(self, rc: int | None = None, props: dict | None = None, timeout: float | None = None):
        reason = ReasonCode(PacketTypes.DISCONNECT, identifier=rc) if (rc is not None and self.version == 5) else None
        if self.c.is_connected():
            self.c.disconnect(reasoncode=reason, properties=make_props(PacketTypes.DISCONNECT, props))
            self._disconnected.wait(timeout or self.timeout)
        self.stop()

    def stop(self):
        if self._loop_started:
            try:
                self.c.disconnect()
            except Exception:
                pass
            self.c.loop_stop()
            self._loop_started = False

    # -- subscribe / publish
    def _wait_ack(self, mid: int, what: str, timeout: float | None) -> tuple[list[int], dict]:
        deadline = time.monotonic() + (timeout or self.timeout)
        with self._ack_cv:
            while mid not in self._acks:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"client {self.client_id!r}: no {what} for mid {mid}")
                self._ack_cv.wait(left)
            return self._acks.pop(mid)

    def subscribe(self, topic: str | list, qos: int = 0, no_local: bool = False, rap: bool = False,
                  rh: int = 0, sub_id: int | None = None, props: dict | None = None,
                  timeout: float | None = None, check: bool = True) -> list[int]:
        """Subscribe and wait for SUBACK; returns the reason codes (granted QoS for 3.1.1).

        `topic` may be a list of filters (all with the same options). With `check`,
        every reason code must be a success (< 0x80).
        """
        topics = topic if isinstance(topic, list) else [topic]
        if self.version == 5:
            opts = SubscribeOptions(qos=qos, noLocal=no_local, retainAsPublished=rap, retainHandling=rh)
            p = dict(props or {})
            if sub_id is not None:
                p["subscription_identifier"] = sub_id
            rc, mid = self.c.subscribe([(t, opts) for t in topics],
                                       properties=make_props(PacketTypes.SUBSCRIBE, p))
        else:
            rc, mid = self.c.subscribe([(t, qos) for t in topics])
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"subscribe failed locally: {rc}"
        rcs, _ = self._wait_ack(mid, "SUBACK", timeout)
        if check:
            assert all(r < 0x80 for r in rcs), f"SUBACK refused {topics}: {rcs}"
        return rcs

    def unsubscribe(self, topic: str | list, timeout: float | None = None) -> list[int]:
        topics = topic if isinstance(topic, list) else [topic]
        rc, mid = self.c.unsubscribe(topics)
        assert rc == mqtt.MQTT_ERR_SUCCESS, f"unsubscribe failed locally: {rc}"
        rcs, _ = self._wait_ack(mid, "UNSUBACK", timeout)
        return rcs

    def publish(self, topic: str, payload: bytes | str = b"", qos: int = 0, retain: bool = False,
                props: dict | None = None, wait: bool = True, timeout: float | None = None):
        """Publish; with `wait`, block until PUBACK/PUBCOMP (QoS>0) or the write (QoS 0)."""
        info = self.c.publish(topic, payload, qos, retain,
                              properties=make_props(PacketTypes.PUBLISH, props) if self.version == 5 else None)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, f"publish to {topic!r} failed locally: {info.rc}"
        if wait:
            info.wait_for_publish(timeout or self.timeout)
            assert info.is_published(), f"client {self.client_id!r}: publish to {topic!r} qos {qos} not acknowledged"
        return info

    # -- receiving
    def expect_message(self, timeout: float | None = None, topic: str | None = None) -> Msg:
        try:
            m = self.messages.get(timeout=timeout or self.timeout)
        except queue.Empty:
            raise AssertionError(f"client {self.client_id!r}: no message within {timeout or self.timeout}s") from None
        if topic is not None:
            assert m.topic == topic, f"expected a message on {topic!r}, got {m}"
        return m

    def expect_messages(self, n: int, timeout: float | None = None) -> list[Msg]:
        """Wait for n messages in total (the timeout covers all of them)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        got = []
        while len(got) < n:
            left = deadline - time.monotonic()
            try:
                got.append(self.messages.get(timeout=max(0.001, left)))
            except queue.Empty:
                raise AssertionError(
                    f"client {self.client_id!r}: got {len(got)} of {n} messages: "
                    f"{[(m.topic, m.payload[:30]) for m in got][:20]}") from None
        return got

    def expect_no_message(self, timeout: float = 0.5) -> None:
        try:
            m = self.messages.get(timeout=timeout)
        except queue.Empty:
            return
        raise AssertionError(f"client {self.client_id!r}: unexpected message {m}")

    def drain(self, settle: float = 0.0) -> list[Msg]:
        if settle:
            time.sleep(settle)
        got = []
        while True:
            try:
                got.append(self.messages.get_nowait())
            except queue.Empty:
                return got
