#!/usr/bin/env python3
"""Runs a measurement while compilers, test runs and valgrind on this machine
are kept stopped (SIGSTOP), and resumes them after (SIGCONT): wall-clock
numbers on a 2-core box shared with builds mean nothing otherwise
(docs/performance.md). Keep each use short (< 60 s).

    benches/run/quiet.py COMMAND [ARGS...]     (benches/run/quiet.sh is the same)

Stopped: every process named like a compiler or valgrind (NAMES), their
descendants, and every process tree whose working directory is under one of
the colon-separated paths in QUIET_TREES (e.g. other engineers' worktrees,
so their test brokers stop too). Never this process, its ancestors or the
command it runs.

/proc is scanned in this process, once before the command starts and then
every RESCAN_S seconds: a `pkill` costs about 15 ms of CPU here, and a loop
of them (the first version of this script) made the very stalls it was
meant to keep out of the measurement."""
import os
import signal
import subprocess
import sys

NAMES = {"rustc", "cargo", "cc", "cc1", "ld", "clippy-driver", "rustdoc",
         "valgrind", "callgrind-amd64-", "memcheck-amd64-"}
RESCAN_S = 5.0


def processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, name, working directory)."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            with open(f"/proc/{pid}/stat") as f:
                stat = f.read()
            name = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
            except OSError:
                cwd = ""
            out[pid] = (ppid, name, cwd)
        except (OSError, ValueError):
            continue
    return out


def targets(spared: set[int]) -> set[int]:
    procs = processes()
    mine, p = set(spared), os.getpid()
    while p in procs:
        mine.add(p)
        p = procs[p][0]
    trees = [t for t in os.environ.get("QUIET_TREES", "").split(":") if t]
    roots = {pid for pid, (_, name, cwd) in procs.items()
             if name in NAMES or any(cwd == t or cwd.startswith(t.rstrip("/") + "/") for t in trees)}
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in procs.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = set(), list(roots)
    while stack:
        pid = stack.pop()
        if pid in out or pid in mine:
            continue
        out.add(pid)
        stack.extend(children.get(pid, []))
    return out


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    stopped: set[int] = set()

    def stop(spared: set[int]) -> None:
        for pid in targets(spared) - stopped:
            try:
                os.kill(pid, signal.SIGSTOP)
                stopped.add(pid)
            except OSError:
                pass

    try:
        stop(set())
        stop(set())  # what the first pass raced with
        child = subprocess.Popen(sys.argv[1:])
        while True:
            try:
                return child.wait(timeout=RESCAN_S)
            except subprocess.TimeoutExpired:
                stop({child.pid})
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except OSError:
                pass


if __name__ == "__main__":
    sys.exit(main())
