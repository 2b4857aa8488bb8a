"""Shards follow the process's CPU affinity mask: one shard per CPU of the mask,
each shard thread pinned to one of those CPUs and never outside them."""
import os
import re
import shutil
import subprocess

import pytest

pytestmark = pytest.mark.ringmq_only("shard placement is ringmq's design")


def _thread_cpus(pid):
    """{thread name: allowed CPU list} for every thread of `pid`."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                allowed = re.search(r"Cpus_allowed_list:\s*(\S+)", f.read()).group(1)
        except (FileNotFoundError, AttributeError):
            continue
        out[f"{name}/{tid}"] = allowed
    return out


def test_shards_pinned_inside_affinity_mask(broker_factory):
    if shutil.which("taskset") is None:
        pytest.skip("taskset (util-linux) not installed")
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs at least two CPUs")
    only = cpus[-1]
    # No node.shards: the default is one shard per CPU of the mask.
    b = broker_factory(config={"node": {"shards": None}}, spawn=False)
    b.argv = ["taskset", "-c", str(only)] + b.argv
    b.start()
    assert b.wait_log(r"ringmq starting.*shards=1\b", timeout=5), b.tail(20)
    threads = _thread_cpus(b.proc.pid)
    shard_threads = {k: v for k, v in threads.items() if k.startswith("ringmq-shard")}
    assert shard_threads, threads
    for name, allowed in threads.items():
        assert allowed == str(only), f"{name} may run on {allowed}, outside the mask {only}"
    b.check_alive()


def test_one_shard_per_cpu_pinned(broker_factory):
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs at least two CPUs")
    b = broker_factory(config={"node": {"shards": 2}})
    threads = _thread_cpus(b.proc.pid)
    # Each shard's threads (executor and its helper) are pinned to one CPU;
    # together the shards cover the first two CPUs of the mask.
    pinned = {v for k, v in threads.items() if k.startswith("ringmq-shard")}
    assert pinned == {str(c) for c in cpus[:2]}, threads
    b.check_alive()
