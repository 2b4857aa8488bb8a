"""The cluster's configuration (`[cluster]`, `node.cookie`, `node.role`) and
`ringmq gen-certs`, with the real binary: a bad cluster config stops the
start with exit code 2 naming the key; certificates made by gen-certs pass
`openssl verify` and carry the node's host as subjectAltName, and a node
configured with them starts."""
from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from conftest import RINGMQ_BIN, free_port

pytestmark = pytest.mark.ringmq_only("cluster configuration and gen-certs are ringmq's")


def run_ringmq(*args: str, env: dict | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The binary with the harness's own RINGMQ_ variables left out (every
    RINGMQ_ variable is a config key to it)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("RINGMQ_")}
    full_env.update(env or {})
    return subprocess.run([str(RINGMQ_BIN), *args], env=full_env, cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def gen_certs(dir: Path, *nodes: str, force: bool = False) -> subprocess.CompletedProcess:
    args = ["gen-certs", str(dir)]
    if nodes:
        args += ["--nodes", ",".join(nodes)]
    if force:
        args.append("--force")
    return run_ringmq(*args)


def openssl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30)


def clustered(**cluster) -> dict:
    """A manual-strategy cluster config on a free UDP port (so nodes of
    parallel tests never share the default 4370)."""
    base = {"discovery_strategy": "manual", "bind": f"127.0.0.1:{free_port()}"}
    base.update(cluster)
    return {"cluster": base}


def assert_refused(broker_factory, key: str, config: dict | None = None, env: dict | None = None,
                   also: tuple[str, ...] = ()) -> str:
    b = broker_factory(config=config, env=env, start=False)
    code = b.wait_exit(10)
    log = b.log()
    assert code == 2, f"exit {code}:\n{log}"
    assert "configuration error" in log and key in log, log
    for fragment in also:
        assert fragment in log, log
    return log


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> Path:
    dir = tmp_path_factory.mktemp("cluster-pki")
    p = gen_certs(dir, "ringmq@127.0.0.1", "ringmq@127.0.0.2")
    assert p.returncode == 0, p.stderr
    return dir


# ---------------------------------------------------------------- bad configs


@pytest.mark.parametrize("cluster,key,fragment", [
    ({"discovery_strategy": "etcd"}, "cluster.discovery_strategy",
     'one of "manual", "static", "dns", "singleton"'),
    ({"discovery_strategy": "static", "static": {"seeds": ["127.0.0.1:4370", "127.0.0.2"]}},
     "cluster.static.seeds", '"127.0.0.2"'),
    ({"discovery_strategy": "static"}, "cluster.static.seeds", "no seeds"),
    ({"discovery_strategy": "dns"}, "cluster.dns.name", '"dns"'),
    ({"core_nodes": ["core1.example.com"]}, "cluster.core_nodes", '"core1.example.com"'),
    ({"bind": "0.0.0.0:0"}, "cluster.bind", "a port from 1 to 65535"),
    ({"dns": {"record_type": "mx"}}, "cluster.dns.record_type", '"a", "srv"'),
], ids=["strategy", "seed", "static-no-seeds", "dns-no-name", "core-node", "bind", "record-type"])
def test_bad_cluster_value_stops_the_start(broker_factory, cluster, key, fragment):
    assert_refused(broker_factory, key, config={"cluster": cluster}, also=(fragment,))


def test_malformed_seed_from_env_names_key_and_variable(broker_factory):
    assert_refused(broker_factory, "cluster.static.seeds",
                   env={"RINGMQ_CLUSTER__DISCOVERY_STRATEGY": "static",
                        "RINGMQ_CLUSTER__STATIC__SEEDS": "127.0.0.1:4370,not a seed"},
                   also=("RINGMQ_CLUSTER__STATIC__SEEDS", '"not a seed"'))


def test_replicant_without_core_nodes_stops_the_start(broker_factory):
    assert_refused(broker_factory, "cluster.core_nodes",
                   config={"node": {"role": "replicant"}, **clustered()},
                   also=('node.role = "replicant"',))
    assert_refused(broker_factory, "node.role", config={"node": {"role": "replicant"}},
                   also=("singleton",))


def test_bad_cookie_or_role_stops_the_start(broker_factory):
    assert_refused(broker_factory, "node.cookie", env={"RINGMQ_NODE__COOKIE": ""})
    assert_refused(broker_factory, "node.role", env={"RINGMQ_NODE__ROLE": "leader"},
                   also=('"core", "replicant"',))


def test_unusable_certificate_files_stop_the_start(broker_factory, pki, tmp_path):
    cert, key = str(pki / "ringmq@127.0.0.1.pem"), str(pki / "ringmq@127.0.0.1.key")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not PEM\n")
    missing = str(tmp_path / "missing.pem")
    cases = [
        ({"certfile": cert}, "cluster.ssl_options.keyfile", "set both or neither"),
        ({"keyfile": key}, "cluster.ssl_options.certfile", "set both or neither"),
        ({"cacertfile": str(pki / "ca.pem")}, "cluster.ssl_options.cacertfile", "certfile and keyfile"),
        ({"certfile": missing, "keyfile": key}, "cluster.ssl_options.certfile", missing),
        ({"certfile": str(garbage), "keyfile": key}, "cluster.ssl_options.certfile", "BEGIN CERTIFICATE"),
        ({"certfile": cert, "keyfile": str(garbage)}, "cluster.ssl_options.keyfile", "private key"),
        ({"certfile": cert, "keyfile": str(pki / "ringmq@127.0.0.2.key")},
         "cluster.ssl_options.keyfile", "the private key of the certificate"),
        ({"certfile": cert, "keyfile": key, "cacertfile": str(garbage)},
         "cluster.ssl_options.cacertfile", "BEGIN CERTIFICATE"),
    ]
    for ssl_options, key_name, fragment in cases:
        assert_refused(broker_factory, key_name, config=clustered(ssl_options=ssl_options),
                       also=(fragment,))


def test_certificate_of_another_ca_or_node_stops_the_start(broker_factory, pki, tmp_path):
    other = tmp_path / "other-ca"
    assert gen_certs(other, "ringmq@127.0.0.1").returncode == 0
    ssl = {"certfile": str(other / "ringmq@127.0.0.1.pem"), "keyfile": str(other / "ringmq@127.0.0.1.key"),
           "cacertfile": str(pki / "ca.pem")}
    assert_refused(broker_factory, "cluster.ssl_options.certfile", config=clustered(ssl_options=ssl),
                   also=("issued by a CA in",))
    # node.name's host is 127.0.0.1 (the harness default); this certificate names 127.0.0.2.
    ssl = {"certfile": str(pki / "ringmq@127.0.0.2.pem"), "keyfile": str(pki / "ringmq@127.0.0.2.key"),
           "cacertfile": str(pki / "ca.pem")}
    assert_refused(broker_factory, "cluster.ssl_options.certfile", config=clustered(ssl_options=ssl),
                   also=('node.name\'s host "127.0.0.1"',))


# ---------------------------------------------------------------- good configs


def test_clustered_node_with_generated_certificates_starts(broker_factory, pki):
    ssl = {"certfile": str(pki / "ringmq@127.0.0.1.pem"), "keyfile": str(pki / "ringmq@127.0.0.1.key"),
           "cacertfile": str(pki / "ca.pem")}
    config = clustered(ssl_options=ssl)
    config["node"] = {"name": "ringmq@127.0.0.1", "cookie": "e2e-secret"}
    b = broker_factory(config=config)
    c = b.client("cluster-config-ok")
    assert c.is_connected()
    assert "default cookie" not in b.log()


def test_clustered_node_with_default_cookie_warns(broker_factory):
    b = broker_factory(config=clustered())
    assert b.client("cluster-config-warn").is_connected()
    log = b.log()
    assert "WARN" in log and "default cookie" in log, log
    # A single node (the default) does not warn.
    single = broker_factory()
    assert "default cookie" not in single.log()


def test_print_config_shows_the_cluster_from_env(tmp_path):
    p = run_ringmq("--print-config", env={
        "RINGMQ_NODE__ROLE": "replicant",
        "RINGMQ_NODE__COOKIE": "s3cret",
        "RINGMQ_CLUSTER__DISCOVERY_STRATEGY": "static",
        "RINGMQ_CLUSTER__STATIC__SEEDS": "127.0.0.1:4370,127.0.0.2:4370",
        "RINGMQ_CLUSTER__DNS__RECORD_TYPE": "srv",
    })
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert 'role = "replicant"' in out and 'cookie = "s3cret"' in out, out
    assert '[cluster]\nname = "ringmqcl"\ndiscovery_strategy = "static"' in out, out
    assert '[cluster.static]\nseeds = ["127.0.0.1:4370", "127.0.0.2:4370"]' in out, out
    assert 'record_type = "srv"' in out, out
    # It loads back to the same configuration.
    dumped = tmp_path / "dump.toml"
    dumped.write_text(out)
    again = run_ringmq("--config", str(dumped), "--print-config")
    assert again.returncode == 0 and again.stdout == out, again.stderr


# ---------------------------------------------------------------- gen-certs


def san_of(cert: Path) -> str:
    p = openssl("x509", "-noout", "-ext", "subjectAltName", "-in", str(cert))
    assert p.returncode == 0, p.stderr
    return p.stdout


def test_gen_certs_makes_a_ca_and_verifiable_node_certificates(tmp_path):
    dir = tmp_path / "certs"
    p = gen_certs(dir, "ringmq@127.0.0.1", "ringmq@node2.example.com", "ringmq@[::1]")
    assert p.returncode == 0, p.stderr
    for node, san in [("ringmq@127.0.0.1", "IP Address:127.0.0.1"),
                      ("ringmq@node2.example.com", "DNS:node2.example.com"),
                      ("ringmq@[::1]", "IP Address:0:0:0:0:0:0:0:1")]:
        cert = dir / f"{node}.pem"
        v = openssl("verify", "-CAfile", str(dir / "ca.pem"), str(cert))
        assert v.returncode == 0 and ": OK" in v.stdout, v.stdout + v.stderr
        assert san in san_of(cert), san_of(cert)
        # Usable as TLS server and client: every node is both.
        for purpose in ("sslserver", "sslclient"):
            v = openssl("verify", "-purpose", purpose, "-CAfile", str(dir / "ca.pem"), str(cert))
            assert v.returncode == 0, v.stdout + v.stderr
        # The key is the certificate's.
        key_pub = openssl("pkey", "-in", str(dir / f"{node}.key"), "-pubout")
        cert_pub = openssl("x509", "-in", str(cert), "-noout", "-pubkey")
        assert key_pub.returncode == 0 and key_pub.stdout == cert_pub.stdout
    ca = openssl("x509", "-noout", "-ext", "basicConstraints", "-in", str(dir / "ca.pem"))
    assert "CA:TRUE" in ca.stdout, ca.stdout
    for f in dir.iterdir():
        mode = stat.S_IMODE(f.stat().st_mode)
        assert mode == (0o600 if f.suffix == ".key" else 0o644), (f, oct(mode))


def test_gen_certs_refuses_to_overwrite_unless_forced_and_reuses_the_ca(tmp_path):
    dir = tmp_path / "certs"
    assert gen_certs(dir, "a@127.0.0.1").returncode == 0
    key_before = (dir / "a@127.0.0.1.key").read_bytes()
    ca_before = (dir / "ca.pem").read_bytes()
    p = gen_certs(dir, "a@127.0.0.1")
    assert p.returncode == 2, p.stdout
    assert "refusing to overwrite" in p.stderr and "--force" in p.stderr, p.stderr
    assert (dir / "a@127.0.0.1.key").read_bytes() == key_before
    # A node added later is signed by the same CA.
    assert gen_certs(dir, "b@127.0.0.2").returncode == 0
    assert (dir / "ca.pem").read_bytes() == ca_before
    v = openssl("verify", "-CAfile", str(dir / "ca.pem"), str(dir / "b@127.0.0.2.pem"))
    assert v.returncode == 0, v.stdout + v.stderr
    # --force replaces the node's files, keeps the CA.
    p = gen_certs(dir, "a@127.0.0.1", force=True)
    assert p.returncode == 0, p.stderr
    assert (dir / "a@127.0.0.1.key").read_bytes() != key_before
    assert (dir / "ca.pem").read_bytes() == ca_before
    assert stat.S_IMODE((dir / "a@127.0.0.1.key").stat().st_mode) == 0o600


def test_gen_certs_refuses_bad_node_names(tmp_path):
    for bad in ["no-host", "a@", "a@bad_host", "a@host with space"]:
        p = gen_certs(tmp_path / "x", bad)
        assert p.returncode == 2 and "invalid node name" in p.stderr, (bad, p.stderr)
    assert not (tmp_path / "x").exists()


def test_gen_certs_defaults_to_the_configured_node_name(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text('[node]\nname = "n1@127.0.0.9"\n')
    p = run_ringmq("--config", str(config), "gen-certs", str(tmp_path / "certs"))
    assert p.returncode == 0, p.stderr
    assert "IP Address:127.0.0.9" in san_of(tmp_path / "certs" / "n1@127.0.0.9.pem")
    # Through the environment overlay too, with --config after the command.
    p = run_ringmq("gen-certs", str(tmp_path / "env"), "--config", str(config),
                   env={"RINGMQ_NODE__NAME": "n2@node2.example.com"})
    assert p.returncode == 0, p.stderr
    assert "DNS:node2.example.com" in san_of(tmp_path / "env" / "n2@node2.example.com.pem")
