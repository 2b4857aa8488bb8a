"""The Debian package (issue 16 item 4, docs/install.md): `make deb`'s
script builds it, `dpkg -i` installs it on this machine, the installed
binary runs the way the systemd unit runs it, an upgrade over itself keeps
a locally edited conffile, remove keeps configuration and data, purge
deletes both.

It installs into this machine's root file system, so it needs root and
dpkg (CI has both); elsewhere it is skipped with the reason. Everything it
installs is purged at the end, whatever happens."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from clients import MqttClient
from conftest import IS_MOSQUITTO, REPO, RINGMQ_BIN, free_port

pytestmark = [
    pytest.mark.skipif(IS_MOSQUITTO, reason="packages ringmq itself"),
    pytest.mark.skipif(os.geteuid() != 0, reason="dpkg -i needs root"),
    pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="not a Debian system"),
]

UNIT = Path("/lib/systemd/system/ringmq.service")
CONF = Path("/etc/ringmq/ringmq.toml")
DATA = Path("/var/lib/ringmq")


def run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, check=check, timeout=300)


def installed() -> bool:
    r = run("dpkg-query", "-W", "-f=${Status}", "ringmq", check=False)
    return r.returncode == 0 and "installed" in r.stdout and "not-installed" not in r.stdout


def purge() -> None:
    run("dpkg", "--purge", "ringmq", check=False)


@pytest.fixture(scope="module")
def deb() -> Path:
    # The release binaries the rest of the suite tests (RINGMQ_BIN's
    # directory holds ringmq-loadgen too after `make build`).
    env = dict(os.environ, RELEASE_DIR=str(RINGMQ_BIN.parent))
    r = subprocess.run(["bash", str(REPO / "scripts" / "build-deb.sh")], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    path = REPO / r.stdout.strip().splitlines()[-1]
    assert path.is_file() and path.name.startswith("ringmq_") and path.suffix == ".deb"
    purge()  # a leftover from an interrupted run
    yield path
    purge()


def unit_directives() -> dict[str, str]:
    """The [Service] directives of the installed unit (last one wins)."""
    out: dict[str, str] = {}
    section = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out[key] = value
    return out


def start_like_the_unit(notify_path: str, mqtt_port: int, api_port: int) -> subprocess.Popen:
    """Runs ExecStart as the unit's User, in its WorkingDirectory, with its
    LimitNOFILE, and a NOTIFY_SOCKET as systemd gives a `Type=notify`
    service. Ports are moved off the defaults (tests never use 1883)."""
    unit = unit_directives()
    assert unit["Type"] == "notify"
    user = unit["User"]
    nofile = unit["LimitNOFILE"]
    # systemd starts a service with a clean environment: none of this
    # test run's RINGMQ_* variables (RINGMQ_BIN is not a config key).
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
    env.update(NOTIFY_SOCKET=notify_path,
               RINGMQ_LISTENERS__TCP__DEFAULT__BIND=f"127.0.0.1:{mqtt_port}",
               RINGMQ_API__BIND=f"127.0.0.1:{api_port}")
    env.pop("RUST_LOG", None)
    # The hard limit of this machine may be below the unit's; systemd would
    # raise it, prlimit here can only go as far as the hard limit allows.
    hard = run("sh", "-c", "ulimit -Hn").stdout.strip()
    soft = nofile if hard == "unlimited" or int(hard) >= int(nofile) else hard
    # The same for locked memory (io_uring's registered buffers); this
    # container cannot raise its hard limit.
    assert unit["LimitMEMLOCK"] == "infinity"
    memlock = run("sh", "-c", "ulimit -Hl").stdout.strip()
    memlock = memlock if memlock == "unlimited" else str(int(memlock) * 1024)
    cmd = ["prlimit", f"--nofile={soft}:{soft}", f"--memlock={memlock}:{memlock}", "--",
           "setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups", "--no-new-privs",
           *unit["ExecStart"].split()]
    return subprocess.Popen(cmd, cwd=unit["WorkingDirectory"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_install_run_upgrade_remove_purge(deb: Path, uid):
    # ---- install
    r = run("dpkg", "-i", str(deb))
    assert installed(), r.stdout + r.stderr
    for path, mode in [("/usr/bin/ringmq", 0o755), ("/usr/bin/ringmq-loadgen", 0o755),
                       (str(CONF), 0o640), (str(UNIT), 0o644),
                       ("/usr/share/doc/ringmq/tuning.md", 0o644),
                       ("/usr/share/doc/ringmq/copyright", 0o644),
                       ("/usr/share/doc/ringmq/install.md", 0o644),
                       ("/usr/share/doc/ringmq/security.md", 0o644),
                       ("/usr/share/ringmq/tuning/apply", 0o755),
                       ("/usr/share/ringmq/tuning/sysctl.conf", 0o644)]:
        st = os.stat(path)
        assert st.st_mode & 0o777 == mode, (path, oct(st.st_mode))
    assert "/etc/ringmq/ringmq.toml" in run("dpkg-query", "-W", "-f=${Conffiles}", "ringmq").stdout
    # The binary is the one built here, stripped.
    assert run("/usr/bin/ringmq", "--version").stdout.startswith("ringmq ")
    # The service user and its data directory.
    pw = run("getent", "passwd", "ringmq").stdout.strip().split(":")
    assert pw[5] == str(DATA) and pw[6] == "/usr/sbin/nologin", pw
    assert int(pw[2]) < 1000, "a system user"
    st = DATA.stat()
    assert (st.st_uid, st.st_mode & 0o777) == (int(pw[2]), 0o750)
    assert 'data_dir = "/var/lib/ringmq"' in CONF.read_text()
    # The unit: clean for systemd-analyze, with the limits and sandbox asked.
    verify = run("systemd-analyze", "verify", str(UNIT), check=False)
    assert verify.returncode == 0 and "ringmq" not in verify.stderr, verify.stderr
    unit = unit_directives()
    for key, value in [("Restart", "on-failure"), ("ProtectSystem", "strict"),
                       ("ReadWritePaths", str(DATA)), ("NoNewPrivileges", "yes"),
                       ("LimitMEMLOCK", "infinity"), ("ExecReload", "/bin/kill -HUP $MAINPID")]:
        assert unit.get(key) == value, (key, unit.get(key))
    assert int(unit["LimitNOFILE"]) >= 1 << 20

    # ---- run it the way the unit does
    notify_path = f"/tmp/ringmq-deb-notify-{os.getpid()}.sock"
    if os.path.exists(notify_path):
        os.unlink(notify_path)
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(notify_path)
    os.chmod(notify_path, 0o777)
    notify.settimeout(30)
    mqtt_port, api_port = free_port(), free_port()
    # A lock file a root-run broker left on this address (shard/lock.rs):
    # the packaged broker, another user, must still take the lock.
    stale = Path(f"/tmp/ringmq-127.0.0.1_{mqtt_port}.lock")
    stale.touch(mode=0o644)
    os.chown(stale, 0, 0)
    broker = start_like_the_unit(notify_path, mqtt_port, api_port)
    try:
        try:
            ready = notify.recv(4096).decode()
        except TimeoutError:
            broker.kill()
            pytest.fail("no READY=1 from the installed broker: " + broker.communicate()[0][-3000:])
        assert "READY=1" in ready.split("\n"), ready
        sub = MqttClient(mqtt_port, uid("deb-sub"))
        sub.subscribe("deb/t", qos=1)
        pub = MqttClient(mqtt_port, uid("deb-pub"))
        pub.publish("deb/t", b"installed", qos=1)
        assert sub.expect_message().payload == b"installed"
        # `systemctl reload` (ExecReload: SIGHUP) reloads, never stops.
        broker.send_signal(signal.SIGHUP)
        pub.publish("deb/t", b"after reload", qos=1)
        assert sub.expect_message().payload == b"after reload"
        assert broker.poll() is None
        pub.disconnect()
        sub.disconnect()
        # It runs as the unit's user, not root.
        status = Path(f"/proc/{broker.pid}/status").read_text()
        uid_line = next(l for l in status.splitlines() if l.startswith("Uid:"))
        assert uid_line.split()[1] == pw[2], uid_line
        broker.send_signal(signal.SIGTERM)
        out, _ = broker.communicate(timeout=30)
        assert broker.returncode == 0, out
        assert notify.recv(4096).decode().startswith("STOPPING=1")
    finally:
        if broker.poll() is None:
            broker.kill()
            broker.wait()
        notify.close()
        os.unlink(notify_path)
        stale.unlink(missing_ok=True)

    # ---- upgrade over itself: a locally edited conffile is kept
    edited = CONF.read_text() + "\n# edited by the administrator\n"
    CONF.write_text(edited)
    (DATA / "kept").write_text("data")
    run("dpkg", "-i", str(deb))
    assert installed()
    assert CONF.read_text() == edited

    # ---- remove keeps configuration and data
    run("dpkg", "--remove", "ringmq")
    assert not Path("/usr/bin/ringmq").exists()
    assert not UNIT.exists()
    assert CONF.read_text() == edited
    assert (DATA / "kept").read_text() == "data"

    # ---- purge deletes both
    run("dpkg", "--purge", "ringmq")
    assert not CONF.exists() and not Path("/etc/ringmq").exists()
    assert not DATA.exists()
    assert run("dpkg-query", "-W", "ringmq", check=False).returncode != 0 or not installed()
