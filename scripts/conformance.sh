#!/usr/bin/env bash
# Runs the Eclipse Paho interoperability suite (MQTT 3.1.1 and 5.0) against a
# freshly started broker on a free loopback port.
#
#   PAHO_TESTING=/path/to/paho.mqtt.testing scripts/conformance.sh [311|5|all]
#
# PAHO_TESTING must point at a checkout of eclipse-paho/paho.mqtt.testing (never
# committed here). The wrapper paho_run.py comes from the shared folder beside
# the repository (shared/conformance/, see its README). RINGMQ_TEST_BROKER=mosquitto
# runs the suite against Debian's mosquitto instead, for comparison.
set -euo pipefail
cd "$(dirname "$0")/.."

which_suites=${1:-all}
if [ -z "${PAHO_TESTING:-}" ] || [ ! -d "${PAHO_TESTING}/interoperability" ]; then
  echo "PAHO_TESTING must point at a paho.mqtt.testing checkout (with interoperability/)." >&2
  echo "See shared/conformance/README.md." >&2
  exit 2
fi
runner=""
for d in "${RINGMQ_SHARED:-}" ../shared ../../shared; do
  if [ -n "$d" ] && [ -f "$d/conformance/paho_run.py" ]; then runner="$d/conformance/paho_run.py"; break; fi
done
if [ -z "$runner" ]; then
  echo "shared/conformance/paho_run.py not found beside the repository (set RINGMQ_SHARED)" >&2
  exit 2
fi

kind=${RINGMQ_TEST_BROKER:-ringmq}
bin=${RINGMQ_BIN:-target/release/ringmq}
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
if [ "$kind" = mosquitto ]; then
  # test_subscribe_failure expects subscribing to test/nosubscribe to be refused: an ACL.
  printf 'topic readwrite #\ntopic deny test/nosubscribe\n' >"$work/mosquitto.acl"
  printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_keepalive 60\nacl_file %s\n' \
    "$port" "$work/mosquitto.acl" >"$work/mosquitto.conf"
  cmd=(mosquitto -c "$work/mosquitto.conf")
else
  [ -x "$bin" ] || { echo "$bin not built: run make build" >&2; exit 2; }
  cat >"$work/ringmq.toml" <<TOML
[node]
name = "conformance@127.0.0.1"
data_dir = "$work/data"
[listeners.tcp.default]
bind = "127.0.0.1:$port"
[mqtt]
server_keepalive = 60
[log]
level = "warn"
# test_subscribe_failure expects subscribing to test/nosubscribe to be refused
# with 0x80, on 3.1.1 and on 5.0 (the Paho v5 test client accepts no other
# SUBACK failure code): an operator rule, as in EMQX, never a special case in
# the broker. See docs/authorization.md.
[authorization]
deny_reason = "unspecified_error"
[[authorization.rules]]
permission = "deny"
action = "subscribe"
topics = ["test/nosubscribe"]
TOML
  cmd=("$bin" --config "$work/ringmq.toml")
fi
ulimit -l unlimited 2>/dev/null || true
"${cmd[@]}" >"$work/broker.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 150); do
  python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/broker.log" >&2; exit 1; }
  sleep 0.1
done
echo "conformance: $kind on 127.0.0.1:$port (log: $work/broker.log)"
status=0
if [ "$which_suites" = all ] || [ "$which_suites" = 311 ]; then
  PAHO_TESTING=$PAHO_TESTING python3 "$runner" 311 --port "$port" || status=1
fi
if [ "$which_suites" = all ] || [ "$which_suites" = 5 ]; then
  PAHO_TESTING=$PAHO_TESTING python3 "$runner" 5 --port "$port" || status=1
fi
exit $status
