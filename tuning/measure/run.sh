#!/usr/bin/env bash
# Measures two knobs on loopback, inside a private network namespace so the
# host's sysctls and other processes are never touched (net.core.somaxconn,
# tcp_rmem and tcp_wmem are per namespace; the namespace goes away at exit).
# Needs root (unshare -n) and target/release/ringmq (cargo build --release).
#
#   tuning/measure/run.sh storm       # somaxconn vs a connection storm
#   tuning/measure/run.sh buffers     # tcp_rmem/tcp_wmem vs throughput
#
# The broker runs one shard on CPU 0, the load tool on CPU 1. Results are the
# JSON lines of mqtt_load.py, one per setting and repetition; docs/tuning.md
# has the numbers from this machine.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${RINGMQ_BIN:-$root/target/release/ringmq}"
what="${1:-}"
port="${PORT:-27183}"
reps="${REPS:-3}"

if [ "${IN_NETNS:-}" != 1 ]; then
    [ -x "$bin" ] || { echo "no $bin: cargo build --release" >&2; exit 2; }
    case "$what" in storm | buffers) ;; *) echo "usage: $0 storm|buffers" >&2; exit 2 ;; esac
    exec unshare -n env IN_NETNS=1 "$0" "$@"
fi

ip link set lo up
tmp="$(mktemp -d)"
broker_pid=""
cleanup() {
    [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null
    rm -rf "$tmp"
}
trap cleanup EXIT

start_broker() {
    # A new port per start: the broker's start-up probe bind fails with
    # EADDRINUSE while the previous run's TIME_WAIT sockets hold the port.
    port=$((port + 1))
    cat >"$tmp/ringmq.toml" <<EOF
[node]
shards = 1
[listeners.tcp.default]
bind = "127.0.0.1:$port"
max_connections = 100000
EOF
    # RINGMQ_BIN names the binary to measure; the broker would read it as a
    # config key (RINGMQ_<KEY> overlays) and refuse to start.
    env -u RINGMQ_BIN taskset -c 0 "$bin" --config "$tmp/ringmq.toml" >"$tmp/broker.log" 2>&1 &
    broker_pid=$!
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && return 0
        sleep 0.05
    done
    echo "broker did not start:" >&2
    cat "$tmp/broker.log" >&2
    exit 1
}

stop_broker() {
    kill "$broker_pid"
    wait "$broker_pid" 2>/dev/null || true
    broker_pid=""
}

case "$what" in
storm)
    connections="${CONNECTIONS:-8000}"
    ulimit -n 20000
    for somaxconn in 128 1024 4096; do
        sysctl -qw net.core.somaxconn="$somaxconn"
        for rep in $(seq "$reps"); do
            start_broker # a fresh listener, so the backlog is taken at listen()
            result=$(taskset -c 1 python3 "$here/mqtt_load.py" storm 127.0.0.1 "$port" "$connections")
            echo "somaxconn=$somaxconn rep=$rep $result"
            stop_broker
        done
    done
    ;;
buffers)
    seconds="${SECONDS_PER_RUN:-5}"
    payload="${PAYLOAD_BYTES:-4096}"
    for setting in "4096 16384 65536|4096 16384 65536" \
        "4096 131072 6291456|4096 16384 4194304" \
        "4096 131072 16777216|4096 16384 16777216"; do
        sysctl -qw net.ipv4.tcp_rmem="${setting%|*}" net.ipv4.tcp_wmem="${setting#*|}"
        for rep in $(seq "$reps"); do
            start_broker
            result=$(taskset -c 1 python3 "$here/mqtt_load.py" throughput 127.0.0.1 "$port" "$seconds" "$payload")
            echo "tcp_rmem=\"${setting%|*}\" tcp_wmem=\"${setting#*|}\" rep=$rep $result"
            stop_broker
        done
    done
    ;;
esac
