#!/bin/bash
# Where a saturated shard's CPU goes, sampled (docs/performance.md).
#
#   benches/run/profile.sh p2p|fanout|fanin [PORT] [-- LOADGEN_OPTION...]
#
# Runs target/release/ringmq with one shard on CPU 0, drives the scenario
# closed loop with the load generator on CPU 1 (options after `--` are
# added, for example `--busy-poll`), records the broker with
# `perf record -F 999 --call-graph dwarf` for 4 s in the middle of the run,
# then prints the throughput, the shard's CPU share over those seconds and
# the symbols above 1 % of the samples. The recording stays in
# target/profile/perf.data for `perf report` / `perf annotate`.
#
# No hardware counters on these machines: samples come from cpu-clock, so a
# symbol's share is time, and a stall shows on the instruction after it.
set -euo pipefail
SCENARIO=${1:?p2p, fanout or fanin}
PORT=18898
if [[ $# -ge 2 && $2 != "--" ]]; then PORT=$2; fi
EXTRA=()
for ((i = 1; i <= $#; i++)); do
  if [[ ${!i} == "--" ]]; then EXTRA=("${@:i+1}"); break; fi
done
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=$ROOT/target/release
OUT=$ROOT/target/profile
rm -rf "$OUT/data"
mkdir -p "$OUT/data"
. "$ROOT/benches/run/one_shard.sh"
one_shard_config "$OUT/one-shard.toml" "$OUT/data" "$PORT"
scenario_args "$SCENARIO"
command -v perf >/dev/null || { echo "perf is not installed (linux-perf)" >&2; exit 2; }

taskset -c 0 "$BIN/ringmq" --config "$OUT/one-shard.toml" >"$OUT/broker.log" 2>&1 &
BROKER=$!
trap 'kill $BROKER 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
  sleep 0.1
done
"$BIN/ringmq-loadgen" "${ARGS[@]}" --warmup 1 -d 8 -h 127.0.0.1 -p "$PORT" --cpus 1 \
  --client-id-prefix prof --quiet --json "$OUT/report.json" "${EXTRA[@]}" &
LOADGEN=$!
sleep 3
ticks() { awk '{s += $14 + $15} END {print s}' /proc/"$BROKER"/task/*/stat; }
before=$(ticks); began=$(date +%s.%N)
perf record -F 999 --call-graph dwarf,16384 -p "$BROKER" -o "$OUT/perf.data" -- sleep 4 2>/dev/null >/dev/null
after=$(ticks); ended=$(date +%s.%N)
wait $LOADGEN
python3 - "$OUT/report.json" "$before" "$after" "$(getconf CLK_TCK)" "$began" "$ended" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
wall_s = float(sys.argv[6]) - float(sys.argv[5])
share = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4]) / wall_s * 100
print(f"delivered {report['throughput']['in_msg_s']:,.0f} msg/s (slower while recorded), "
      f"lost {report['lost']}, broker CPU {share:.0f} % while recorded")
PY
perf report -i "$OUT/perf.data" --no-children --sort sym -g none --percent-limit 1 2>/dev/null |
  grep -v '^#' | grep -v '^$'
