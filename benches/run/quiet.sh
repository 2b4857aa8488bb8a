#!/bin/bash
# Runs a measurement while compilers and valgrind on this machine are kept
# stopped (SIGSTOP, re-sent every second so new ones stop too), and resumes
# them after: wall-clock numbers on a 2-core box shared with builds mean
# nothing otherwise (docs/performance.md). Keep each use short (< 60 s).
#
#   benches/run/quiet.sh COMMAND [ARGS...]
pause() {
  pkill -"$1" -x rustc; pkill -"$1" -x cargo; pkill -"$1" -x cc
  pkill -"$1" -f '^/usr/bin/valgrind|callgrind-amd64'
  true
}
( while true; do pause STOP; sleep 1; done ) &
Q=$!
trap 'kill $Q 2>/dev/null; wait $Q 2>/dev/null; pause CONT' EXIT
sleep 1
"$@"
