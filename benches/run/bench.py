#!/usr/bin/env python3
"""`make bench`: ringmq beside Mosquitto (and FlashMQ) on this box.

Runs a fixed scenario set with `ringmq-loadgen` against each broker, every
broker pinned to CPU 0 and the load generator to CPU 1, interleaved (ringmq,
mosquitto, [flashmq,] ringmq, ...) and repeated BENCH_REPEAT times; writes
docs/benchmarks.md (medians with min-max) and docs/benchmarks-latency-cdf.png.

Benchmarks are not tests: no timing is asserted. The script stops with an
error naming the broker and the command when a broker does not start, dies,
or a load generator run fails.

Environment:
  BENCH_REPEAT   repetitions per scenario and broker (3)
  BENCH_REPEAT_LAT  repetitions of the latency scenarios 4 and 5 (5, at least BENCH_REPEAT)
  FLASHMQ        path to a flashmq binary: adds FlashMQ as a second peer
  BENCH_QUICK    1: short windows (trying the harness, not for numbers)
  BENCH_ONLY     comma-separated scenario keys to run (default: all), see SCENARIOS;
                 `redirect` is the ringmq-only admission scenario (benches/run/redirect.py,
                 which also runs alone into its own file: --out FILE)
  BENCH_HALF_RATE  msg/s for `lathalf` when `p2p` is not run
  BENCH_BUSY_POLL  1: the load generator busy-polls (`--busy-poll`) in the
                 throughput scenarios, so brokers do not pay for waking it
                 (loadgen/README.md, "Busy polling")
  BENCH_DOC      where to write the report (docs/benchmarks.md; the plot goes
                 beside it as <stem>-latency-cdf.png)
  RINGMQ_BIN, LOADGEN_BIN, MOSQUITTO_BIN   binaries (defaults: target/release, PATH)
Raw JSON reports, generated configs and broker logs stay in target/bench/<time>/.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import platform
import resource
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BROKER_CPU = 0
LOADGEN_CPU = 1
IDLE_CONNECTIONS = 10_000
# Scenarios 7 and 8 (TLS): idle TLS connections held, and TLS handshakes per
# second. Fewer than scenario 6: the load generator's own TLS handshakes
# (certificate checks) cost more than the broker's.
IDLE_TLS_CONNECTIONS = 5_000
TLS_RATE_CONNECTIONS = 2_000
# Descriptors beyond the idle connections that a broker or the load generator
# needs for itself (listeners, epoll, io_uring, logs).
FDS_SPARE = 200
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0

# ringmq's settings beyond the defaults, and why (also written into the report).
# Closed-loop runs keep at most max_outstanding x publishers messages queued for
# one subscriber (fanin: 100 x 100 = 10,000): the queue is sized for that, as
# mosquitto's is unlimited below. The inflight window matches mosquitto's below.
# Scenario faninDefault runs ringmq with none of these (its defaults: a full
# queue pauses the publishers, docs/adr/0002-subscriber-backpressure.md).
RINGMQ_MAX_INFLIGHT = 1000
RINGMQ_MAX_MQUEUE_LEN = 20_000


def env_int(name: str, default: int) -> int:
    v = os.environ.get(name, "").strip()
    return int(v) if v else default


QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")
REPEAT = env_int("BENCH_REPEAT", 1 if QUICK else 3)
BUSY_POLL = os.environ.get("BENCH_BUSY_POLL", "") not in ("", "0")
# Tails (p99, p99.9) on a shared virtual machine move with stalls no broker
# causes (docs/performance.md, "Low rates, round 2"): the latency scenarios
# take more runs so their medians settle.
REPEAT_LAT = env_int("BENCH_REPEAT_LAT", 1 if QUICK else max(REPEAT, 5))

# Windows (seconds): warm-up and measured time per run kind.
if QUICK:
    WARMUP_TPUT, DURATION_TPUT = "0.3", "1"
    WARMUP_LAT, DURATION_LAT = "0.5", "1.5"
    HOLD_IDLE = "3"
    DURATION_SELFTEST = "1"
else:
    WARMUP_TPUT, DURATION_TPUT = "1", "5"
    WARMUP_LAT, DURATION_LAT = "2", "10"
    HOLD_IDLE = "6"
    DURATION_SELFTEST = "5"


class BenchError(Exception):
    """A broker that did not start or died, or a run that failed: stops the bench."""


def die(msg: str) -> None:
    print(f"bench: error: {msg}", file=sys.stderr)
    sys.exit(1)


def log(msg: str) -> None:
    print(f"bench: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------- setup

def raise_nofile() -> tuple[int, int]:
    """Raise the soft open-files limit to the hard one (inherited by children)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = IDLE_CONNECTIONS + FDS_SPARE
    target = hard if hard != resource.RLIM_INFINITY else max(soft, need * 2)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        raise BenchError(f"open files limit {soft} (hard {hard}) is below the {need} that "
                         f"{IDLE_CONNECTIONS} idle connections need; raise the hard limit "
                         f"(tuning/limits.conf)")
    return soft, hard


def ensure_matplotlib():
    """matplotlib for the plot: import, else pip install, else None (no plot)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        log("matplotlib missing: pip install matplotlib")
        cmd = [sys.executable, "-m", "pip", "install", "--quiet", "matplotlib"]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if p.returncode != 0:
                p = subprocess.run(cmd + ["--break-system-packages"], capture_output=True,
                                   text=True, timeout=600)
            if p.returncode != 0:
                log("warning: could not install matplotlib, no plot:\n" + p.stderr[-2000:])
                return None
        except (OSError, subprocess.TimeoutExpired) as e:
            log(f"warning: could not install matplotlib ({e}), no plot")
            return None
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        return plt
    except Exception as e:  # a broken install must not cost the numbers
        log(f"warning: matplotlib unusable ({e}), no plot")
        return None


def free_port() -> int:
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port != 1883:
            return port


def which(path_or_name: str, what: str) -> str:
    p = shutil.which(path_or_name)
    if p is None:
        raise BenchError(f"{what} not found: {path_or_name}")
    return os.path.abspath(p)


def _child_preexec():
    """In a broker's child before exec: die with the bench; glommio wants locked memory."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass
    try:
        _soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (hard, hard))
    except (ValueError, OSError):
        pass


# ---------------------------------------------------------------- brokers

@dataclass
class BrokerKind:
    name: str          # ringmq, mosquitto, flashmq
    label: str         # as shown in tables
    binary: str
    version: str = ""

    def config(self, port: int | str, workdir: Path, ringmq_defaults: bool = False,
               tls: "TlsListener | None" = None) -> tuple[str, str]:
        """(file name, text) of the generated config; `ringmq_defaults`: ringmq's
        [mqtt] section left at its defaults; `tls`: a TLS listener as well."""
        name, text = self._config(port, workdir, ringmq_defaults)
        if tls is not None:
            text += tls.config(self.name)
        return name, text

    def _config(self, port: int | str, workdir: Path, ringmq_defaults: bool) -> tuple[str, str]:
        if self.name == "ringmq":
            mqtt = ([] if ringmq_defaults else
                    [f"max_inflight = {RINGMQ_MAX_INFLIGHT}", f"max_mqueue_len = {RINGMQ_MAX_MQUEUE_LEN}"])
            text = "\n".join([
                "[node]",
                "shards = 1",
                f'data_dir = "{workdir / "data"}"',
                "",
                "[listeners.tcp.default]",
                f'bind = "127.0.0.1:{port}"',
                "",
                "[mqtt]",
                *mqtt,
                "",
                "[log]",
                'level = "warn"',
                "",
                # No admin API: nothing here uses it, and its port must not clash.
                "[api]",
                "enable = false",
                "",
            ])
            return "ringmq.toml", text
        if self.name == "mosquitto":
            text = "\n".join([
                f"listener {port} 127.0.0.1",
                "allow_anonymous true",
                "max_queued_messages 0",
                "max_inflight_messages 1000",
                "set_tcp_nodelay true",
                "persistence false",
                # Logging to match ringmq's "warn": no per-connection lines.
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "connection_messages false",
                "",
            ])
            return "mosquitto.conf", text
        if self.name == "flashmq":
            text = "\n".join([
                "listen {",
                "  protocol mqtt",
                "  inet_protocol ip4",
                "  inet4_bind_address 127.0.0.1",
                f"  port {port}",
                # Like Mosquitto's set_tcp_nodelay: without it Nagle's
                # algorithm holds small writes for the peer's delayed ACK
                # (p50 12 ms at 20k msg/s QoS 1, a 40 ms p99).
                "  tcp_nodelay true",
                "}",
                "allow_anonymous true",
                "thread_count 1",
                # Drop nothing, like Mosquitto's max_queued_messages 0: by
                # default FlashMQ drops QoS 1/2 messages beyond 512 pending
                # per client (scenario 3 lost ~27,000 a run with it).
                "max_qos_msg_pending_per_client 65535",
                "max_qos_bytes_pending_per_client 4294967295",
                # Not the default 1000000, which the hard limit here refuses.
                f"rlimit_nofile {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}",
                f"log_file {workdir / 'flashmq.log'}",
                "quiet true",
                "",
            ])
            return "flashmq.conf", text
        raise AssertionError(self.name)

    def argv(self, config_path: Path) -> list[str]:
        if self.name == "ringmq":
            return [self.binary, "--config", str(config_path)]
        if self.name == "mosquitto":
            return [self.binary, "-c", str(config_path)]
        return [self.binary, "--config-file", str(config_path)]


@dataclass
class TlsListener:
    """A TLS listener beside the TCP one (scenarios 7 and 8): its port and the
    certificate files (tests/e2e/pki.py: EC P-256, CN=localhost)."""
    port: int | str
    ca: Path
    cert: Path
    key: Path

    def config(self, broker: str) -> str:
        if broker == "ringmq":
            return "\n".join([
                "[listeners.ssl.default]",
                f'bind = "127.0.0.1:{self.port}"',
                f'ssl_options.certfile = "{self.cert}"',
                f'ssl_options.keyfile = "{self.key}"',
                f'ssl_options.cacertfile = "{self.ca}"',
                'ssl_options.verify = "verify_none"',
                "",
            ])
        if broker == "mosquitto":
            return "\n".join([
                f"listener {self.port} 127.0.0.1",
                f"cafile {self.ca}",
                f"certfile {self.cert}",
                f"keyfile {self.key}",
                "",
            ])
        raise BenchError(f"no TLS listener config for {broker}")


def make_tls_files(workdir: Path) -> tuple[Path, Path, Path]:
    """(CA, server certificate, key) for the TLS scenarios (tests/e2e/pki.py)."""
    sys.path.insert(0, str(REPO / "tests" / "e2e"))
    try:
        from pki import make_pki
    except ImportError as e:
        raise BenchError(f"the TLS scenarios make certificates with tests/e2e/pki.py: {e} "
                         f"(run `make test-deps`, or leave them out with BENCH_ONLY)") from None
    pki = make_pki(workdir)
    # Mosquitto started as root reads the key after it drops to its own user.
    pki.key.chmod(0o644)
    return pki.cacert, pki.cert, pki.key


class Broker:
    """One broker process, pinned with taskset, on its own port and directory."""

    def __init__(self, kind: BrokerKind, workdir: Path, ringmq_defaults: bool = False,
                 tls_files: tuple[Path, Path, Path] | None = None):
        self.kind = kind
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        # The TLS listener's port (scenarios with `tls`), else None.
        self.tls_port = free_port() if tls_files else None
        tls = TlsListener(self.tls_port, *tls_files) if tls_files else None
        name, text = kind.config(self.port, workdir, ringmq_defaults, tls)
        self.config_path = workdir / name
        self.config_path.write_text(text)
        self.argv = ["taskset", "-c", str(BROKER_CPU), *kind.argv(self.config_path)]
        self.log_path = workdir / f"{kind.name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Broker":
        # Every RINGMQ_ variable is a config key to ringmq (unknown ones are
        # errors), and the Makefile exports RINGMQ_BIN: keep them all out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
        env.pop("RUST_LOG", None)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, env=env, cwd=self.workdir,
                                     preexec_fn=_child_preexec)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.kind.label} exited with {self.proc.returncode} before "
                                 f"listening: {shlex.join(self.argv)}\n{self.tail()}")
            try:
                for port in (self.port, self.tls_port):
                    if port is not None:
                        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                            pass
                return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BenchError(f"{self.kind.label} not listening on port {self.port} after "
                         f"{READY_TIMEOUT_S:.0f} s: {shlex.join(self.argv)}\n{self.tail()}")

    @property
    def pid(self) -> int:
        return self.proc.pid  # taskset execs the broker: same pid

    def check_alive(self, during: str) -> None:
        if self.proc.poll() is not None:
            raise BenchError(f"{self.kind.label} died (exit {self.proc.returncode}) during "
                             f"{during}: {shlex.join(self.argv)}\n{self.tail()}")

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise BenchError(f"no VmRSS for {self.kind.label} (pid {self.pid})")

    def open_fds(self) -> int:
        try:
            return len(os.listdir(f"/proc/{self.pid}/fd"))
        except OSError:
            return -1

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


# ---------------------------------------------------------------- load generator

class Loadgen:
    def __init__(self, binary: str, outdir: Path):
        self.binary = binary
        self.outdir = outdir
        self.count = 0

    def argv(self, args: list[str], port: int | None, prefix: str, json_path: Path) -> list[str]:
        target = ["-h", "127.0.0.1", "-p", str(port)] if port is not None else []
        return [self.binary, *args, *target, "--cpus", str(LOADGEN_CPU),
                "--client-id-prefix", prefix, "--json", str(json_path), "--quiet"]

    def next_json(self, tag: str) -> Path:
        self.count += 1
        return self.outdir / f"{self.count:03d}-{tag}.json"

    @staticmethod
    def timeout_s(args: list[str]) -> float:
        """Generous bound on a run's wall time, from its own options."""
        def opt(name: str, default: float) -> float:
            return float(args[args.index(name) + 1]) if name in args else default
        return opt("-d", 10) + opt("--warmup", 1) + opt("--drain", 5) + 60 + 30

    def run(self, args: list[str], port: int | None, prefix: str, tag: str,
            broker: "Broker | None" = None) -> tuple[dict, list[str], float | None]:
        """Run once; returns the JSON report, the argv and the broker's CPU % in the
        measured window (None without a broker)."""
        path = self.next_json(tag)
        argv = self.argv(args, port, prefix, path)
        sampler = CpuSampler(broker.pid) if broker else None
        started = time.monotonic()
        if sampler:
            sampler.start()
        try:
            p = subprocess.run(argv, capture_output=True, text=True, timeout=self.timeout_s(args))
        except subprocess.TimeoutExpired:
            raise BenchError(f"load generator did not finish in time: {shlex.join(argv)}") from None
        finally:
            if sampler:
                sampler.stop()
        if p.returncode != 0 or not path.exists():
            raise BenchError(f"load generator exited {p.returncode}: {shlex.join(argv)}\n"
                             f"{p.stdout[-2000:]}{p.stderr[-2000:]}")
        report = json.loads(path.read_text())
        cpu = None
        if sampler:
            begin = started + report["clients"]["setup_s"] + report["warmup_s"]
            cpu = sampler.pct(begin, begin + report["duration_s"])
        return report, argv, cpu


class CpuSampler(threading.Thread):
    """Samples a process's CPU time (user + system, from /proc/PID/stat) and the busy
    time of the broker's CPU (from /proc/stat) every 50 ms, so the share of one CPU
    the broker used in a window, and what else ran on its CPU, can be read afterwards."""

    TICKS_PER_S = os.sysconf("SC_CLK_TCK")

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.samples: list[tuple[float, int, int]] = []
        self.done = threading.Event()

    @staticmethod
    def cpu_busy_ticks(cpu: int = BROKER_CPU) -> int:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                return sum(v[:8]) - v[3] - v[4]  # all but idle and iowait (guest is in user)
        return 0

    def ticks(self) -> int | None:
        try:
            raw = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        fields = raw[raw.rindex(")") + 2:].split()
        return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)

    def run(self) -> None:
        while not self.done.is_set():
            t = self.ticks()
            if t is not None:
                self.samples.append((time.monotonic(), t, self.cpu_busy_ticks()))
            self.done.wait(0.05)

    def stop(self) -> None:
        self.done.set()
        self.join()

    def pct(self, begin: float, end: float) -> tuple[float, float] | None:
        """(broker CPU %, CPU BROKER_CPU busy % from anything else) in [begin, end]."""
        inside = [s for s in self.samples if begin <= s[0] <= end]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 0.2:
            return None
        (t0, c0, b0), (t1, c1, b1) = inside[0], inside[-1]
        broker = 100.0 * (c1 - c0) / self.TICKS_PER_S / (t1 - t0)
        busy = 100.0 * (b1 - b0) / self.TICKS_PER_S / (t1 - t0)
        return broker, max(0.0, busy - broker)


def check_report(r: dict, who: str, argv: list[str]) -> list[str]:
    """Errors stop the bench; anything else worth a note is returned."""
    c = r["clients"]
    if c["ready"] < c["planned"] or c["failed"]:
        raise BenchError(f"{who}: {c['ready']} of {c['planned']} clients set up, {c['failed']} "
                         f"failed (errors {r['errors']}): {shlex.join(argv)}")
    notes = []
    if r["errors_total"]:
        notes.append(f"{who}: load generator errors {r['errors']}")
    if r.get("lost"):
        notes.append(f"{who}: lost {r['lost']} of {r['expected']} messages")
    if r.get("duplicated"):
        notes.append(f"{who}: {r['duplicated']} duplicates")
    if r.get("window_timeouts"):
        notes.append(f"{who}: {r['window_timeouts']} closed-loop window timeouts")
    return notes


# ---------------------------------------------------------------- scenarios

@dataclass
class Scenario:
    key: str
    title: str
    args: list[str]                  # loadgen arguments (without target, pinning, output)
    kind: str                        # tput, latency, idle
    note: str = ""
    ringmq_defaults: bool = False    # ringmq without the [mqtt] settings above
    tls: bool = False                # the load generator connects to the broker's TLS listener
    connections: int = IDLE_CONNECTIONS  # idle / handshake: connections the broker must hold
    # Brokers this scenario runs against (None: all). FlashMQ's TLS listener
    # is not set up here (no FlashMQ on the development box to check it).
    only_brokers: tuple[str, ...] | None = None


def scenarios(half_rate: float | None) -> list[Scenario]:
    tput = ["--warmup", WARMUP_TPUT, "-d", DURATION_TPUT, *(["--busy-poll"] if BUSY_POLL else [])]
    lat = ["--warmup", WARMUP_LAT, "-d", DURATION_LAT]
    out = [
        Scenario("p2p", "1. p2p QoS 0, 64 B, 50 publishers to 50 subscribers, closed loop",
                 ["p2p", "-c", "50", "-q", "0", "-s", "64", "--max-outstanding", "100", *tput],
                 "tput"),
        Scenario("fanout", "2. fan-out QoS 0, 64 B, 1 publisher to 100 subscribers, closed loop",
                 ["fanout", "--publishers", "1", "-c", "100", "-q", "0", "-s", "64",
                  "--max-outstanding", "1000", *tput], "tput"),
        Scenario("fanin", "3. fan-in QoS 1, 64 B, 100 publishers to 1 subscriber on bench/fanin/+, closed loop",
                 ["fanin", "-c", "100", "--subscribers", "1", "-q", "1", "-s", "64",
                  "--max-outstanding", "100", *tput], "tput"),
        Scenario("faninDefault", "3b. fan-in QoS 1 with ringmq's default config, 64 B, 100 publishers "
                 "(100 outstanding each) to 1 subscriber of bench/#, closed loop",
                 ["fanin", "-c", "100", "--subscribers", "1", "-q", "1", "-s", "64", "--filter", "bench/#",
                  "--max-outstanding", "100", *tput], "tput", ringmq_defaults=True),
        Scenario("lat20k", "4. latency at 20,000 msg/s, QoS 1 p2p, 50 pairs, evenly paced",
                 ["p2p", "-c", "50", "-q", "1", "-s", "64", "-r", "20000", *lat], "latency"),
    ]
    half = ["p2p", "-c", "50", "-q", "0", "-s", "64", "-r",
            str(int(half_rate)) if half_rate else "HALF", *lat]
    out.append(Scenario("lathalf", "5. latency at half of ringmq's max p2p rate (scenario 1), QoS 0 p2p, "
                        "50 pairs, evenly paced", half, "latency"))
    out.append(Scenario("idle", f"6. {IDLE_CONNECTIONS:,} idle MQTT 5 connections",
                        ["conn", "-c", str(IDLE_CONNECTIONS), "-V", "5", "-d", HOLD_IDLE], "idle"))
    # CAFILE is replaced by the run's CA certificate (main).
    tls = ["--tls", "--cafile", "CAFILE", "--tls-server-name", "localhost"]
    out.append(Scenario("idleTls", f"7. {IDLE_TLS_CONNECTIONS:,} idle MQTT 5 connections over TLS "
                        "(TLS 1.3, ECDSA P-256 certificate)",
                        ["conn", "-c", str(IDLE_TLS_CONNECTIONS), "-V", "5", "-d", HOLD_IDLE, *tls], "idle",
                        tls=True, connections=IDLE_TLS_CONNECTIONS, only_brokers=("ringmq", "mosquitto")))
    out.append(Scenario("tlsRate", f"8. TLS handshakes per second: {TLS_RATE_CONNECTIONS:,} new MQTT 5 "
                        "connections over TLS, 64 handshakes in flight",
                        ["conn", "-c", str(TLS_RATE_CONNECTIONS), "-V", "5", "-d", HOLD_IDLE,
                         "--connect-inflight", "64", *tls], "handshake",
                        tls=True, connections=TLS_RATE_CONNECTIONS, only_brokers=("ringmq", "mosquitto")))
    return out


@dataclass
class Result:
    """One run of one scenario against one broker."""
    report: dict
    argv: list[str]
    broker_argv: list[str]
    # (broker CPU %, other processes' CPU % on the broker's CPU) in the measured
    # window; idle: while connecting.
    cpu: tuple[float, float] | None = None
    extra: dict = field(default_factory=dict)   # idle: rss_before_kib, rss_after_kib, ...


def run_idle(lg: Loadgen, broker: Broker, sc: Scenario, prefix: str, tag: str) -> Result:
    """Connect IDLE_CONNECTIONS, read the broker's VmRSS before and while they are held."""
    time.sleep(0.5)  # let start-up settle before the baseline
    fds_before = broker.open_fds()
    rss_before = broker.rss_kib()
    path = lg.next_json(tag)
    argv = lg.argv(sc.args, broker.tls_port if sc.tls else broker.port, prefix, path)
    sampler = CpuSampler(broker.pid)
    sampler.start()
    started = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lg_sampler = CpuSampler(p.pid)
    lg_sampler.start()
    want = fds_before + sc.connections
    deadline = time.monotonic() + lg.timeout_s(sc.args)
    reached_s = None
    while p.poll() is None and time.monotonic() < deadline:
        if broker.open_fds() >= want:
            reached_s = time.monotonic()
            break
        # Listing 10k descriptors costs a millisecond or two of the load generator's CPU.
        time.sleep(0.1)
    rss_after = None
    if reached_s is not None:
        time.sleep(1.0)  # connections are set up; let the broker finish what it allocates for them
        if p.poll() is None:
            rss_after = broker.rss_kib()
    try:
        out, err = p.communicate(timeout=max(5.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        p.kill()
        raise BenchError(f"load generator did not finish in time: {shlex.join(argv)}") from None
    finally:
        sampler.stop()
        lg_sampler.stop()
    if p.returncode != 0 or not path.exists():
        raise BenchError(f"load generator exited {p.returncode}: {shlex.join(argv)}\n{out[-2000:]}{err[-2000:]}")
    report = json.loads(path.read_text())
    if rss_after is None:
        raise BenchError(f"{broker.kind.label}: never held {sc.connections} connections while the load "
                         f"generator ran (open fds {broker.open_fds()}, wanted {want}): {shlex.join(argv)}")
    ready = report["clients"]["ready"]
    cpu = sampler.pct(started, started + report["clients"]["setup_s"])
    lg_cpu = lg_sampler.pct(started, started + report["clients"]["setup_s"])
    return Result(report, argv, broker.argv, cpu, {
        "loadgen_cpu": lg_cpu[0] if lg_cpu else None,
        "rss_before_kib": rss_before, "rss_after_kib": rss_after,
        "rss_per_conn_b": (rss_after - rss_before) * 1024 / max(ready, 1),
        "conn_per_s": ready / max(report["clients"]["setup_s"], 1e-9),
    })


# ---------------------------------------------------------------- statistics

def med(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def metric(key: str, r: Result):
    rep = r.report
    lat = rep.get("latency_us") or {}
    return {
        "out": rep["throughput"]["out_msg_s"],
        "in": rep["throughput"]["in_msg_s"],
        "lost": rep.get("lost"),
        "busy": max(rep["loadgen_busy_pct"]) if rep["loadgen_busy_pct"] else None,
        # Time the load generator's thread was runnable while another task
        # had its CPU: the machine's noise, not the broker's.
        "preempted": max(rep["loadgen_preempted_ms"]) if rep.get("loadgen_preempted_ms") else None,
        "p50": lat.get("p50"), "p90": lat.get("p90"), "p99": lat.get("p99"),
        "p999": lat.get("p999"), "max": lat.get("max"),
        "rss_per_conn_b": r.extra.get("rss_per_conn_b"),
        "conn_per_s": r.extra.get("conn_per_s"),
        "loadgen_cpu": r.extra.get("loadgen_cpu"),
        "cpu": r.cpu[0] if r.cpu else None,
        "other": r.cpu[1] if r.cpu else None,
    }[key]


def fmt_num(v: float | None, unit: str) -> str:
    if v is None:
        return "–"
    if unit == "msg/s" or unit == "conn/s":
        if v >= 1e6:
            return f"{v / 1e6:.2f}M"
        if v >= 1e4:
            return f"{v / 1e3:.0f}k"
        return f"{v:,.0f}"
    if unit == "us":
        return f"{v:,.0f} µs" if v >= 100 else f"{v:.1f} µs"
    if unit == "B":
        return f"{v:,.0f} B"
    if unit == "%":
        return f"{v:.0f} %"
    if unit == "n":
        return f"{v:,.0f}"
    if unit == "ms":
        return f"{v:,.0f} ms"
    return f"{v:g}"


def summary(values: list[float | None], unit: str) -> str:
    vs = [v for v in values if v is not None]
    if not vs:
        return "–"
    m = statistics.median(vs)
    if len(vs) == 1:
        return fmt_num(m, unit)
    return f"{fmt_num(m, unit)} ({fmt_num(min(vs), unit)}–{fmt_num(max(vs), unit)})"


# ---------------------------------------------------------------- report

def sh(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def machine() -> dict:
    model = cores = ""
    for line in sh(["lscpu"]).splitlines():
        k, _, v = line.partition(":")
        if k.strip() == "Model name":
            model = v.strip()
        if k.strip() == "CPU(s)":
            cores = v.strip()
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    return {"model": model, "cpus": cores, "mem_gib": mem_kib / 1024 / 1024,
            "kernel": platform.release(), "os": sh(["sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"])}


def redact(argv: list[str], workdir: Path) -> str:
    """A command line as run, with the per-run port and paths made readable."""
    out = []
    skip_port = False
    for a in argv:
        if skip_port:
            out.append("$PORT")
            skip_port = False
            continue
        if a == "-p":
            skip_port = True
        a = a.replace(str(workdir) + "/", "").replace(str(REPO) + "/", "")
        out.append(a)
    return shlex.join(out).replace("'$PORT'", "$PORT")


TARGETS = {
    # key: (text, test(ratio_or_value) -> bool)
    "p2p": "≥ 20x Mosquitto",
    "fanout": "≥ 30x Mosquitto",
    "fanin": "≥ 25x Mosquitto, zero loss",
    "faninDefault": "zero loss with ringmq's defaults",
    "lat20k": "p99 ≤ 0.75x Mosquitto's",
    "lathalf": "p99 < 1 ms",
    "idle_rss": "≤ 1 KiB per connection",
    "idle_rate": "≥ 20k conn/s",
    "idle_tls_rss": "< 8 KiB per TLS connection",
}


def met(flag: bool | None) -> str:
    return "–" if flag is None else ("**met**" if flag else "**not met**")


def plot_cdf(plt, results, brokers, path: Path) -> bool:
    """Latency CDF of scenarios 4 and 5 from the percentiles in the JSON reports."""
    qs = [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)]
    keys = [k for k in ("lat20k", "lathalf") if k in results]
    if not keys:
        return False
    fig, axes = plt.subplots(1, len(keys), figsize=(6.5 * len(keys), 4.6), squeeze=False)
    colors = {"ringmq": "tab:blue", "mosquitto": "tab:orange", "flashmq": "tab:green"}
    for ax, key in zip(axes[0], keys):
        for b in brokers:
            runs = results[key].get(b.name, [])
            if not runs:
                continue
            by_p99 = sorted(runs, key=lambda r: r.report["latency_us"]["p99"])
            median_run = by_p99[len(by_p99) // 2]
            for r in runs:
                lat = r.report["latency_us"]
                xs = [lat["min"]] + [lat[k] for k, _ in qs] + [lat["max"]]
                ys = [1e-4] + [q for _, q in qs] + [0.9999]
                bold = r is median_run
                ax.plot(xs, ys, marker="o" if bold else None, ms=3, lw=2 if bold else 0.7,
                        alpha=1 if bold else 0.4, color=colors[b.name],
                        label=f"{b.label} (median run)" if bold else None)
        if key == "lathalf" and results.get("_selftest_half"):
            lat = sorted(results["_selftest_half"], key=lambda r: r.report["latency_us"]["p99"])[
                len(results["_selftest_half"]) // 2].report["latency_us"]
            ax.plot([lat["min"]] + [lat[k] for k, _ in qs] + [lat["max"]], [1e-4] + [q for _, q in qs] + [0.9999],
                    ls="--", color="gray", lw=1.2, label="load generator alone (selftest)")
        ax.set_xscale("log")
        ax.set_yscale("logit")
        ax.set_ylim(1e-4 * 0.9, 0.9999 * 1.00001)
        ax.set_yticks([0.001, 0.01, 0.1, 0.5, 0.9, 0.99, 0.999])
        ax.set_yticklabels(["0.1", "1", "10", "50", "90", "99", "99.9"])
        ax.set_xlabel("end-to-end latency (µs, log)")
        ax.set_ylabel("percentile of messages")
        rate = results[key]["_rate"]
        ax.set_title({"lat20k": f"QoS 1 p2p at {rate:,.0f} msg/s",
                      "lathalf": f"QoS 0 p2p at {rate:,.0f} msg/s (half of ringmq max)"}[key], fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Latency CDF. Points: p50, p90, p99, p99.9 of each run, with min and max drawn at 0.01 and "
                 "99.99; bold: the run with the median p99", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_doc(doc: Path, plot_path: Path | None, ctx: dict) -> None:
    brokers = ctx["brokers"]
    results = ctx["results"]
    peers = [b for b in brokers if b.name != "ringmq"]
    ring = next(b for b in brokers if b.name == "ringmq")
    mosq = next(b for b in brokers if b.name == "mosquitto")
    m = ctx["machine"]
    L = []
    w = L.append
    w("# Benchmarks: ringmq beside Mosquitto" + (" and FlashMQ" if len(peers) > 1 else ""))
    w("")
    w(f"Generated by `{ctx['command']}` (`benches/run/bench.py`) on {ctx['date']}, "
      f"commit `{ctx['commit']}` of this tree. Do not edit by hand: run it again.")
    w("")
    w("Benchmarks, not tests: nothing here is asserted. Each number is the **median of "
      f"{REPEAT} runs** ({REPEAT_LAT} for the latency scenarios 4 and 5) with the min–max of "
      "those runs in parentheses. Runs are interleaved "
      "(scenario by scenario: ringmq, Mosquitto" + (", FlashMQ" if len(peers) > 1 else "") +
      ", ringmq, ...), and every run gets a freshly started broker.")
    if QUICK:
        w("")
        w("**BENCH_QUICK run: windows of about a second, for trying the harness; these numbers are not "
          "comparable with a full run.**")
    w("")
    w("## Machine")
    w("")
    w("| | |")
    w("|---|---|")
    w(f"| CPU | {m['model']}, {m['cpus']} CPUs |")
    w(f"| memory | {m['mem_gib']:.1f} GiB |")
    w(f"| kernel | Linux {m['kernel']} ({m['os']}) |")
    w(f"| date | {ctx['date']} |")
    w(f"| load average (1, 5, 15 min) | at start {ctx['loadavg_start']}; at end {ctx['loadavg_end']} |")
    w(f"| open files | soft {ctx['nofile'][0]}, hard {ctx['nofile'][1]} (raised to the hard limit for the run) |")
    for b in brokers:
        w(f"| {b.label} | {b.version} |")
    w(f"| load generator | {ctx['loadgen_version']}, one worker thread |")
    w("")
    w(f"Pinning: each broker runs under `taskset -c {BROKER_CPU}` (ringmq with one shard, "
      f"Mosquitto single-threaded" + (", FlashMQ with `thread_count 1`" if len(peers) > 1 else "") +
      f"); the load generator's worker thread is pinned to CPU {LOADGEN_CPU} (`--cpus {LOADGEN_CPU}`). "
      "Both on loopback. The broker and the load generator have a core each, and nothing else "
      "is supposed to run; the other processes on the box were not stopped.")
    w("")

    w("## Method")
    w("")
    w("* **Closed loop** (scenarios 1–3): each publisher keeps at most `--max-outstanding` messages "
      "on their way (sent, not yet received by every subscriber that should get them), so the "
      "rate is one the broker sustains, not the speed of filling socket buffers; latency there is "
      "mostly queueing inside that window (Little's law), so compare it only between brokers at the "
      "same window. Throughput is messages **delivered** per second (fan-out: publishes × 100).")
    w("* **Paced** (scenarios 4–5): publishers send on an even schedule (`-r`, spread over the "
      "publishers and phase-shifted); latency is end to end, from a `CLOCK_MONOTONIC` stamp in each "
      "payload to its arrival, in an HDR histogram. Scenario 5's rate is half the median of ringmq's "
      "scenario 1 runs in this same invocation.")
    w("* **Idle connections** (scenario 6): RSS per connection from the broker's `VmRSS`; connect "
      "rate from the load generator's set-up time. On loopback the whole TCP handshake, the "
      "listener's side included, runs in the softirq of the connecting thread, so during the "
      "storm the load generator's CPU is the busier one: the connect rate is a lower bound of "
      "the broker's accept rate (docs/performance.md, \"Accept rate\").")
    w("* **Broker CPU**: the broker process's user + system time over the measured window, in % of "
      "one CPU (`/proc/PID/stat`, sampled every 50 ms); near 100 % in a closed-loop run means the "
      "broker, not the load generator, set the rate. `CPU 0 busy beyond the broker` is the rest of "
      "CPU 0's busy time (`/proc/stat`): other processes, or kernel work not charged to the broker.")
    w("* **Lost**: messages sent but never received (the load generator tracks every sequence "
      "number per publisher and subscriber).")
    w("* **Loadgen preempted**: how long the load generator's worker thread was ready to run while "
      "another task had its CPU during the measured window (`/proc/thread-self/schedstat`, JSON "
      "`loadgen_preempted_ms`): noise from the machine, which inflates latency tails of both brokers.")
    w("")

    # ---- summary
    w("## Summary")
    w("")
    cols = ["scenario", "metric", ring.label] + [b.label for b in peers] + \
           [f"ringmq / {p.label}" for p in peers] + ["target", "met?"]
    w("| " + " | ".join(cols) + " |")
    w("|" + "---|" * len(cols))
    for row in ctx["summary_rows"]:
        w("| " + " | ".join(row) + " |")
    w("")
    w("Ratios are of medians. For throughput a ratio above 1 means ringmq is faster; for "
      "latency a ratio below 1 means ringmq is faster.")
    w("")
    obs = observations(ctx)
    w("Observed in the runs (generated from the measurements):")
    w("")
    for n in obs or ["nothing unusual: every broker saturated its CPU in the closed-loop runs, the "
                     "load generator stayed below 90 % busy, and nothing was lost."]:
        w(f"* {n}")
    w("")

    # ---- headroom
    w("## Load generator headroom")
    w("")
    w("`selftest` runs the load generator against an in-process forwarder that does no MQTT work "
      f"(forwarder on CPU {BROKER_CPU}, worker on CPU {LOADGEN_CPU}): the most it generates and absorbs "
      "at once on one core. A broker number far below it is the broker's.")
    w("")
    w("| selftest | msg/s out = in | loadgen busy | latency p50 | p99 | p99.9 |")
    w("|---|---|---|---|---|---|")
    for label, st in ctx["selftest"]:
        w(f"| {label} | {summary([r.report['throughput']['in_msg_s'] for r in st], 'msg/s')} | "
          f"{summary([max(r.report['loadgen_busy_pct']) for r in st], '%')} | "
          f"{summary([r.report['latency_us']['p50'] for r in st], 'us')} | "
          f"{summary([r.report['latency_us']['p99'] for r in st], 'us')} | "
          f"{summary([r.report['latency_us']['p999'] for r in st], 'us')} |")
    w("")
    w("`loadgen busy` is the share of the measured window the load generator's thread spent handling "
      "sockets or sending (JSON `loadgen_busy_pct`); a paced run near 100 % is sending on almost every "
      "loop turn, which is not by itself saturation: compare the rate achieved with the rate asked. "
      "The scenario 5 row is the load generator's own latency at that rate and shape, with no broker.")
    w("")
    w("```sh")
    for _label, st in ctx["selftest"]:
        w(redact(st[0].argv, ctx["workdir"]))
    w("```")
    w("")

    # ---- per scenario
    w("## Scenarios")
    w("")
    for sc in ctx["scenarios"]:
        if sc.key not in results:
            continue
        runs = results[sc.key]
        w(f"### {sc.title}")
        w("")
        if sc.kind == "handshake":
            rows = [("TLS handshakes per second (connect rate)", "conn_per_s", "conn/s"),
                    ("broker CPU while connecting", "cpu", "%"),
                    (f"CPU {BROKER_CPU} busy beyond the broker", "other", "%"),
                    ("load generator CPU while connecting (all threads)", "loadgen_cpu", "%")]
        elif sc.kind == "idle":
            rows = [("RSS per connection", "rss_per_conn_b", "B"), ("connect rate", "conn_per_s", "conn/s"),
                    ("broker CPU while connecting", "cpu", "%"),
                    (f"CPU {BROKER_CPU} busy beyond the broker", "other", "%"),
                    ("load generator CPU while connecting (all threads)", "loadgen_cpu", "%")]
        elif sc.kind == "latency":
            rows = [("rate achieved (in)", "in", "msg/s"), ("p50", "p50", "us"), ("p90", "p90", "us"),
                    ("p99", "p99", "us"), ("p99.9", "p999", "us"), ("max", "max", "us"),
                    ("lost", "lost", "n"), ("broker CPU", "cpu", "%"),
                    (f"CPU {BROKER_CPU} busy beyond the broker", "other", "%"), ("loadgen busy", "busy", "%"),
                    ("loadgen preempted", "preempted", "ms")]
        else:
            rows = [("msg/s out", "out", "msg/s"), ("msg/s in (delivered)", "in", "msg/s"),
                    ("latency p50", "p50", "us"), ("latency p99", "p99", "us"),
                    ("lost", "lost", "n"), ("broker CPU", "cpu", "%"),
                    (f"CPU {BROKER_CPU} busy beyond the broker", "other", "%"), ("loadgen busy", "busy", "%"),
                    ("loadgen preempted", "preempted", "ms")]
        cols = ["", *[b.label for b in brokers], *[f"ringmq / {p.label}" for p in peers]]
        w("| " + " | ".join(cols) + " |")
        w("|" + "---|" * len(cols))
        for label, key, unit in rows:
            cells = [label]
            meds = {}
            for b in brokers:
                vals = [metric(key, r) for r in runs.get(b.name, [])]
                cells.append(summary(vals, unit))
                meds[b.name] = med(vals)
            for p in peers:
                a, c = meds.get("ringmq"), meds.get(p.name)
                cells.append(f"{a / c:.2f}" if a is not None and c not in (None, 0) and key not in ("lost", "busy", "cpu", "other", "loadgen_cpu") else "–")
            w("| " + " | ".join(cells) + " |")
        w("")
        if sc.only_brokers:
            skipped = [b.label for b in brokers if b.name not in sc.only_brokers]
            if skipped:
                w(f"Not run against {', '.join(skipped)}: this script sets up no TLS listener for it.")
                w("")
        if sc.tls:
            w("The load generator connects with `--tls` (rustls, TLS 1.3, trusting the run's test CA): "
              "each connection is a full handshake (no resumption), and the CONNACK comes after it. "
              "The load generator's side of a handshake (two ECDSA verifications) costs more than the "
              "broker's (one signature): see its CPU row.")
            w("")
        if sc.kind == "handshake":
            w("Handshakes per second = connections / the load generator's set-up time (`clients.setup_s`, "
              "from start until the last CONNACK, `--connect-inflight 64`).")
            w("")
        if sc.kind == "idle":
            w("RSS per connection = (broker VmRSS with the connections held − VmRSS before) / connections, "
              "read from `/proc/PID/status` one second after the broker's open descriptors show every "
              "connection; connect rate = connections / the load generator's set-up time "
              "(`clients.setup_s`, from start until the last CONNACK, default `--connect-inflight 512`).")
            for b in brokers:
                rs = runs.get(b.name, [])
                if rs:
                    w(f"{b.label} VmRSS before / after (KiB): " + ", ".join(
                        f"{r.extra['rss_before_kib']:,} / {r.extra['rss_after_kib']:,}" for r in rs) + ".")
            w("")
        w("```sh")
        for b in brokers:
            rs = runs.get(b.name, [])
            if rs:
                w(f"# {b.label}")
                w(redact(rs[0].argv, ctx["workdir"]))
        w("```")
        w("")
    if plot_path is not None:
        w("## Latency CDF")
        w("")
        w(f"![latency CDF of scenarios 4 and 5]({plot_path.name})")
        w("")
        w("The load generator's JSON report has percentiles (min, p50, p90, p99, p99.9, max), not "
          "histogram buckets, so each curve joins those points (min and max are drawn at the 0.01 and "
          "99.99 percentiles); the bold one is the run with the median p99, thin ones the other runs. "
          "The dashed gray line in the right panel is the load generator alone at the same rate "
          "and shape (selftest).")
        w("")
    else:
        w("(No latency plot: matplotlib could not be installed.)")
        w("")

    # ---- commands
    w("## Exact commands")
    w("")
    w("Every broker and every load generator run gets a free port (never 1883), shown as `$PORT`; "
      "files are in the run's directory under `target/bench/`. Raw JSON reports and broker logs stay "
      "there.")
    w("")
    w("Brokers:")
    w("")
    w("```sh")
    for b in brokers:
        w(redact(ctx["broker_argv"][b.name], ctx["workdir"]))
    w("```")
    w("")
    labels = {b.name: b.label for b in brokers}
    for key, (name, text) in ctx["broker_config"].items():
        kind, _, variant = key.partition(" ")
        w(f"{labels[kind]}{' ' + variant if variant else ''} config (`{name}`):")
        w("")
        w("```" + ("toml" if kind == "ringmq" else ""))
        w(text.rstrip())
        w("```")
        w("")
    w(f"ringmq: `mqtt.max_inflight = {RINGMQ_MAX_INFLIGHT}` (Mosquitto's `max_inflight_messages`) and "
      f"`mqtt.max_mqueue_len = {RINGMQ_MAX_MQUEUE_LEN}` (default 1000): in the fan-in run 100 publishers "
      "with a closed-loop window of 100 each may have 10,000 messages queued for the one subscriber, which "
      "the default queue holds only by pausing the publishers (scenario 3b runs ringmq with its defaults, "
      "docs/adr/0002-subscriber-backpressure.md). Mosquitto: the logging lines only quiet per-connection "
      "messages, as ringmq's `warn` does.")
    w("")
    w("Load generator runs (each once per broker and repetition, with a fresh `--client-id-prefix`):")
    w("")
    w("```sh")
    for sc in ctx["scenarios"]:
        if sc.key in results:
            runs = results[sc.key].get("ringmq") or next(iter(v for k, v in results[sc.key].items() if not k.startswith("_")))
            w(redact(runs[0].argv, ctx["workdir"]))
    w("```")
    w("")
    doc.write_text("\n".join(L))


def observations(ctx: dict) -> list[str]:
    """What a reader should know before trusting a number, from the runs themselves."""
    out = []
    for sc in ctx["scenarios"]:
        runs_by = ctx["results"].get(sc.key)
        if not runs_by:
            continue
        for b in ctx["brokers"]:
            runs = runs_by.get(b.name, [])
            if not runs:
                continue
            who = f"{b.label}, scenario {sc.title.split('.')[0]} ({sc.key})"
            busy = med([metric("busy", r) for r in runs])
            cpu = med([metric("cpu", r) for r in runs])
            other = med([metric("other", r) for r in runs])
            if sc.kind == "tput" and busy is not None and busy >= 90:
                out.append(f"{who}: the load generator was {busy:.0f} % busy (median): this number "
                           f"may be partly the load generator's.")
            if sc.kind == "tput" and cpu is not None and cpu < 90:
                out.append(f"{who}: the broker used {cpu:.0f} % of its CPU (median), so it was not "
                           f"CPU-bound; the limit was elsewhere (closed-loop window, load generator, "
                           f"or waiting between loop turns).")
            if other is not None and other >= 10:
                out.append(f"{who}: CPU {BROKER_CPU} was {other:.0f} % busy beyond the broker's own "
                           f"{cpu:.0f} % (median): other processes, or kernel work on the broker's "
                           f"behalf that is not charged to it (loopback TCP in softirq).")
            if sc.kind == "latency":
                asked = runs_by["_rate"]
                got = med([metric("in", r) for r in runs])
                if asked and got is not None and got < 0.98 * asked:
                    out.append(f"{who}: reached {got:,.0f} of the {asked:,.0f} msg/s asked (median); "
                               f"the closed-loop window (100 per publisher) then bounds the queue, "
                               f"and the latency is that of a saturated broker.")
            for mkey, label in (("in", "msg/s delivered"), ("conn_per_s", "connect rate"), ("p99", "p99")):
                vals = [metric(mkey, r) for r in runs]
                vals = [v for v in vals if v]
                if len(vals) > 1 and max(vals) > 1.5 * min(vals) and not (sc.kind == "latency" and mkey == "in"):
                    out.append(f"{who}: {label} varied more than 1.5x between runs "
                               f"({fmt_num(min(vals), 'us' if mkey == 'p99' else 'msg/s')} to "
                               f"{fmt_num(max(vals), 'us' if mkey == 'p99' else 'msg/s')}).")
            lost = sum((metric("lost", r) or 0) for r in runs)
            if lost:
                out.append(f"{who}: {lost:,} messages lost over {len(runs)} runs.")
    lat = ctx["results"].get("lat20k", {})
    if lat.get("ringmq") and lat.get("mosquitto"):
        a = med([metric("cpu", r) for r in lat["ringmq"]])
        b = med([metric("cpu", r) for r in lat["mosquitto"]])
        if a is not None and b:
            out.append(f"At 20,000 msg/s QoS 1 (scenario 4) ringmq used {a:.0f} % of its CPU and Mosquitto "
                       f"{b:.0f} % (medians). ringmq's share includes idle polling (`node.idle_poll_us`, "
                       f"20 µs by default: a shard keeps polling that long before it sleeps, and at this "
                       f"rate the next packet often comes sooner), so it is not its CPU per message: "
                       f"docs/performance.md, \"Low rates, round 2\", has that with polling off.")
    for label, st in ctx["selftest"]:
        if label.startswith("scenario 4"):
            p99 = med([r.report["latency_us"]["p99"] for r in st])
            fwd = med([r.report.get("forwarder_preempted_ms") or 0.0 for r in st])
            if p99 is not None:
                out.append(f"The load generator alone at scenario 4's rate and shape has a p99 of "
                           f"{p99:,.0f} µs (selftest, no broker; its forwarder was preempted "
                           f"{fwd:,.0f} ms of the window, median: docs/performance.md, \"Low rates, "
                           f"round 3\").")
        if label.startswith("scenario 5"):
            p99 = med([r.report["latency_us"]["p99"] for r in st])
            if p99 is not None and p99 >= 1000:
                out.append(f"The load generator alone (selftest at scenario 5's rate and shape, no broker) "
                           f"has a p99 of {p99:,.0f} µs: the < 1 ms target of scenario 5 cannot be "
                           f"shown with one load-generator core at this rate over 50 pairs.")
            elif p99 is not None:
                out.append(f"The load generator alone at scenario 5's rate and shape has a p99 of "
                           f"{p99:,.0f} µs (selftest, no broker).")
    return out + ctx["notes"]


def build_summary(ctx: dict) -> None:
    """Rows of the summary table and which targets are met."""
    brokers, results = ctx["brokers"], ctx["results"]
    peers = [b for b in brokers if b.name != "ringmq"]

    def meds(key, mkey):
        return {b.name: med([metric(mkey, r) for r in results[key].get(b.name, [])]) for b in brokers}

    def sums(key, mkey, unit):
        return [summary([metric(mkey, r) for r in results[key].get(b.name, [])], unit) for b in brokers]

    def ratios(m):
        return [f"{m['ringmq'] / m[p.name]:.2f}x" if m.get("ringmq") is not None and m.get(p.name) else "–"
                for p in peers]

    rows = []
    if "p2p" in results:
        m = meds("p2p", "in")
        r = m["ringmq"] / m["mosquitto"] if m["mosquitto"] else None
        rows.append(["1 p2p QoS 0", "msg/s delivered", *sums("p2p", "in", "msg/s"), *ratios(m),
                     TARGETS["p2p"], met(r >= 20 if r else None)])
    if "fanout" in results:
        m = meds("fanout", "in")
        r = m["ringmq"] / m["mosquitto"] if m["mosquitto"] else None
        rows.append(["2 fan-out 1→100 QoS 0", "msg/s delivered", *sums("fanout", "in", "msg/s"), *ratios(m),
                     TARGETS["fanout"], met(r >= 30 if r else None)])
    if "fanin" in results:
        m = meds("fanin", "in")
        r = m["ringmq"] / m["mosquitto"] if m["mosquitto"] else None
        lost = [metric("lost", x) for x in results["fanin"].get("ringmq", [])]
        zero = all(v == 0 for v in lost)
        rows.append(["3 fan-in 100→1 QoS 1", "msg/s delivered", *sums("fanin", "in", "msg/s"), *ratios(m),
                     TARGETS["fanin"], met((r >= 25 and zero) if r else None)])
        rows.append(["3 fan-in 100→1 QoS 1", "messages lost (sum of runs)",
                     *[f"{sum(metric('lost', x) or 0 for x in results['fanin'].get(b.name, [])):,}" for b in brokers],
                     *["–" for _ in peers], "0 for ringmq", met(zero)])
    if "faninDefault" in results:
        m = meds("faninDefault", "in")
        lost = [metric("lost", x) for x in results["faninDefault"].get("ringmq", [])]
        zero = bool(lost) and all(v == 0 for v in lost)
        rows.append(["3b fan-in 100→1 QoS 1, ringmq defaults", "msg/s delivered",
                     *sums("faninDefault", "in", "msg/s"), *ratios(m), "", ""])
        rows.append(["3b fan-in 100→1 QoS 1, ringmq defaults", "messages lost (sum of runs)",
                     *[f"{sum(metric('lost', x) or 0 for x in results['faninDefault'].get(b.name, [])):,}"
                       for b in brokers],
                     *["–" for _ in peers], TARGETS["faninDefault"], met(zero)])
    if "lat20k" in results:
        for q, label in (("p50", "p50"), ("p99", "p99"), ("p999", "p99.9")):
            m = meds("lat20k", q)
            r = m["ringmq"] / m["mosquitto"] if m["mosquitto"] else None
            rows.append(["4 QoS 1 p2p at 20k msg/s", f"latency {label}", *sums("lat20k", q, "us"), *ratios(m),
                         TARGETS["lat20k"] if q == "p99" else "", met(r <= 0.75 if r else None) if q == "p99" else ""])
    if "lathalf" in results:
        rate = results["lathalf"]["_rate"]
        m = meds("lathalf", "p99")
        rows.append([f"5 QoS 0 p2p at {rate:,.0f} msg/s", "latency p99", *sums("lathalf", "p99", "us"), *ratios(m),
                     TARGETS["lathalf"], met(m["ringmq"] < 1000 if m["ringmq"] is not None else None)])
        rows.append([f"5 QoS 0 p2p at {rate:,.0f} msg/s", "rate achieved", *sums("lathalf", "in", "msg/s"),
                     *ratios(meds("lathalf", "in")), "", ""])
    if "idle" in results:
        m = meds("idle", "rss_per_conn_b")
        rows.append(["6 10k idle v5 connections", "RSS per connection", *sums("idle", "rss_per_conn_b", "B"),
                     *ratios(m), TARGETS["idle_rss"], met(m["ringmq"] <= 1024 if m["ringmq"] is not None else None)])
        m = meds("idle", "conn_per_s")
        rows.append(["6 10k idle v5 connections", "connect rate (conn/s)", *sums("idle", "conn_per_s", "conn/s"),
                     *ratios(m), TARGETS["idle_rate"], met(m["ringmq"] >= 20000 if m["ringmq"] is not None else None)])
    if "idleTls" in results:
        m = meds("idleTls", "rss_per_conn_b")
        rows.append([f"7 {IDLE_TLS_CONNECTIONS // 1000}k idle v5 TLS connections", "RSS per connection",
                     *sums("idleTls", "rss_per_conn_b", "B"), *ratios(m), TARGETS["idle_tls_rss"],
                     met(m["ringmq"] < 8192 if m["ringmq"] is not None else None)])
    if "tlsRate" in results:
        m = meds("tlsRate", "conn_per_s")
        rows.append(["8 TLS handshakes", "handshakes per second", *sums("tlsRate", "conn_per_s", "conn/s"),
                     *ratios(m), "", ""])
    ctx["summary_rows"] = rows


# ---------------------------------------------------------------- main

def main() -> int:
    t0 = time.monotonic()
    # This script, its sampler and the load generator's main thread stay off the
    # broker's CPU (brokers are placed on it with taskset).
    os.sched_setaffinity(0, {LOADGEN_CPU})
    ring_bin = os.environ.get("RINGMQ_BIN") or str(REPO / "target/release/ringmq")
    lg_bin = os.environ.get("LOADGEN_BIN") or str(REPO / "target/release/ringmq-loadgen")
    mosq_bin = os.environ.get("MOSQUITTO_BIN") or "mosquitto"
    flashmq = os.environ.get("FLASHMQ", "").strip()
    doc = Path(os.environ.get("BENCH_DOC") or REPO / "docs/benchmarks.md").resolve()
    only = {s.strip() for s in os.environ.get("BENCH_ONLY", "").split(",") if s.strip()}

    for path, what in ((ring_bin, "ringmq"), (lg_bin, "ringmq-loadgen")):
        if not os.access(path, os.X_OK):
            raise BenchError(f"{what} binary not found at {path}: run `make build`")
    if shutil.which("taskset") is None:
        raise BenchError("taskset not found (util-linux)")
    if (os.cpu_count() or 1) < 2:
        raise BenchError("needs 2 CPUs: the broker on CPU 0, the load generator on CPU 1")
    brokers = [BrokerKind("ringmq", "ringmq", ring_bin),
               BrokerKind("mosquitto", "Mosquitto", which(mosq_bin, "mosquitto (apt-get install mosquitto)"))]
    if flashmq:
        brokers.append(BrokerKind("flashmq", "FlashMQ", which(flashmq, "FlashMQ (FLASHMQ=)")))
    brokers[0].version = "ringmq " + sh([ring_bin, "--version"]).replace("ringmq", "").strip()
    brokers[1].version = (sh([brokers[1].binary, "-h"]).splitlines() or ["?"])[0]
    if flashmq:
        brokers[2].version = (sh([brokers[2].binary, "--version"]).splitlines() or ["?"])[0]

    loadavg_start = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    nofile = raise_nofile()
    plt = ensure_matplotlib()
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    workdir = (REPO / "target" / "bench" / stamp).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    lg = Loadgen(lg_bin, workdir / "reports")
    lg.outdir.mkdir()
    log(f"{len(brokers)} brokers, {REPEAT} repetitions{' (quick)' if QUICK else ''}; files in {workdir}")

    notes: list[str] = []
    results: dict[str, dict] = {}
    broker_argv: dict[str, list[str]] = {}
    broker_config: dict[str, tuple[str, str]] = {}

    # Load generator headroom: its ceiling, and scenario 1's shape, before the brokers;
    # scenario 5's shape once its rate is known.
    selftest: list[tuple[str, list[Result]]] = []

    def run_selftest(label: str, args: list[str]) -> list[Result]:
        runs = []
        for rep in range(REPEAT):
            rep_json, argv, _ = lg.run(["selftest", *args, "--forwarder-cpu", str(BROKER_CPU)], None,
                                       f"st{len(selftest)}{rep}", f"selftest-{len(selftest)}-{rep}")
            runs.append(Result(rep_json, argv, []))
            log(f"selftest ({label}) {rep + 1}/{REPEAT}: {rep_json['throughput']['in_msg_s']:,.0f} msg/s, "
                f"busy {rep_json['loadgen_busy_pct']}")
        selftest.append((label, runs))
        return runs

    run_selftest("ceiling: 4 pairs, window 1000, batch 256",
                 ["-c", "4", "--max-outstanding", "1000", "--batch", "256",
                  "--warmup", WARMUP_TPUT, "-d", DURATION_SELFTEST])
    run_selftest("scenario 1's shape: 50 pairs, window 100, closed loop",
                 ["-c", "50", "-q", "0", "-s", "64", "--max-outstanding", "100",
                  "--warmup", WARMUP_TPUT, "-d", DURATION_SELFTEST])

    # Scenario 4's floor: the load generator alone at its rate and shape.
    if not only or "lat20k" in only:
        run_selftest("scenario 4's shape: 50 pairs QoS 1 paced at 20,000 msg/s",
                     ["-c", "50", "-q", "1", "-s", "64", "-r", "20000",
                      "--warmup", WARMUP_LAT, "-d", DURATION_LAT])

    half_env = os.environ.get("BENCH_HALF_RATE")
    run_set = scenarios(None)
    tls_files = None
    if any(sc.tls and (not only or sc.key in only) for sc in run_set):
        tls_files = make_tls_files(workdir / "tls")
        for sc in run_set:
            if "CAFILE" in sc.args:
                sc.args[sc.args.index("CAFILE")] = str(tls_files[0])
    keys = [s.key for s in run_set]
    if only - set(keys) - {"redirect"}:
        raise BenchError(f"BENCH_ONLY: unknown scenarios {sorted(only - set(keys) - {'redirect'})}; "
                         f"known: {keys + ['redirect']}")
    for sc in run_set:
        if only and sc.key not in only:
            continue
        if sc.key == "lathalf":
            if "p2p" in results:
                ring_max = med([r.report["throughput"]["in_msg_s"] for r in results["p2p"]["ringmq"]])
                half = ring_max / 2
            elif half_env:
                half = float(half_env)
            else:
                raise BenchError("scenario lathalf needs p2p in the same run (or BENCH_HALF_RATE)")
            half = max(50, round(half / 50) * 50)  # a whole number of msg/s per publisher
            sc.args[sc.args.index("HALF")] = str(int(half))
            results["_selftest_half"] = run_selftest(f"scenario 5's shape: 50 pairs paced at {half:,.0f} msg/s",
                         ["-c", "50", "-q", "0", "-s", "64", "-r", str(int(half)),
                          "--warmup", WARMUP_LAT, "-d", DURATION_LAT])
        results[sc.key] = {"_rate": 20000 if sc.key == "lat20k" else
                           (float(sc.args[sc.args.index("-r") + 1]) if "-r" in sc.args else None)}
        for rep in range(REPEAT_LAT if sc.kind == "latency" else REPEAT):
            for kind in brokers:
                if sc.only_brokers and kind.name not in sc.only_brokers:
                    continue
                tag = f"{sc.key}-{kind.name}-{rep}"
                defaults = sc.ringmq_defaults and kind.name == "ringmq"
                broker = Broker(kind, workdir / "brokers" / tag, defaults, tls_files if sc.tls else None)
                broker_argv.setdefault(kind.name, broker.argv)
                # As shown in the report: the port as $PORT, paths relative to the run directory.
                shown_tls = TlsListener("$TLS_PORT", *(f.relative_to(workdir) for f in tls_files)) \
                    if sc.tls else None
                broker_config.setdefault(kind.name + (" (scenario 3b: defaults)" if defaults else "") +
                                         (" (scenarios 7 and 8: TLS)" if sc.tls else ""),
                                         kind.config("$PORT", Path("brokers") / tag, defaults, shown_tls))
                prefix = f"b{os.getpid()}{sc.key}{rep}{kind.name[0]}"
                broker.start()
                try:
                    if sc.kind in ("idle", "handshake"):
                        res = run_idle(lg, broker, sc, prefix, tag)
                    else:
                        rep_json, argv, cpu = lg.run(sc.args, broker.port, prefix, tag, broker)
                        res = Result(rep_json, argv, broker.argv, cpu)
                    broker.check_alive(f"{sc.key} run {rep + 1}")
                finally:
                    broker.stop()
                for n in check_report(res.report, f"{kind.label} {sc.key} run {rep + 1}", res.argv):
                    notes.append(n)
                    log("note: " + n)
                results[sc.key].setdefault(kind.name, []).append(res)
                rj = res.report
                if sc.kind in ("idle", "handshake"):
                    log(f"{tag}: {res.extra['rss_per_conn_b']:,.0f} B/conn, {res.extra['conn_per_s']:,.0f} conn/s, "
                        f"broker/other CPU {res.cpu}")
                else:
                    lat = rj.get("latency_us") or {}
                    log(f"{tag}: in {rj['throughput']['in_msg_s']:,.0f} msg/s, p50 {lat.get('p50')} "
                        f"p99 {lat.get('p99')} us, lost {rj.get('lost')}, busy {rj['loadgen_busy_pct']}, "
                        f"broker/other CPU {res.cpu}")

    plot_path = doc.with_name(doc.stem + "-latency-cdf.png")
    if plt is None or not plot_cdf(plt, results, brokers, plot_path):
        plot_path = None
    ctx = {
        "brokers": brokers, "results": results, "selftest": selftest, "notes": notes,
        "scenarios": run_set, "workdir": workdir, "broker_argv": broker_argv, "broker_config": broker_config,
        "machine": machine(), "nofile": nofile, "loadavg_start": loadavg_start,
        "loadavg_end": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": sh(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"]) or "?",
        "loadgen_version": sh([lg_bin, "--version"]),
        "command": "make bench" + (f" FLASHMQ={flashmq}" if flashmq else "") +
                   (f" BENCH_REPEAT={REPEAT}" if os.environ.get("BENCH_REPEAT") else "") +
                   (" BENCH_BUSY_POLL=1" if BUSY_POLL else "") +
                   (f" BENCH_REPEAT_LAT={REPEAT_LAT}" if os.environ.get("BENCH_REPEAT_LAT") else ""),
    }
    build_summary(ctx)
    write_doc(doc, plot_path, ctx)
    if not only or "redirect" in only:
        # ringmq only (Mosquitto has no redirection): its own section, appended.
        import redirect
        try:
            section = redirect.run(ring_bin, lg_bin, workdir / "redirect", REPEAT, ctx["command"])
        except redirect.BenchError as e:
            raise BenchError(str(e)) from None
        with open(doc, "a") as f:
            f.write("\n" + section)
    log(f"wrote {doc}" + (f" and {plot_path}" if plot_path else "") +
        f" in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        die(str(e))
    except KeyboardInterrupt:
        die("interrupted")
