"""Shared by tuning/check and tuning/apply: the knobs, read from sysctl.conf and
limits.conf (the `# check:` line above each setting), and how to read the
running values without root (/proc/sys, /proc/self/limits).

Python 3 standard library only.
"""

import os
import re

HERE = os.path.dirname(os.path.abspath(__file__))
SYSCTL_CONF = os.path.join(HERE, "sysctl.conf")
LIMITS_CONF = os.path.join(HERE, "limits.conf")

# glommio 0.9 calls listen(fd, 1024): below this somaxconn truncates every
# shard's accept queue (src/net/tcp_socket.rs in glommio).
GLOMMIO_LISTEN_BACKLOG = 1024
# limits::IO_MEMORY_BYTES_PER_SHARD.
IO_MEMORY_BYTES_PER_SHARD = 1 << 20
# Locked memory beyond io_memory that a process may lock anyway (rings on old
# kernels, the allocator, libraries).
MEMLOCK_HEADROOM_BYTES = 1 << 20
# Files besides connections: listeners, io_urings, eventfds, logs, stores.
NOFILE_HEADROOM = 1024
UNLIMITED = float("inf")

# /proc/self/limits row name per limits.conf item.
LIMIT_ROWS = {"nofile": "Max open files", "memlock": "Max locked memory"}


class Knob:
    """One setting: where it comes from, the recommended value, how to compare."""

    def __init__(self, kind, name, recommended, mode, critical, comment):
        self.kind = kind  # "sysctl" or "limit"
        self.name = name  # "net.core.somaxconn" or "nofile soft"
        self.recommended = recommended  # string as written in the file
        self.mode = mode  # "min", "max", "equal", "info"
        self.critical = critical
        self.comment = comment  # the file's comment lines, joined

    def __repr__(self):
        return f"Knob({self.kind} {self.name} = {self.recommended} [{self.mode}])"


def _parse_tagged(path, parse_line):
    knobs = []
    comment, tag = [], None
    with open(path, encoding="utf-8") as f:
        for raw in f:
            line = raw.strip()
            if not line:
                comment, tag = [], None
                continue
            if line.startswith("#"):
                text = line.lstrip("#").strip()
                m = re.match(r"check:\s*(.*)$", text)
                if m:
                    tag = m.group(1).split()
                else:
                    comment.append(text)
                continue
            if tag is None:
                raise ValueError(f"{path}: no '# check:' line above: {line}")
            mode = tag[0]
            if mode not in ("min", "max", "equal", "info"):
                raise ValueError(f"{path}: unknown check mode {mode!r}")
            knob = parse_line(line, mode, "critical" in tag[1:], " ".join(comment))
            if knob is not None:
                knobs.append(knob)
            tag = None
    return knobs


def sysctl_knobs(path=SYSCTL_CONF):
    def parse(line, mode, critical, comment):
        name, _, value = line.partition("=")
        return Knob("sysctl", name.strip(), " ".join(value.split()), mode, critical, comment)

    return _parse_tagged(path, parse)


def limit_knobs(path=LIMITS_CONF):
    """One knob per (item, type); the domain (`*`, `root`) does not change the
    value a running process sees, so duplicates for root are folded."""
    seen = {}

    def parse(line, mode, critical, comment):
        domain, type_, item, value = line.split()
        key = f"{item} {type_}"
        if key in seen:
            return None
        seen[key] = True
        return Knob("limit", key, value, mode, critical, comment)

    return _parse_tagged(path, parse)


def sysctl_path(proc_sys, name):
    return os.path.join(proc_sys, *name.split("."))


def read_sysctl(proc_sys, name):
    """The running value as one space-separated string, or None if absent."""
    try:
        with open(sysctl_path(proc_sys, name), encoding="utf-8") as f:
            return " ".join(f.read().split())
    except OSError:
        return None


def numbers(value):
    """'4096 131072 6291456' -> [4096, 131072, 6291456]; None if not numeric."""
    try:
        return [int(x) for x in value.split()]
    except (ValueError, AttributeError):
        return None


def read_limits(limits_file="/proc/self/limits"):
    """{'nofile soft': n, 'nofile hard': n, 'memlock soft': bytes, ...};
    unlimited is float('inf'). memlock in bytes, as /proc reports it."""
    out = {}
    with open(limits_file, encoding="utf-8") as f:
        rows = f.read().splitlines()
    for item, row in LIMIT_ROWS.items():
        for line in rows:
            if line.startswith(row):
                fields = line[len(row):].split()
                for type_, value in zip(("soft", "hard"), fields[:2]):
                    out[f"{item} {type_}"] = UNLIMITED if value == "unlimited" else int(value)
    return out


def limit_value(knob):
    """The recommended limit in /proc units (memlock: KiB in limits.conf -> bytes)."""
    if knob.recommended in ("unlimited", "infinity", "-1"):
        return UNLIMITED
    value = int(knob.recommended)
    return value * 1024 if knob.name.startswith("memlock") else value


def compare(mode, current, recommended, name=""):
    """OK, LOW or HIGH (or INFO, MISSING). `current`/`recommended` are
    numbers or lists of numbers."""
    if current is None:
        return "MISSING"
    if mode == "info":
        return "INFO"
    if isinstance(current, list):
        if name.endswith("ip_local_port_range"):
            current, recommended = [current[1] - current[0]], [recommended[1] - recommended[0]]
        if mode == "min":
            # Three-number buffers: the autotuning maximum is what matters.
            current, recommended = current[-1], recommended[-1]
        elif current == recommended:
            return "OK"
        else:
            current, recommended = current[-1], recommended[-1]
    if current == recommended:
        return "OK"
    if mode == "min":
        return "OK" if current > recommended else "LOW"
    if mode == "max":
        return "OK" if current < recommended else "HIGH"
    return "LOW" if current < recommended else "HIGH"


def desired_sysctl(knob, current):
    """The value apply should write (string), or None when nothing to do."""
    if knob.mode == "info" or current is None:
        return None
    rec, cur = numbers(knob.recommended), numbers(current)
    if rec is None or cur is None or len(rec) != len(cur):
        return None if current == knob.recommended else knob.recommended
    if knob.mode == "equal":
        want = rec
    elif knob.name.endswith("ip_local_port_range"):
        want = rec if (cur[1] - cur[0]) < (rec[1] - rec[0]) else cur
    elif knob.mode == "min":
        want = [max(c, r) for c, r in zip(cur, rec)]
    else:
        want = [min(c, r) for c, r in zip(cur, rec)]
    return None if want == cur else " ".join(str(x) for x in want)


def fmt_limit(value):
    return "unlimited" if value == UNLIMITED else str(value)
