#!/bin/bash
# Runs a measurement while compilers, valgrind (and, with QUIET_TREES, other
# engineers' process trees) are kept stopped: see benches/run/quiet.py.
#
#   benches/run/quiet.sh COMMAND [ARGS...]
exec python3 "$(dirname "$0")/quiet.py" "$@"
