#!/bin/bash
# Instructions per delivered message on the publish path, a cost measure that
# other load on the machine does not move (docs/performance.md).
#
#   benches/run/callgrind.sh p2p|fanout|fanin [PORT]
#
# Runs target/release/ringmq with one shard under callgrind (CPU 0), zeroes
# the counters once it listens, drives the scenario closed loop for 10 s with
# the load generator (CPU 1), dumps, and prints Ir / messages received by the
# subscribers. The broker is the bottleneck under callgrind, so batching is
# that of a saturated broker. Profile: callgrind_annotate on the printed file.
set -euo pipefail
SCENARIO=${1:?p2p, fanout or fanin}
PORT=${2:-18899}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release
OUT=$ROOT/target/callgrind
mkdir -p "$OUT/data"
. "$ROOT/benches/run/one_shard.sh"
one_shard_config "$OUT/one-shard.toml" "$OUT/data" "$PORT" "# Instructions of work only: polling while idle would count too." "idle_poll_us = 0"
scenario_args "$SCENARIO"
rm -f "$OUT/$SCENARIO.callgrind"*
taskset -c 0 valgrind --tool=callgrind --compress-strings=no --callgrind-out-file="$OUT/$SCENARIO.callgrind" \
  "$BIN/ringmq" --config "$OUT/one-shard.toml" > "$OUT/$SCENARIO.broker.log" 2>&1 &
BROKER=$!
trap 'kill $BROKER 2>/dev/null || true' EXIT
for _ in $(seq 120); do
  ss -ltn | grep -q "127.0.0.1:$PORT " && break
  sleep 0.5
done
callgrind_control -z $BROKER > /dev/null 2>&1
taskset -c 1 "$BIN/ringmq-loadgen" "${ARGS[@]}" --warmup 0 -d 10 -h 127.0.0.1 -p "$PORT" \
  --cpus 1 --quiet --json "$OUT/$SCENARIO.json" > /dev/null
callgrind_control -d $BROKER > /dev/null 2>&1
kill $BROKER; wait $BROKER 2>/dev/null || true
DUMP=$(ls -t "$OUT/$SCENARIO.callgrind".* | head -1)
IR=$(awk '/^summary:/ {print $2}' "$DUMP")
python3 - "$OUT/$SCENARIO.json" "$IR" "$DUMP" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
ir, received = int(sys.argv[2]), d["received"]
print(f"{d['scenario']}: {ir:,} Ir / {received:,} messages received "
      f"(lost {d['lost']}) = {ir / received:,.0f} Ir per message; profile: {sys.argv[3]}")
PY
