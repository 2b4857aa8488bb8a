#!/usr/bin/env bash
# Tests for tuning/check and tuning/apply. Needs no root and changes nothing on
# the machine: the real kernel is only read (check --json, apply --dry-run);
# every write goes to a fake /proc/sys tree and a fake /etc under a temp dir.
# Exit status 0 when every case passes; prints "N passed, N failed" last.
set -u
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

ok() { passed=$((passed + 1)); echo "ok   $1"; }
fail() { failed=$((failed + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && sed 's/^/     /' <<<"$2"; }

# $1 name, $2 python expression over `d` (the parsed JSON), $3 JSON text.
check_json() {
    if out=$(python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
assert '"$2"', "assertion failed"
' <<<"$3" 2>&1); then ok "$1"; else fail "$1" "$out"; fi
}

# --- the real machine, read only ------------------------------------------

json=$("$here/check" --json)
status=$?
if [ "$status" -le 1 ]; then ok "check --json exits 0 or 1 (got $status)"; else fail "check --json exit $status"; fi
check_json "check --json has ok, critical_failures and knobs" \
    'isinstance(d["ok"], bool) and isinstance(d["critical_failures"], list) and len(d["knobs"]) >= 20' "$json"
check_json "every knob row has the documented fields and a known status" \
    'all(set(k) >= {"name","kind","current","recommended","mode","status","critical","fails","note"} and k["status"] in ("OK","LOW","HIGH","INFO","MISSING") for k in d["knobs"])' "$json"
check_json "the knobs the brief names are all checked" \
    'set(k["name"] for k in d["knobs"]) >= {"net.core.somaxconn","net.ipv4.tcp_max_syn_backlog","net.ipv4.ip_local_port_range","net.core.rmem_max","net.core.wmem_max","net.ipv4.tcp_rmem","net.ipv4.tcp_wmem","net.core.netdev_max_backlog","fs.file-max","fs.nr_open","net.ipv4.tcp_tw_reuse","net.ipv4.tcp_fin_timeout","net.core.busy_poll","net.core.busy_read","kernel.io_uring_disabled","nofile soft","nofile hard","memlock soft","memlock hard"}' "$json"
check_json "ok is false exactly when a critical check fails" \
    'd["ok"] == (not d["critical_failures"]) and d["critical_failures"] == [k["name"] for k in d["knobs"] if k["fails"]]' "$json"
if [ "$status" -eq "$(python3 -c 'import json,sys; print(0 if json.loads(sys.stdin.read())["ok"] else 1)' <<<"$json")" ]; then
    ok "check's exit status matches ok"
else
    fail "check's exit status $status does not match ok"
fi
if "$here/check" --connections 1 >/dev/null; [ $? -le 1 ]; then ok "check table output runs"; else fail "check table output"; fi

out=$("$here/apply" --dry-run --backup-dir "$tmp/never" 2>&1)
status=$?
if [ "$status" -eq 0 ]; then ok "apply --dry-run exits 0"; else fail "apply --dry-run exit $status" "$out"; fi
if grep -qvE '^(would set [a-z0-9_.-]+: .+ -> .+|would install .+ -> .+|would back up current values to .+|nothing to change: .+|note: .+|warning: .+)$' <<<"$out"; then
    fail "apply --dry-run prints only plan lines" "$out"
else
    ok "apply --dry-run prints only plan lines"
fi
if [ ! -e "$tmp/never" ]; then ok "apply --dry-run writes no backup"; else fail "apply --dry-run wrote $tmp/never"; fi

# --- a fake kernel ------------------------------------------------------------

make_proc() { # $1 dir; values as on a default 6.x kernel, io_uring off (the
    # kernel separates numbers with tabs; the scripts accept either)
    local p="$1"
    mkdir -p "$p/kernel" "$p/net/core" "$p/net/ipv4" "$p/fs" "$p/vm"
    echo 2 >"$p/kernel/io_uring_disabled"
    echo 128 >"$p/net/core/somaxconn"
    echo 512 >"$p/net/ipv4/tcp_max_syn_backlog"
    echo 1 >"$p/net/ipv4/tcp_syncookies"
    echo 32768 60999 >"$p/net/ipv4/ip_local_port_range"
    echo 2 >"$p/net/ipv4/tcp_tw_reuse"
    echo 60 >"$p/net/ipv4/tcp_fin_timeout"
    echo 212992 >"$p/net/core/rmem_max"
    echo 212992 >"$p/net/core/wmem_max"
    echo 4096 131072 6291456 >"$p/net/ipv4/tcp_rmem"
    echo 4096 16384 4194304 >"$p/net/ipv4/tcp_wmem"
    echo 1 >"$p/net/ipv4/tcp_slow_start_after_idle"
    echo 1000 >"$p/net/core/netdev_max_backlog"
    echo 0 >"$p/net/core/busy_poll"
    echo 0 >"$p/net/core/busy_read"
    echo 9223372036854775807 >"$p/fs/file-max"
    echo 1048576 >"$p/fs/nr_open"
    echo 65530 >"$p/vm/max_map_count"
}
cat >"$tmp/limits" <<'EOF'
Limit                     Soft Limit           Hard Limit           Units
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
EOF
proc="$tmp/proc"
make_proc "$proc"

json=$("$here/check" --json --proc-sys "$proc" --limits-file "$tmp/limits" --connections 100000 --shards 4)
status=$?
if [ "$status" -eq 1 ]; then ok "check fails on a fake untuned kernel"; else fail "check exit $status on a fake untuned kernel"; fi
check_json "io_uring_disabled=2, somaxconn=128 and nofile 1024 are the critical failures" \
    'set(d["critical_failures"]) == {"kernel.io_uring_disabled","net.core.somaxconn","nofile soft"}' "$json"
check_json "memlock 8 MiB is enough for 4 shards (LOW, not critical)" \
    '[(k["status"], k["fails"]) for k in d["knobs"] if k["name"] == "memlock soft"] == [("LOW", False)]' "$json"
check_json "a file-max above the recommendation is OK" \
    '[k["status"] for k in d["knobs"] if k["name"] == "fs.file-max"] == ["OK"]' "$json"
json=$("$here/check" --json --proc-sys "$proc" --limits-file "$tmp/limits" --shards 16)
check_json "memlock 8 MiB is critical for 16 shards" \
    '"memlock soft" in d["critical_failures"]' "$json"

backups="$tmp/backups"
etc="$tmp/etc"
fake=(--proc-sys "$proc" --etc "$etc" --backup-dir "$backups")
out=$("$here/apply" "${fake[@]}" --persist 2>&1)
status=$?
if [ "$status" -eq 0 ]; then ok "apply on the fake kernel exits 0"; else fail "apply exit $status" "$out"; fi
if [ "$(cat "$proc/kernel/io_uring_disabled")" = 0 ] && [ "$(cat "$proc/net/core/somaxconn")" = 4096 ] &&
    [ "$(cat "$proc/net/ipv4/tcp_rmem")" = "4096 131072 16777216" ] &&
    [ "$(cat "$proc/fs/file-max")" = 9223372036854775807 ]; then
    ok "apply raised what was low and kept what was higher"
else
    fail "apply values" "$(grep -r . "$proc")"
fi
if cmp -s "$here/sysctl.conf" "$etc/sysctl.d/90-ringmq.conf" && cmp -s "$here/limits.conf" "$etc/security/limits.d/90-ringmq.conf"; then
    ok "apply --persist installed both files"
else
    fail "apply --persist files" "$(find "$etc" -type f)"
fi
if [ "$(ls "$backups"/backup-*.conf 2>/dev/null | wc -l)" -eq 1 ] && grep -q '^net.core.somaxconn = 128$' "$backups"/backup-*.conf; then
    ok "apply wrote one backup with the old values"
else
    fail "apply backup" "$(ls -l "$backups" 2>&1)"
fi
sed 's/^Max open files .*/Max open files            1048576              1048576              files/' "$tmp/limits" >"$tmp/limits-tuned"
json=$("$here/check" --json --proc-sys "$proc" --limits-file "$tmp/limits-tuned")
check_json "check passes after apply (and raised nofile)" 'd["ok"]' "$json"

out=$("$here/apply" "${fake[@]}" --persist 2>&1)
if [ $? -eq 0 ] && grep -q '^nothing to change' <<<"$out" && [ "$(ls "$backups"/backup-*.conf | wc -l)" -eq 1 ]; then
    ok "a second apply changes nothing and writes no backup"
else
    fail "apply is not idempotent" "$out"
fi

out=$("$here/apply" "${fake[@]}" --revert 2>&1)
status=$?
make_proc "$tmp/expected"
if [ "$status" -eq 0 ] && diff -r "$tmp/expected" "$proc" >/dev/null && [ ! -e "$etc/sysctl.d/90-ringmq.conf" ] &&
    [ ! -e "$etc/security/limits.d/90-ringmq.conf" ]; then
    ok "apply --revert restores every value and removes the installed files"
else
    fail "apply --revert" "$out"$'\n'"$(diff -r "$tmp/expected" "$proc")"
fi

# A knob the kernel refuses (here: a link to a read-only sysctl, which even root
# cannot write) is reported, the others are still applied, and the exit status is 1.
rm "$proc/net/core/somaxconn" && ln -s /proc/sys/kernel/cap_last_cap "$proc/net/core/somaxconn"
out=$("$here/apply" "${fake[@]}" 2>&1)
status=$?
if [ "$status" -eq 1 ] && grep -q 'net.core.somaxconn: cannot set' <<<"$out" &&
    [ "$(cat "$proc/net/core/netdev_max_backlog")" = 16384 ]; then
    ok "a refused knob is reported, the rest applied, exit 1"
else
    fail "refused knob (exit $status)" "$out"
fi

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
