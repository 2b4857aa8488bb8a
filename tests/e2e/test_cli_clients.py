"""Debian's mosquitto_pub / mosquitto_sub against the broker, MQTT 3.1.1 and 5."""
import shutil
import subprocess
import threading
import time

import pytest

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(not (shutil.which("mosquitto_pub") and shutil.which("mosquitto_sub")),
                       reason="mosquitto-clients not installed (scripts/install-test-deps.sh)"),
]

# Line-buffer mosquitto_sub so its -d SUBACK line reaches us before any message does.
STDBUF = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
VERSIONS = {"v311": "mqttv311", "v5": "5"}


class Sub:
    """mosquitto_sub in the background; .ready once its SUBACK arrived (-d output)."""

    def __init__(self, broker, args, count):
        self.argv = STDBUF + ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.listen_port), "-d", "-v",
                     "-C", str(count), "-W", "20"] + args
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True)
        self.lines, self.debug = [], []
        self.ready = threading.Event()
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()
        assert self.ready.wait(10), f"mosquitto_sub never got a SUBACK: {self.debug}"

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            if line.startswith("Client ") or line.startswith("Subscribed"):
                self.debug.append(line)
                if "SUBACK" in line or line.startswith("Subscribed"):
                    self.ready.set()
            else:
                self.lines.append(line)

    def result(self, timeout=15):
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise AssertionError(f"mosquitto_sub still waiting; got {self.lines}")
        self.t.join(2)
        return rc, self.lines


def pub(broker, *args, stdin=None):
    argv = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.listen_port)] + list(args)
    r = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=20)
    assert r.returncode == 0, f"{argv} -> {r.returncode}: {r.stdout} {r.stderr}"
    return r


@pytest.mark.parametrize("ver", VERSIONS.keys())
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_pub_sub(broker, uid, ver, qos):
    topic = uid("cli")
    s = Sub(broker, ["-V", VERSIONS[ver], "-q", str(qos), "-t", topic], count=3)
    for i in range(3):
        pub(broker, "-V", VERSIONS[ver], "-q", str(qos), "-t", topic, "-m", f"msg {i}")
    rc, lines = s.result()
    assert rc == 0 and lines == [f"{topic} msg {i}" for i in range(3)]


@pytest.mark.parametrize("ver", VERSIONS.keys())
def test_wildcard_and_lines_from_stdin(broker, uid, ver):
    p = uid("cli")
    s = Sub(broker, ["-V", VERSIONS[ver], "-q", "1", "-t", f"{p}/+/x"], count=50)
    pub(broker, "-V", VERSIONS[ver], "-q", "1", "-t", f"{p}/a/x", "-l",
        stdin="".join(f"line{i}\n" for i in range(50)))
    rc, lines = s.result()
    assert rc == 0 and lines == [f"{p}/a/x line{i}" for i in range(50)]


@pytest.mark.parametrize("ver", VERSIONS.keys())
def test_retained(broker, uid, ver):
    topic = uid("cli")
    pub(broker, "-V", VERSIONS[ver], "-q", "1", "-r", "-t", topic, "-m", "kept")
    s = Sub(broker, ["-V", VERSIONS[ver], "-t", topic], count=1)
    rc, lines = s.result()
    assert rc == 0 and lines == [f"{topic} kept"]
    # -n sends a zero-length retained message: it clears the topic.
    pub(broker, "-V", VERSIONS[ver], "-r", "-n", "-t", topic)
    r = subprocess.run(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(broker.listen_port),
                        "-V", VERSIONS[ver], "-t", topic, "-C", "1", "-W", "1", "-v"],
                       capture_output=True, text=True, timeout=10)
    assert r.stdout.strip() == "", f"retained message not cleared: {r.stdout!r}"


def test_v5_user_property_to_paho(broker, uid):
    topic = uid("cli")
    c = broker.client(uid("paho"))
    c.subscribe(topic, qos=1)
    pub(broker, "-V", "5", "-q", "1", "-t", topic, "-m", "hi",
        "-D", "publish", "user-property", "origin", "cli",
        "-D", "publish", "content-type", "text/plain")
    m = c.expect_message()
    assert m.payload == b"hi"
    assert m.props.get("user_property") == [("origin", "cli")]
    assert m.props.get("content_type") == "text/plain"


def test_paho_to_mosquitto_sub_v311_and_v5(broker, uid):
    topic = uid("cli")
    s3 = Sub(broker, ["-V", "mqttv311", "-q", "2", "-t", topic], count=5)
    s5 = Sub(broker, ["-V", "5", "-q", "2", "-t", topic], count=5)
    p = broker.client(uid("paho"))
    for i in range(5):
        p.publish(topic, f"p{i}", qos=2)
    for s in (s3, s5):
        rc, lines = s.result()
        assert rc == 0 and lines == [f"{topic} p{i}" for i in range(5)]
