#!/usr/bin/env bash
# Installs what `make test` needs beyond the Rust toolchain:
#   - Debian's mosquitto and mosquitto-clients (mosquitto_pub/sub are test clients;
#     the mosquitto broker is the reference for RINGMQ_TEST_BROKER=mosquitto)
#   - gdb: a failed e2e test prints the running broker's thread backtraces
#   - Debian's redis-server and redis-tools: tests/durable_redis.rs starts a Redis Cluster
#   - Debian's prometheus (the server and promtool): tests/e2e/test_prometheus.py
#     starts a real Prometheus that scrapes the broker and checks the format
#   - Node.js, npm and Chromium (Debian packages) and, with `npm ci` in tests/js,
#     MQTT.js and playwright-core as pinned in tests/js/package-lock.json
#     (tests/e2e/test_mqttjs.py; playwright-core drives Debian's chromium, it
#     downloads no browser of its own)
#   - the Python packages in tests/requirements.txt (paho-mqtt 2.x, pytest, pytest-timeout,
#     cryptography for the test certificates)
# Installs only what is missing; safe to run repeatedly and without a terminal.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

have_mosquitto() {
  { command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; } &&
    command -v mosquitto_pub >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1
}

if ! have_mosquitto || ! command -v gdb >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing mosquitto mosquitto-clients gdb (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends mosquitto mosquitto-clients gdb </dev/null
  else
    echo "warning: mosquitto/mosquitto_pub/mosquitto_sub missing and no apt-get; their tests will fail" >&2
  fi
fi

if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing prometheus (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # Only the binaries are used: the test starts its own server on free
    # ports; the package's service is not started here.
    $SUDO apt-get install -y -qq --no-install-recommends prometheus </dev/null
  else
    echo "warning: prometheus/promtool missing and no apt-get; tests/e2e/test_prometheus.py will fail" >&2
  fi
fi

# tests/e2e/test_haproxy_evacuation.py: a real HAProxy in front of the nodes,
# health-checking /api/v5/load_rebalance/availability_check. The package's
# service is not used: the test starts its own on free ports.
if ! command -v haproxy >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing haproxy (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends haproxy </dev/null
  else
    echo "warning: haproxy missing and no apt-get; tests/e2e/test_haproxy_evacuation.py will fail" >&2
  fi
fi

# tests/durable_redis.rs: a real Redis Cluster (3 masters, 3 replicas on
# loopback) started by scripts/redis-cluster.py; redis-cli creates the cluster.
# The package's service is not used.
if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing redis-server redis-tools (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends redis-server redis-tools </dev/null
  else
    echo "warning: redis-server/redis-cli missing and no apt-get; tests/durable_redis.rs will fail under CI" >&2
  fi
fi

# tests/e2e/test_deb.py: `systemd-analyze verify` on the packaged unit, `strip`
# and `objdump` in scripts/build-deb.sh (binutils), prlimit/setpriv (util-linux).
if ! command -v systemd-analyze >/dev/null 2>&1 || ! command -v objdump >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing systemd binutils (apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    $SUDO apt-get install -y -qq --no-install-recommends systemd binutils </dev/null
  else
    echo "warning: systemd-analyze/objdump missing and no apt-get; tests/e2e/test_deb.py will fail" >&2
  fi
fi

# Only what is missing: a machine with NodeSource's nodejs (which bundles npm and conflicts with
# Debian's npm package) still gets chromium.
js_missing() {
  command -v node >/dev/null 2>&1 || echo nodejs
  command -v npm >/dev/null 2>&1 || echo npm
  { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; } || echo chromium
}

JS_MISSING=$(js_missing | tr '\n' ' ')
if [ -n "${JS_MISSING// /}" ]; then
  if command -v apt-get >/dev/null 2>&1; then
    echo "installing ${JS_MISSING}(apt-get)" >&2
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    $SUDO apt-get install -y -qq --no-install-recommends $JS_MISSING ca-certificates </dev/null
  else
    echo "warning: ${JS_MISSING}missing and no apt-get; tests/e2e/test_mqttjs.py will fail" >&2
  fi
fi

# npm ci only when node_modules is missing or older than the lock file.
JS=tests/js
if command -v npm >/dev/null 2>&1 &&
  { [ ! -d "$JS/node_modules" ] || [ "$JS/package-lock.json" -nt "$JS/node_modules/.package-lock.json" ]; }; then
  echo "installing MQTT.js and playwright-core (npm ci in $JS)" >&2
  (cd "$JS" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error </dev/null)
fi

PY=${PYTHON:-python3}
if ! "$PY" - <<'PYEOF' 2>/dev/null
import importlib.metadata as m
import sys
ok = m.version("paho-mqtt").split(".")[0] == "2"
m.version("pytest"); m.version("pytest-timeout"); m.version("cryptography")
sys.exit(0 if ok else 1)
PYEOF
then
  echo "installing Python test dependencies (tests/requirements.txt)" >&2
  "$PY" -m pip install -q --disable-pip-version-check -r tests/requirements.txt </dev/null ||
    "$PY" -m pip install -q --disable-pip-version-check --break-system-packages -r tests/requirements.txt </dev/null
fi
