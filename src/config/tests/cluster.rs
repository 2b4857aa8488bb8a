//! `[cluster]`, `node.cookie` and `node.role`.

use super::*;
use crate::cluster::certs;

// ---------------------------------------------------------------- values

/// The issue's example, verbatim but for the files.
const CLUSTER: &str = r#"
    [node]
    name = "ringmq@127.0.0.1"
    cookie = "change-me"
    role = "core"
    [cluster]
    name = "ringmqcl"
    discovery_strategy = "static"
    bind = "0.0.0.0:4370"
    core_nodes = []
    static.seeds = ["127.0.0.1:4370", "127.0.0.1:4371"]
    dns.name = "ringmq.example.com"
    dns.record_type = "a"
    ssl_options.certfile = ""
    ssl_options.keyfile = ""
    ssl_options.cacertfile = ""
    ssl_options.fail_if_no_peer_cert = true
"#;

fn addresses(list: &[HostPort]) -> Vec<String> {
    list.iter().map(HostPort::to_string).collect()
}

#[test]
fn cluster_defaults_keep_a_single_node() {
    let c = load("").unwrap();
    assert_eq!(c.node.cookie, DEFAULT_NODE_COOKIE);
    assert!(c.node.has_default_cookie());
    assert_eq!(c.node.role, NodeRole::Core);
    assert_eq!(c.node.host(), "127.0.0.1");
    let cl = &c.cluster;
    assert_eq!(cl.name, "ringmqcl");
    assert_eq!(cl.discovery_strategy, DiscoveryStrategy::Singleton);
    assert!(!cl.is_clustered());
    assert_eq!(cl.bind, SocketAddr::from(([0, 0, 0, 0], 4370)));
    assert!(cl.core_nodes.is_empty() && cl.static_discovery.seeds.is_empty());
    assert_eq!(cl.dns.name, "");
    assert_eq!(cl.dns.record_type, DnsRecordType::A);
    assert_eq!(cl.ssl_options, ClusterSslOptionsConfig::default());
    assert!(cl.ssl_options.fail_if_no_peer_cert);
    assert!(c.cluster_tls().unwrap().is_none());
}

#[test]
fn cluster_from_file() {
    let c = load(CLUSTER).unwrap();
    assert_eq!(c.node.cookie, "change-me");
    assert!(!c.node.has_default_cookie());
    assert_eq!(c.cluster.discovery_strategy, DiscoveryStrategy::Static);
    assert!(c.cluster.is_clustered());
    assert_eq!(
        addresses(&c.cluster.static_discovery.seeds),
        ["127.0.0.1:4370", "127.0.0.1:4371"]
    );
    assert_eq!(c.cluster.dns.name, "ringmq.example.com");
    assert_eq!(c.cluster.ssl_options.certfile, None);
    // The dump loads back to the same config.
    assert_eq!(load(&c.to_toml()).unwrap(), c);
}

#[test]
fn cluster_addresses_take_names_and_both_ip_families() {
    let c = load(
        "[cluster]\ndiscovery_strategy = \"manual\"\n\
         core_nodes = [\"core1.example.com:4370\", \"[fd00::1]:4371\", \"10.0.0.3:5000\"]\n",
    )
    .unwrap();
    let nodes = &c.cluster.core_nodes;
    assert_eq!(nodes[0].host, "core1.example.com");
    assert_eq!(nodes[1].host, "fd00::1");
    assert_eq!(nodes[1].port, 4371);
    assert_eq!(
        addresses(nodes),
        ["core1.example.com:4370", "[fd00::1]:4371", "10.0.0.3:5000"]
    );
    assert_eq!(load(&c.to_toml()).unwrap(), c);
}

#[test]
fn cluster_from_env_with_lists_in_every_spelling() {
    let c = load_env(&[
        ("RINGMQ_NODE__COOKIE", "s3cret"),
        ("RINGMQ_NODE__ROLE", "replicant"),
        ("RINGMQ_CLUSTER__NAME", "prod"),
        ("RINGMQ_CLUSTER__DISCOVERY_STRATEGY", "dns"),
        ("RINGMQ_CLUSTER__BIND", "[::]:4380"),
        ("RINGMQ_CLUSTER__DNS__NAME", "nodes.example.com"),
        ("RINGMQ_CLUSTER__DNS__RECORD_TYPE", "srv"),
        ("RINGMQ_CLUSTER__DNS__NAMESERVER", "127.0.0.1:5353"),
        (
            "RINGMQ_CLUSTER__STATIC__SEEDS",
            "10.0.0.1:4370, 10.0.0.2:4370",
        ),
        ("RINGMQ_CLUSTER__CORE_NODES__0", "10.0.0.1:4370"),
        ("RINGMQ_CLUSTER__CORE_NODES__1", "10.0.0.2:4370"),
        ("RINGMQ_CLUSTER__SSL_OPTIONS__FAIL_IF_NO_PEER_CERT", "false"),
    ])
    .unwrap();
    assert_eq!(c.node.cookie, "s3cret");
    assert_eq!(c.node.role, NodeRole::Replicant);
    assert_eq!(c.cluster.name, "prod");
    assert_eq!(c.cluster.discovery_strategy, DiscoveryStrategy::Dns);
    assert_eq!(c.cluster.bind.to_string(), "[::]:4380");
    assert_eq!(c.cluster.dns.record_type, DnsRecordType::Srv);
    assert_eq!(
        c.cluster.dns.nameserver,
        Some("127.0.0.1:5353".parse().unwrap())
    );
    let both = ["10.0.0.1:4370", "10.0.0.2:4370"];
    assert_eq!(addresses(&c.cluster.static_discovery.seeds), both);
    assert_eq!(addresses(&c.cluster.core_nodes), both);
    assert!(!c.cluster.ssl_options.fail_if_no_peer_cert);
    // EMQX's array spelling, and an empty string clearing the file's list.
    let c = load_env(&[(
        "RINGMQ_CLUSTER__STATIC__SEEDS",
        r#"["10.0.0.1:4370", "10.0.0.2:4370"]"#,
    )])
    .unwrap();
    assert_eq!(addresses(&c.cluster.static_discovery.seeds), both);
    let file = "[cluster]\nstatic.seeds = [\"10.0.0.1:4370\"]\n";
    let c = Config::load_from(Some(file), &env(&[("RINGMQ_CLUSTER__STATIC__SEEDS", "")])).unwrap();
    assert!(c.cluster.static_discovery.seeds.is_empty());
}

#[test]
fn loopback_node_name_with_remote_seeds_is_fine() {
    load(
        "[node]\nname = \"ringmq@127.0.0.1\"\n[cluster]\ndiscovery_strategy = \"static\"\n\
         static.seeds = [\"10.1.2.3:4370\", \"node9.example.com:4370\"]\n",
    )
    .unwrap();
}

// ---------------------------------------------------------------- errors

#[test]
fn bad_cluster_values_name_their_key() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "[cluster]\ndiscovery_strategy = \"etcd\"\n",
            "cluster.discovery_strategy",
            "invalid value for cluster.discovery_strategy in the TOML text: \"etcd\"; \
             allowed: one of \"manual\", \"static\", \"dns\", \"singleton\"",
        ),
        (
            "[cluster]\nstatic.seeds = [\"10.0.0.1:4370\", \"10.0.0.2\"]\n",
            "cluster.static.seeds",
            "\"10.0.0.2\"; allowed: an array of QUIC addresses \"host:port\"",
        ),
        (
            "[cluster]\nstatic.seeds = [\"10.0.0.1:0\"]\n",
            "cluster.static.seeds",
            "\"10.0.0.1:0\"",
        ),
        (
            "[cluster]\nstatic.seeds = [\"fd00::1:4370\"]\n",
            "cluster.static.seeds",
            "[IPv6]",
        ),
        (
            "[cluster]\ncore_nodes = [\"bad host:4370\"]\n",
            "cluster.core_nodes",
            "\"bad host:4370\"",
        ),
        (
            "[cluster]\ncore_nodes = [4370]\n",
            "cluster.core_nodes[0]",
            "a string",
        ),
        (
            "[cluster]\nbind = \"0.0.0.0:0\"\n",
            "cluster.bind",
            "a port from 1 to 65535",
        ),
        (
            "[cluster]\nbind = \"localhost:4370\"\n",
            "cluster.bind",
            "IPv4 or [IPv6] literal",
        ),
        (
            "[cluster]\ndns.record_type = \"aaaa\"\n",
            "cluster.dns.record_type",
            "one of \"a\", \"srv\"",
        ),
        (
            "[cluster]\ndns.nameserver = \"localhost:53\"\n",
            "cluster.dns.nameserver",
            "a DNS server's UDP address",
        ),
        (
            "[cluster]\ndns.nameserver = \"127.0.0.1\"\n",
            "cluster.dns.nameserver",
            "e.g. \"10.0.0.53:53\"",
        ),
        (
            "[cluster]\ndns.name = \"not a name\"\n",
            "cluster.dns.name",
            "a DNS name",
        ),
        (
            "[cluster]\nname = \"\"\n",
            "cluster.name",
            "a non-empty string",
        ),
        (
            "[cluster]\nname = \"a b\"\n",
            "cluster.name",
            "letters, digits",
        ),
        (
            "[cluster]\nssl_options.fail_if_no_peer_cert = \"maybe\"\n",
            "cluster.ssl_options.fail_if_no_peer_cert",
            "true or false",
        ),
        (
            "[cluster]\nstatic.peers = []\n",
            "cluster.static.peers",
            "known keys in [cluster.static]: seeds",
        ),
        (
            "[node]\ncookie = \"\"\n",
            "node.cookie",
            "a non-empty string",
        ),
        (
            "[node]\nrole = \"leader\"\n",
            "node.role",
            "one of \"core\", \"replicant\"",
        ),
    ];
    for (text, key, fragment) in cases {
        let e = load(text).unwrap_err();
        assert_eq!(e.key(), Some(*key), "{e}");
        assert!(e.to_string().contains(fragment), "{e}");
    }
}

#[test]
fn too_many_addresses_are_refused() {
    let seeds: Vec<String> = (0..=crate::limits::CLUSTER_ADDRESSES_MAX)
        .map(|i| format!("\"10.0.{}.{}:4370\"", i / 250, i % 250))
        .collect();
    let text = format!("[cluster]\nstatic.seeds = [{}]\n", seeds.join(", "));
    message(
        load(&text),
        &["cluster.static.seeds", "at most 256 addresses"],
    );
}

#[test]
fn malformed_seed_from_env_names_the_variable() {
    message(
        load_env(&[("RINGMQ_CLUSTER__STATIC__SEEDS", "10.0.0.1:4370,nope")]),
        &[
            "invalid value for cluster.static.seeds",
            "(from env RINGMQ_CLUSTER__STATIC__SEEDS)",
            "\"nope\"",
        ],
    );
    message(
        load_env(&[(
            "RINGMQ_CLUSTER__STATIC__SEEDS",
            "10.0.0.1:4370,,10.0.0.2:4370",
        )]),
        &["cluster.static.seeds", "RINGMQ_CLUSTER__STATIC__SEEDS"],
    );
    message(
        load_env(&[("RINGMQ_CLUSTER__CORE_NODES__1", "10.0.0.1:4370")]),
        &["cluster.core_nodes", "without gaps"],
    );
}

#[test]
fn strategies_without_their_addresses_are_refused() {
    assert_eq!(
        message(load("[cluster]\ndiscovery_strategy = \"static\"\n"), &[]),
        "invalid value for cluster.static.seeds (default): no seeds; allowed: at least one \
         \"host:port\" when cluster.discovery_strategy is \"static\", e.g. seeds = \
         [\"10.0.0.1:4370\", \"10.0.0.2:4370\"]"
    );
    message(
        load_env(&[("RINGMQ_CLUSTER__DISCOVERY_STRATEGY", "dns")]),
        &[
            "invalid value for cluster.dns.name (default): \"\"",
            "\"dns\"",
        ],
    );
    // manual and singleton need nothing (for a core node).
    load("[cluster]\ndiscovery_strategy = \"manual\"\n").unwrap();
}

#[test]
fn a_replicant_needs_core_nodes_to_join() {
    message(
        load("[node]\nrole = \"replicant\"\n[cluster]\ndiscovery_strategy = \"manual\"\n"),
        &[
            "invalid value for cluster.core_nodes (default): no addresses",
            "node.role = \"replicant\"",
        ],
    );
    message(
        load("[node]\nrole = \"replicant\"\n"),
        &[
            "invalid value for node.role in the TOML text: \"replicant\"",
            "singleton",
        ],
    );
    // The strategy's addresses serve, and so do core_nodes.
    load(
        "[node]\nrole = \"replicant\"\n[cluster]\ndiscovery_strategy = \"static\"\n\
         static.seeds = [\"10.0.0.1:4370\"]\n",
    )
    .unwrap();
    load(
        "[node]\nrole = \"replicant\"\n[cluster]\ndiscovery_strategy = \"manual\"\n\
         core_nodes = [\"10.0.0.1:4370\"]\n",
    )
    .unwrap();
}

// ---------------------------------------------------------------- certificate files

struct Pki {
    dir: PathBuf,
}

impl Pki {
    fn new(name: &str, nodes: &[&str]) -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "ringmq-cluster-config-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        let nodes: Vec<String> = nodes.iter().map(|n| n.to_string()).collect();
        certs::generate(&dir, &nodes, false).unwrap();
        Pki { dir }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).display().to_string()
    }

    /// `[cluster.ssl_options]` with these files ("" leaves a key out).
    fn ssl(&self, certfile: &str, keyfile: &str, cacertfile: &str) -> String {
        let mut text = "[node]\nname = \"n@127.0.0.1\"\n[cluster.ssl_options]\n".to_string();
        for (key, file) in [
            ("certfile", certfile),
            ("keyfile", keyfile),
            ("cacertfile", cacertfile),
        ] {
            if !file.is_empty() {
                text.push_str(&format!("{key} = {:?}\n", self.path(file)));
            }
        }
        text
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn generated_files_load_as_the_cluster_tls() {
    let pki = Pki::new("ok", &["n@127.0.0.1"]);
    let c = load(&pki.ssl("n@127.0.0.1.pem", "n@127.0.0.1.key", "ca.pem")).unwrap();
    let tls = c.cluster_tls().unwrap().expect("files are set");
    assert!(tls.roots.is_some() && tls.fail_if_no_peer_cert);
    // Without a CA: this node's certificate, peers checked by cookie.
    let c = load(&pki.ssl("n@127.0.0.1.pem", "n@127.0.0.1.key", "")).unwrap();
    assert!(c.cluster_tls().unwrap().unwrap().roots.is_none());
    assert_eq!(load(&c.to_toml()).unwrap(), c);
}

#[test]
fn certificate_files_that_do_not_go_together_are_refused() {
    let pki = Pki::new("pairs", &["n@127.0.0.1"]);
    message(
        load(&pki.ssl("n@127.0.0.1.pem", "", "")),
        &[
            "invalid value for cluster.ssl_options.keyfile (default): \"\"",
            "the PEM private key of cluster.ssl_options.certfile",
            "set both or neither",
        ],
    );
    message(
        load(&pki.ssl("", "n@127.0.0.1.key", "")),
        &["invalid value for cluster.ssl_options.certfile (default)"],
    );
    message(
        load(&pki.ssl("", "", "ca.pem")),
        &[
            "invalid value for cluster.ssl_options.cacertfile in the TOML text",
            "unless cluster.ssl_options.certfile and keyfile are set",
        ],
    );
}

#[test]
fn unreadable_or_unparsable_certificate_files_name_their_key() {
    let pki = Pki::new("bad", &["n@127.0.0.1", "m@127.0.0.1"]);
    let garbage = pki.dir.join("garbage.pem");
    std::fs::write(&garbage, "not PEM at all\n").unwrap();
    let cases = [
        (
            pki.ssl("missing.pem", "n@127.0.0.1.key", ""),
            "cluster.ssl_options.certfile",
            "cannot read it",
        ),
        (
            pki.ssl("garbage.pem", "n@127.0.0.1.key", ""),
            "cluster.ssl_options.certfile",
            "no BEGIN CERTIFICATE",
        ),
        (
            pki.ssl("n@127.0.0.1.pem", "garbage.pem", ""),
            "cluster.ssl_options.keyfile",
            "a PEM private key",
        ),
        (
            pki.ssl("n@127.0.0.1.pem", "m@127.0.0.1.key", ""),
            "cluster.ssl_options.keyfile",
            "the private key of the certificate",
        ),
        (
            pki.ssl("n@127.0.0.1.pem", "n@127.0.0.1.key", "garbage.pem"),
            "cluster.ssl_options.cacertfile",
            "no BEGIN CERTIFICATE",
        ),
        (
            pki.ssl("n@127.0.0.1.pem", "n@127.0.0.1.key", "missing-ca.pem"),
            "cluster.ssl_options.cacertfile",
            "cannot read it",
        ),
    ];
    for (text, key, fragment) in cases {
        let e = load(&text).unwrap_err();
        assert_eq!(e.key(), Some(key), "{e}");
        assert!(e.to_string().contains(fragment), "{e}");
    }
}

#[test]
fn certificate_of_another_ca_or_host_is_refused_at_load() {
    let pki = Pki::new("ca1", &["n@127.0.0.1", "n@127.0.0.2"]);
    let other = Pki::new("ca2", &["x@127.0.0.1"]);
    let mut text = pki.ssl("n@127.0.0.1.pem", "n@127.0.0.1.key", "");
    text.push_str(&format!("cacertfile = {:?}\n", other.path("ca.pem")));
    message(
        load(&text),
        &["cluster.ssl_options.certfile", "issued by a CA in"],
    );
    // The node is 127.0.0.1; this certificate names 127.0.0.2.
    message(
        load(&pki.ssl("n@127.0.0.2.pem", "n@127.0.0.2.key", "ca.pem")),
        &[
            "invalid value for cluster.ssl_options.certfile",
            "names node.name's host \"127.0.0.1\"",
        ],
    );
    // A bundle with both CAs accepts it.
    let bundle = pki.dir.join("bundle.pem");
    let both = std::fs::read_to_string(other.dir.join("ca.pem")).unwrap()
        + &std::fs::read_to_string(pki.dir.join("ca.pem")).unwrap();
    std::fs::write(&bundle, both).unwrap();
    load(&pki.ssl("n@127.0.0.1.pem", "n@127.0.0.1.key", "bundle.pem")).unwrap();
}

#[test]
fn env_certificate_error_names_the_variable() {
    message(
        load_env(&[
            (
                "RINGMQ_CLUSTER__SSL_OPTIONS__CERTFILE",
                "/nonexistent/c.pem",
            ),
            ("RINGMQ_CLUSTER__SSL_OPTIONS__KEYFILE", "/nonexistent/k.pem"),
        ]),
        &[
            "invalid value for cluster.ssl_options.certfile \
             (from env RINGMQ_CLUSTER__SSL_OPTIONS__CERTFILE): \"/nonexistent/c.pem\"",
            "cannot read it",
        ],
    );
}
