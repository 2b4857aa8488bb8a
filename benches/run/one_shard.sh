# Sourced by callgrind.sh and profile.sh: the one-shard broker config both
# run, and the closed-loop shapes of make bench's scenarios 1 to 3.
#
#   one_shard_config FILE DATA_DIR PORT [EXTRA_NODE_LINE...]
#   scenario_args SCENARIO      sets ARGS, or exits 2 on an unknown name

one_shard_config() {
  local file=$1 data=$2 port=$3
  shift 3
  {
    echo "[node]"
    echo "shards = 1"
    echo "data_dir = \"$data\""
    for line in "$@"; do echo "$line"; done
    echo
    echo "[listeners.tcp.default]"
    echo "bind = \"127.0.0.1:$port\""
    echo
    echo "[mqtt]"
    echo "max_inflight = 1000"
    echo "max_mqueue_len = 20000"
    echo
    echo "[log]"
    echo "level = \"warn\""
    echo
    echo "[api]"
    echo "enable = false"
  } > "$file"
}

scenario_args() {
  case $1 in
    p2p) ARGS=(p2p -c 50 -q 0 -s 64 --max-outstanding 100) ;;
    fanout) ARGS=(fanout --publishers 1 -c 100 -q 0 -s 64 --max-outstanding 1000) ;;
    fanin) ARGS=(fanin -c 100 --subscribers 1 -q 1 -s 64 --max-outstanding 100) ;;
    *) echo "unknown scenario $1" >&2; exit 2 ;;
  esac
}
