"""End-to-end fixtures: real broker processes on free loopback ports, real clients.

Broker under test: `target/release/ringmq` (or $RINGMQ_BIN). With
RINGMQ_TEST_BROKER=mosquitto the same tests run against the Debian mosquitto
binary (used to check that the tests themselves are right); tests marked
`ringmq_only` are skipped there.

Fixtures
  broker          a running broker with the default config (function scope)
  broker_factory  broker_factory(config={...}, env={...}, log_level="debug", start=True)
  version         parametrises a test over MQTT 3.1.1 (4) and 5
  uid             uid("name") -> a name unique in this run
See Broker for the helpers on a running broker (client(), raw(), shard_of(), ...).
"""
from __future__ import annotations

import itertools
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from clients import MqttClient
import mqttraw
from mqttraw import RawClient, V5

REPO = Path(__file__).resolve().parents[2]
BROKER_KIND = os.environ.get("RINGMQ_TEST_BROKER", "ringmq").strip().lower() or "ringmq"
IS_MOSQUITTO = BROKER_KIND == "mosquitto"
RINGMQ_BIN = Path(os.environ.get("RINGMQ_BIN", REPO / "target" / "release" / "ringmq"))
MOSQUITTO_BIN = os.environ.get("MOSQUITTO_BIN") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
READY_TIMEOUT = float(os.environ.get("RINGMQ_TEST_READY_TIMEOUT", "15"))

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
CONNECTED_LINE = "client connected"
# `shard=1`, `shard: 1` or JSON `"shard":1`; `client_id=x`, `client_id="x"` or `"client_id":"x"`.
SHARD_RE = re.compile(r"\bshard\"?\s*[=:]\s*\"?(\d+)")
CLIENT_ID_RE = re.compile(r"\bclient_id\"?\s*[=:]\s*(?:\"((?:[^\"\\]|\\.)*)\"|([^\s,}]+))")


def pytest_configure(config):
    config.addinivalue_line("markers", "ringmq_only(reason): needs a ringmq feature; skipped under mosquitto")
    config.addinivalue_line("markers", "slow: takes several seconds")


def pytest_report_header(config):
    target = MOSQUITTO_BIN if IS_MOSQUITTO else str(RINGMQ_BIN)
    return f"broker under test: {BROKER_KIND} ({target})"


def pytest_runtest_setup(item):
    m = item.get_closest_marker("ringmq_only")
    if m is not None and IS_MOSQUITTO:
        reason = m.args[0] if m.args else m.kwargs.get("reason", "ringmq-only feature")
        pytest.skip(f"ringmq only: {reason}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for b in getattr(item, "_brokers", []):
            # First and short: what a truncated report must still show.
            rep.sections.append((f"{b.kind} {b.name}: {b.state()}; notable log lines",
                                 b.notable()))
            if b.alive and b.kind == "ringmq":
                rep.sections.append((f"{b.name}: GET /api/v5/clients", b.clients_listing()))
            rep.sections.append((f"{b.kind} log {b.log_path} (last lines)", b.tail(150)))
            if b.alive:
                rep.sections.append((f"{b.kind} threads (gdb)", b.thread_stacks()))


# ---------------------------------------------------------------- helpers

_ports_given: set[int] = set()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (never 1883), never one this run gave
    out before: the kernel may hand a just-closed ephemeral port out again
    at once, and a broker's listener and API port must differ."""
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port != 1883 and port not in _ports_given:
            _ports_given.add(port)
            return port


_uid_counter = itertools.count(1)
_run_tag = f"{os.getpid() % 100000:05d}"


def make_uid(prefix: str = "t") -> str:
    return f"{prefix}-{_run_tag}-{next(_uid_counter)}"


def deep_merge(base: dict, extra: dict | None) -> dict:
    out = dict(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} as TOML")


def _is_table_array(v: Any) -> bool:
    return isinstance(v, list) and bool(v) and all(isinstance(x, dict) for x in v)


def to_toml(d: dict, prefix: str = "") -> str:
    """Minimal TOML writer: scalars first, then one [table] per nested dict and one
    [[table]] per dict in a list of dicts (arrays of tables)."""
    # None leaves a key out (the broker's default applies).
    lines = [f"{k} = {_toml_value(v)}" for k, v in d.items()
             if v is not None and not isinstance(v, dict) and not _is_table_array(v)]
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in d.items():
        if isinstance(v, dict):
            name = f"{prefix}.{k}" if prefix else k
            scalars = any(x is not None and not isinstance(x, dict) for x in v.values())
            if scalars or not v:
                out += f"\n[{name}]\n"
            out += to_toml(v, name)
    for k, v in d.items():
        if _is_table_array(v):
            name = f"{prefix}.{k}" if prefix else k
            for item in v:
                out += f"\n[[{name}]]\n" + to_toml(item, name)
    return out


def _broker_preexec():
    """Runs in the broker's child process before exec."""
    # Die with the test run: no broker outlives a killed pytest (PR_SET_PDEATHSIG = 1).
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)
    except Exception:
        pass
    # glommio wants locked memory for io_uring; raise the soft limit as far as the
    # hard limit allows and carry on if that fails.
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
    except (ValueError, OSError):
        pass


def default_ringmq_config(port: int, data_dir: str, shards: int, log_level: str,
                          api_port: int | None = None) -> dict:
    return {
        "node": {"name": "test@127.0.0.1", "shards": shards, "data_dir": data_dir},
        "listeners": {"tcp": {"default": {"bind": f"127.0.0.1:{port}", "max_connections": 100000}}},
        "mqtt": {
            "max_packet_size": 1048576,
            "max_inflight": 32,
            "max_mqueue_len": 1000,
            "max_session_expiry_interval": 7200,
            "max_topic_alias": 65535,
            "server_keepalive": 60,
            "retain_available": True,
            "shared_subscription": True,
            "wildcard_subscription": True,
        },
        "log": {"level": log_level},
        # A free port: brokers of one run (and other runs) must not share 18083.
        "api": {"bind": f"127.0.0.1:{api_port or free_port()}"},
    }


# ringmq key -> mosquitto.conf option, for the settings tests change.
MOSQUITTO_MAP = {
    "max_packet_size": "max_packet_size",
    "max_inflight": "max_inflight_messages",
    "max_mqueue_len": "max_queued_messages",
    "server_keepalive": "max_keepalive",
    "max_topic_alias": "max_topic_alias",
    "retain_available": "retain_available",
}


def mosquitto_config(port: int, cfg: dict, log_level: str) -> str:
    lines = [
        f"listener {port} 127.0.0.1",
        "allow_anonymous true",
        "persistence false",
        "log_dest stderr",
        "log_timestamp true",
        "connection_messages true",
    ]
    if log_level in ("debug", "trace"):
        lines.append("log_type all")
    else:
        lines += ["log_type error", "log_type warning", "log_type notice", "log_type information"]
    for key, opt in MOSQUITTO_MAP.items():
        if key in cfg.get("mqtt", {}):
            v = cfg["mqtt"][key]
            lines.append(f"{opt} {str(v).lower() if isinstance(v, bool) else v}")
    return "\n".join(lines) + "\n"


class Broker:
    """One broker process. Create through the broker / broker_factory fixtures."""

    def __init__(self, workdir: Path, config: dict | None = None, env: dict | None = None,
                 log_level: str = "info", shards: int = 2, port: int | None = None,
                 listen_port: int | None = None, kind: str = BROKER_KIND, name: str = "broker"):
        self.kind = kind
        self.name = name
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        # Where it will actually listen (differs when an env override moves the bind).
        self.listen_port = listen_port or self.port
        self.host = "127.0.0.1"
        self.env_extra = dict(env or {})
        self.log_path = self.workdir / f"{name}.log"
        self.proc: subprocess.Popen | None = None
        self.stopped = False
        self.clients: list = []
        data_dir = str(self.workdir / "data")
        self.config = deep_merge(default_ringmq_config(self.port, data_dir, shards, log_level), config)
        # The admin API's port (from api.bind; an env override is the test's to follow).
        self.api_port = int(str(self.config.get("api", {}).get("bind", ":18083")).rsplit(":", 1)[1])
        if kind == "mosquitto":
            self.config_path = self.workdir / f"{name}.mosquitto.conf"
            self.config_path.write_text(mosquitto_config(self.port, self.config, log_level))
            self.argv = [MOSQUITTO_BIN, "-c", str(self.config_path)]
        else:
            self.config_path = self.workdir / f"{name}.toml"
            self.config_path.write_text(to_toml(self.config))
            self.argv = [str(RINGMQ_BIN), "--config", str(self.config_path)]

    # -- process
    def spawn(self) -> "Broker":
        if self.kind != "mosquitto" and not RINGMQ_BIN.exists():
            pytest.fail(f"ringmq binary not found at {RINGMQ_BIN}: run `make build` "
                        f"(or set RINGMQ_BIN, or RINGMQ_TEST_BROKER=mosquitto)", pytrace=False)
        # Every RINGMQ_ variable is a config key to the broker (unknown ones
        # are errors), so the harness's own (RINGMQ_BIN, RINGMQ_TEST_*) and
        # any stray ones stay out; tests pass theirs through env_extra.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
        env.update({"NO_COLOR": "1", "RUST_BACKTRACE": "1"})
        env.pop("RUST_LOG", None)
        env.update(self.env_extra)
        self._log_file = open(self.log_path, "ab")
        # Where this start's lines begin (a restart appends to the same log).
        self._log_start = self._log_file.tell()
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                                     preexec_fn=_broker_preexec)
        return self

    def start(self, timeout: float = READY_TIMEOUT) -> "Broker":
        self.spawn()
        self.wait_ready(timeout)
        return self

    READY_LINE = b"ringmq ready: every shard listens"

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """A ringmq start is ready when this start logged that every shard
        listens: a TCP connect alone is no proof, since for tens of ms after
        a `kill -9` the dead broker's listeners (held by its io_uring until
        the kernel tears the ring down) still accept and then drop
        connections on the same port (docs/operations.md, "Readiness after a
        restart"). Then a TCP connect, as for Mosquitto."""
        deadline = time.monotonic() + timeout
        if self.kind == "ringmq":
            while not self._logged_ready():
                if self.proc.poll() is not None:
                    raise AssertionError(f"{self.kind} exited with {self.proc.returncode} before listening:\n"
                                         + self.tail(60))
                if time.monotonic() > deadline:
                    raise AssertionError(f"{self.kind} logged no {self.READY_LINE.decode()!r} after "
                                         f"{timeout}s:\n" + self.tail(60))
                time.sleep(0.02)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"{self.kind} exited with {self.proc.returncode} before listening:\n"
                                     + self.tail(60))
            try:
                with socket.create_connection((self.host, self.listen_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.02)
        raise AssertionError(f"{self.kind} not listening on {self.listen_port} after {timeout}s:\n" + self.tail(60))

    def _logged_ready(self) -> bool:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(self._log_start)
                return self.READY_LINE in f.read()
        except FileNotFoundError:
            return False

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the process to end (it is then not reported as having died)."""
        self.stopped = True
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{self.kind} still running {timeout}s later:\n" + self.tail(40)) from None

    def thread_stacks(self) -> str:
        """Every thread's backtrace of the running broker (for a failed test:
        where a shard that should have answered is waiting)."""
        gdb = shutil.which("gdb")
        if gdb is None:
            return "(gdb not installed)"
        try:
            out = subprocess.run(
                [gdb, "-p", str(self.proc.pid), "-batch", "-nx", "-ex", "thread apply all bt 30"],
                capture_output=True, text=True, timeout=60)
        except subprocess.TimeoutExpired:
            return "(gdb timed out)"
        lines = [l for l in out.stdout.splitlines() if l.startswith(("#", "Thread"))]
        return "\n".join(lines) or out.stderr[-2000:]

    def send_signal(self, sig: int) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT, signal.SIGKILL):
            self.stopped = True  # the test expects it to exit
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Signal the broker and wait for it; SIGKILL if it does not exit in time."""
        self.stopped = True
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            self._log_file.close()
            return self.proc.returncode
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log_file.close()
        return self.proc.returncode

    # -- logs
    def log(self) -> str:
        try:
            return ANSI.sub("", self.log_path.read_text(errors="replace"))
        except FileNotFoundError:
            return ""

    def tail(self, n: int = 100) -> str:
        lines = self.log().splitlines()
        return "\n".join(lines[-n:]) if lines else "(empty)"

    def notable(self, n: int = 30) -> str:
        """The log's warnings, errors, panics and stop lines (the last `n`):
        why a broker stopped listening, even when its tail is cut."""
        rx = re.compile(r" (WARN|ERROR) |panicked|stop|cannot|refus")
        lines = [l for l in self.log().splitlines() if rx.search(l)]
        return "\n".join(lines[-n:]) if lines else "(none)"

    def clients_listing(self) -> str:
        """The admin API's client list (whether a client the test waits on is
        connected, and where), or why it could not be had."""
        import base64
        import urllib.request
        req = urllib.request.Request(f"http://127.0.0.1:{self.api_port}/api/v5/clients?limit=20")
        req.add_header("Authorization", "Basic " + base64.b64encode(b"admin:public").decode())
        try:
            with urllib.request.urlopen(req, timeout=3) as resp:
                return resp.read().decode(errors="replace")[:3000]
        except Exception as e:  # a report, not a test: say what happened
            return f"(no answer: {e})"

    def state(self) -> str:
        if self.proc is None:
            return "not spawned"
        code = self.proc.poll()
        return "running" if code is None else f"exited with {code}"

    def wait_log(self, pattern: str, timeout: float = 5.0, count: int = 1) -> list[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            hits = [l for l in self.log().splitlines() if rx.search(l)]
            if len(hits) >= count:
                return hits
            if time.monotonic() > deadline:
                raise AssertionError(f"log has {len(hits)} of {count} lines matching {pattern!r}")
            time.sleep(0.02)

    def connected_shards(self) -> dict[str, list[int]]:
        """client_id -> shard of each `client connected` log line, in log order (ringmq debug log)."""
        out: dict[str, list[int]] = {}
        for line in self.log().splitlines():
            if CONNECTED_LINE not in line:
                continue
            s, c = SHARD_RE.search(line), CLIENT_ID_RE.search(line)
            if s and c:
                cid = c.group(1) if c.group(1) is not None else c.group(2)
                out.setdefault(cid, []).append(int(s.group(1)))
        return out

    def shard_of(self, client_id: str, nth: int = 1, timeout: float = 5.0) -> int:
        """Shard of the nth (1-based) connection of client_id, from the debug log."""
        deadline = time.monotonic() + timeout
        while True:
            shards = self.connected_shards().get(client_id, [])
            if len(shards) >= nth:
                return shards[nth - 1]
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"no '{CONNECTED_LINE}' log line (with shard= and client_id=) for connection {nth} "
                    f"of {client_id!r}; log tail:\n" + self.tail(20))
            time.sleep(0.02)

    # -- clients (closed at teardown)
    def client(self, client_id: str | None = None, version: int = 5, **kw) -> MqttClient:
        c = MqttClient(self.listen_port, make_uid("c") if client_id is None else client_id,
                       version=version, connect=False, **{k: v for k, v in kw.items()
                                                          if k not in ("connect", "expect_rc")})
        self.clients.append(c)
        if kw.get("connect", True):
            c.connect(expect_rc=kw.get("expect_rc", 0))
        return c

    def raw(self, version: int = V5, connect: str | None = None, **kw) -> RawClient:
        """A raw socket; with `connect=CLIENT_ID` also sends CONNECT (kw go to it) and checks CONNACK 0."""
        timeout = kw.pop("timeout", 5.0)
        rcvbuf = kw.pop("rcvbuf", None)
        try:
            r = RawClient(self.listen_port, version=version, timeout=timeout, rcvbuf=rcvbuf)
        except ConnectionRefusedError:
            # The broker answered wait_ready: say why it no longer listens.
            raise AssertionError(f"{self.kind} {self.name} refused a connection on "
                                 f"{self.listen_port} ({self.state()}):\n{self.notable()}") from None
        self.clients.append(r)
        if connect is not None:
            r.connect(connect, **kw)
        return r

    def check_alive(self) -> None:
        """Fail unless the process runs and a fresh pair of clients can exchange a QoS 1 message."""
        assert self.alive, f"{self.kind} died (exit {self.proc.returncode}):\n" + self.tail(60)
        topic = make_uid("alive")
        sub = self.raw(connect=make_uid("alive-sub"))
        sub.subscribe(topic, qos=1)
        pub = self.raw(connect=make_uid("alive-pub"))
        pub.publish(topic, b"ping", qos=1)
        p = sub.expect_publish()
        assert p.topic == topic and p.payload == b"ping"
        sub.ack(p)
        sub.disconnect()
        pub.disconnect()

    def close_clients(self) -> None:
        for c in self.clients:
            try:
                if isinstance(c, MqttClient):
                    c.stop()
                else:
                    c.close()
            except Exception:
                pass
        self.clients.clear()


# ---------------------------------------------------------------- fixtures

@pytest.fixture
def uid():
    return make_uid


@pytest.fixture(params=[4, 5], ids=["v311", "v5"])
def version(request):
    return request.param


@pytest.fixture
def broker_factory(request, tmp_path):
    """broker_factory(config=None, env=None, log_level="info", shards=2, start=True, ...) -> Broker.

    Every broker is stopped at teardown; a broker that died during the test
    (without the test stopping it) fails the test.
    """
    made: list[Broker] = []
    request.node._brokers = made

    def factory(config: dict | None = None, env: dict | None = None, log_level: str = "info",
                start: bool = True, spawn: bool = True, **kw) -> Broker:
        """start=True: wait until it listens; start=False: only spawn (for brokers expected
        to fail); spawn=False: only write the config (the test spawns it)."""
        b = Broker(tmp_path / f"b{len(made)}", config=config, env=env, log_level=log_level,
                   name=f"broker{len(made)}", **kw)
        made.append(b)
        if not spawn:
            return b
        try:
            if start:
                b.start()
            else:
                b.spawn()
        except BaseException:
            b.stopped = True  # reported once, here, not again as "died during the test"
            raise
        return b

    yield factory
    died = []
    for b in made:
        b.close_clients()
        if b.proc is not None and not b.stopped and b.proc.poll() is not None:
            died.append(b)
        b.stop(timeout=5)
    if died:
        pytest.fail("; ".join(f"{b.kind} {b.name} exited with {b.proc.returncode} during the test"
                              for b in died) + "\n" + died[0].tail(60), pytrace=False)


@pytest.fixture
def broker(broker_factory) -> Broker:
    return broker_factory()


@pytest.fixture
def debug_broker(broker_factory) -> Broker:
    """A broker logging at debug level (for the `client connected` shard lines)."""
    return broker_factory(log_level="debug")
