"""ringmq-loadgen `--pub-addrs` / `--sub-addrs` (issue 13, item 7): publishers and subscribers on
different servers. Without a cluster two brokers do not pass messages to each other, so delivery
across servers is shown with two listeners of one broker, and where connections land with two
independent brokers, counted by each broker's own admin API."""
from __future__ import annotations

import os
import subprocess

import pytest

from conftest import free_port
from test_ctl import wait_nodes_connections
from test_loadgen import LOADGEN_BIN, assert_no_loss, loadgen, short
from test_redirection import api

pytestmark = [pytest.mark.timeout(120), pytest.mark.ringmq_only("admin API, listener tables")]


def addr(port: int) -> str:
    return f"127.0.0.1:{port}"


def test_one_server_in_both_lists_is_the_default_run(broker, tmp_path):
    a = addr(broker.listen_port)
    plain = loadgen(tmp_path, "p2p", *short(broker.listen_port, "-c", "4", "-q", "1"))
    listed = loadgen(tmp_path, "p2p", *short(broker.listen_port, "-c", "4", "-q", "1",
                                              "--pub-addrs", a, "--sub-addrs", a))
    for r in (plain, listed):
        assert_no_loss(r, copies=1)
        assert r["redirects"]["connected_by_server"] == {a: 8}, r["redirects"]
        assert (r["clients"]["publishers"], r["clients"]["subscribers"]) == (4, 4)
    assert plain["target"] == a
    assert listed["target"] == f"pub {a} sub {a}"


def test_publishers_and_subscribers_on_two_listeners(broker_factory, tmp_path):
    second = free_port()
    b = broker_factory(config={"listeners": {"tcp": {"second": {"bind": addr(second)}}}})
    pub, sub = addr(b.listen_port), addr(second)
    r = loadgen(tmp_path, "p2p", *short(b.listen_port, "-c", "3", "-q", "1",
                                         "--pub-addrs", pub, "--sub-addrs", sub))
    assert_no_loss(r, copies=1)
    assert r["redirects"]["connected_by_server"] == {pub: 3, sub: 3}, r["redirects"]
    assert r["target"] == f"pub {pub} sub {sub}"
    # Fan-out: the subscribers round robin over both listeners, the publisher on the first.
    r = loadgen(tmp_path, "fanout", *short(b.listen_port, "-c", "4", "-q", "0",
                                            "--pub-addrs", pub, "--sub-addrs", f"{sub},{pub}"))
    assert_no_loss(r, copies=4)
    assert r["redirects"]["connected_by_server"] == {pub: 1 + 2, sub: 2}, r["redirects"]


def test_connections_land_on_each_listed_broker(broker_factory, tmp_path):
    a = broker_factory()
    b = broker_factory(config={"node": {"name": "other@127.0.0.1"}})
    report = tmp_path / "conn.json"
    argv = [str(LOADGEN_BIN), "conn", "-c", "6", "-d", "20s", "--client-id-prefix", f"lt{os.getpid()}",
            "--pub-addrs", f"{addr(a.listen_port)},{addr(b.listen_port)}", "--quiet",
            "--json", str(report)]
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # Each broker counts its own: 3 connections each while they are held.
        for broker in (a, b):
            nodes = wait_nodes_connections(broker, 3, timeout=15)
            assert nodes[0]["connections"] == 3, nodes
    finally:
        p.send_signal(2)  # SIGINT: the run reports what it had
        out, err = p.communicate(timeout=30)
    assert p.returncode == 0, err
    assert api(a, "GET", "/api/v5/nodes")[0] == 200


@pytest.mark.parametrize("option,value,says", [
    ("--pub-addrs", "127.0.0.1", "host:port"),
    ("--sub-addrs", "127.0.0.1:0", "host:port"),
    ("--sub-addrs", "no-such-host.invalid:1883", "--sub-addrs no-such-host.invalid:1883"),
])
def test_bad_lists_are_refused_naming_the_option(option, value, says):
    p = subprocess.run([str(LOADGEN_BIN), "p2p", option, value, "-d", "1"], capture_output=True,
                       text=True, timeout=30)
    assert p.returncode != 0
    assert says in p.stderr, p.stderr


def test_selftest_takes_no_lists():
    p = subprocess.run([str(LOADGEN_BIN), "selftest", "--pub-addrs", addr(free_port()), "-d", "1"],
                       capture_output=True, text=True, timeout=30)
    assert p.returncode != 0 and "selftest" in p.stderr, p.stderr
