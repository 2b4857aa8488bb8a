"""`[durable_sessions]` and `[redis]` with the real binary: a bad value
stops the start with exit code 2 naming the key and what is allowed; the
keys load from the file and the environment and show in --print-config."""
from __future__ import annotations

import os
import subprocess

import pytest

from conftest import RINGMQ_BIN

pytestmark = pytest.mark.ringmq_only("durable session configuration is ringmq's")


def assert_refused(broker_factory, key: str, config: dict | None = None, env: dict | None = None,
                   also: tuple[str, ...] = ()) -> str:
    b = broker_factory(config=config, env=env, start=False)
    code = b.wait_exit(10)
    log = b.log()
    assert code == 2, f"exit {code}:\n{log}"
    assert "configuration error" in log and key in log, log
    for fragment in also:
        assert fragment in log, log
    return log


@pytest.mark.parametrize("config,key,fragment", [
    ({"durable_sessions": {"backend": "rocksdb"}}, "durable_sessions.backend",
     'one of "builtin", "redis"'),
    ({"durable_sessions": {"engine": "rocksdb"}}, "durable_sessions.engine",
     'one of "log", "fjall"'),
    ({"durable_sessions": {"sync": "sometimes"}}, "durable_sessions.sync",
     'one of "none", "batch", "always"'),
    ({"durable_sessions": {"batch_interval": "0ms"}}, "durable_sessions.batch_interval",
     "from 1ms to 10s"),
    ({"durable_sessions": {"batch_interval": "1m"}}, "durable_sessions.batch_interval",
     "from 1ms to 10s"),
    ({"redis": {"servers": ["127.0.0.1"]}}, "redis.servers", '"host:port"'),
    ({"durable_sessions": {"enable": True, "backend": "redis"}, "redis": {"servers": []}},
     "redis.servers", 'at least one "host:port" when durable_sessions.backend is "redis"'),
])
def test_bad_durable_value_stops_the_start(broker_factory, config, key, fragment):
    assert_refused(broker_factory, key, config=config, also=(fragment,))


def test_bad_sync_from_env_names_the_variable(broker_factory):
    assert_refused(broker_factory, "durable_sessions.sync",
                   env={"RINGMQ_DURABLE_SESSIONS__SYNC": "fsync"},
                   also=("RINGMQ_DURABLE_SESSIONS__SYNC",))


def test_durable_keys_show_in_print_config():
    env = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
    env.update({
        "RINGMQ_DURABLE_SESSIONS__ENABLE": "true",
        "RINGMQ_DURABLE_SESSIONS__SYNC": "always",
        "RINGMQ_DURABLE_SESSIONS__ENGINE": "fjall",
        "RINGMQ_DURABLE_SESSIONS__BATCH_INTERVAL": "250ms",
        "RINGMQ_REDIS__SERVERS": "10.0.0.1:7000,10.0.0.2:7000",
    })
    p = subprocess.run([str(RINGMQ_BIN), "--print-config"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert ('[durable_sessions]\nenable = true\nbackend = "builtin"\nengine = "fjall"\n'
            'sync = "always"\nbatch_interval = "250ms"\n') in out, out
    assert 'servers = ["10.0.0.1:7000", "10.0.0.2:7000"]' in out, out
    # The store bounds, with their defaults.
    assert 'max_session_size = "256MB"\nmax_store_size = "16GB"\n' in out, out
