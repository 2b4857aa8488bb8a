//! Shard CPUs, and that the example file, the docs and the dump cover
//! every key.

use super::*;

// ---------------------------------------------------------------- shards

#[test]
fn shard_cpus_takes_the_first_cpus_of_the_mask() {
    let mask = [2, 3, 5, 7];
    let all = Config::default();
    assert_eq!(all.pick_shard_cpus(&mask).unwrap(), mask);
    let two = load_env(&[("RINGMQ_NODE__SHARDS", "2")]).unwrap();
    assert_eq!(two.pick_shard_cpus(&mask).unwrap(), [2, 3]);
    let text = message(two.pick_shard_cpus(&[4]).map(|_| two.clone()), &[]);
    assert_eq!(
        text,
        "invalid value for node.shards (from env RINGMQ_NODE__SHARDS): 2; allowed: an integer \
         from 1 to 1 (the CPUs in this process's affinity mask: 4), or unset for all of them"
    );
}

#[test]
fn shard_cpus_reads_the_real_mask() {
    let cpus = Config::default().shard_cpus().unwrap();
    assert!(!cpus.is_empty());
    assert!(cpus.windows(2).all(|w| w[0] < w[1]), "{cpus:?}");
    let one = load("[node]\nshards = 1").unwrap();
    assert_eq!(one.shard_cpus().unwrap(), cpus[..1]);
}

// ---------------------------------------------------------------- example file and dump

const EXAMPLE_TOML: &str = include_str!("../../../ringmq.example.toml");

#[test]
fn example_file_loads_and_shows_the_defaults() {
    let config = load(EXAMPLE_TOML).unwrap();
    assert_eq!(config, Config::default());
}

/// Dotted paths of every leaf key in a TOML table. Keys of tables inside an
/// array of tables are named `array[n].key`, as the docs write them.
fn leaf_keys(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(child) => leaf_keys(child, &path, out),
            toml::Value::Array(items) if items.iter().all(toml::Value::is_table) => {
                if let Some(toml::Value::Table(first)) = items.first() {
                    leaf_keys(first, &format!("{path}[n]"), out);
                }
            }
            _ => out.push(path),
        }
    }
}

fn every_key() -> Vec<String> {
    let mut config = load(FULL_RULE).unwrap();
    config.node.shards = Some(1);
    config.mqtt.server_keepalive = Some(60);
    config.server_redirection.redirect_servers = vec![RedirectServerConfig {
        host: "server1.example.com".into(),
        port: 1883,
        description: Some("Primary backup".into()),
    }];
    // Empty arrays show no key: one address each.
    let seed = HostPort::parse("10.0.0.1:4370").unwrap();
    config.cluster.static_discovery.seeds = vec![seed.clone()];
    config.cluster.core_nodes = vec![seed];
    // Transport listeners exist only when configured: one of each kind.
    let listeners = &mut config.listeners;
    listeners.ssl.insert("default".into(), Default::default());
    listeners.ws.insert("default".into(), Default::default());
    listeners.wss.insert("default".into(), Default::default());
    let mut keys = Vec::new();
    leaf_keys(&config.to_toml().parse().unwrap(), "", &mut keys);
    keys
}

#[test]
fn example_file_and_docs_cover_every_key() {
    let docs = include_str!("../../../docs/configuration.md");
    let keys = every_key();
    assert_eq!(keys.len(), 98, "{keys:?}");
    for key in keys {
        let leaf = key.rsplit('.').next().unwrap();
        assert!(
            EXAMPLE_TOML.contains(&format!("{leaf} = ")),
            "ringmq.example.toml lacks {key}"
        );
        assert!(docs.contains(&format!("`{key}`")), "docs lack {key}");
        // Keys inside an array of tables are set in the file only.
        if !key.contains("[n]") {
            assert!(
                docs.contains(&env_name(&key)),
                "docs lack {}",
                env_name(&key)
            );
        }
    }
}

#[test]
fn to_toml_round_trips() {
    let mut config = load_env(&[
        ("RINGMQ_NODE__SHARDS", "2"),
        ("RINGMQ_MQTT__SERVER_KEEPALIVE", "60"),
        ("RINGMQ_MQTT__MAX_PACKET_SIZE", "1000"),
        ("RINGMQ_MQTT__MAX_SESSION_EXPIRY_INTERVAL", "61"),
        ("RINGMQ_LISTENERS__TCP__LOCAL__BIND", "[::1]:1884"),
    ])
    .unwrap();
    config.log.level = LogLevel::Warn;
    config.authorization = load(FULL_RULE).unwrap().authorization;
    config.authorization.no_match = Permission::Deny;
    let dumped = config.to_toml();
    assert!(dumped.contains("[[authorization.rules]]\n"), "{dumped}");
    assert!(dumped.contains("max_packet_size = 1000\n"), "{dumped}");
    assert!(
        dumped.contains("max_session_expiry_interval = \"61s\"\n"),
        "{dumped}"
    );
    assert!(dumped.contains("bind = \"[::1]:1884\"\n"), "{dumped}");
    assert_eq!(load(&dumped).unwrap(), config);

    let defaults = Config::default().to_toml();
    assert!(
        defaults.contains("max_packet_size = \"1MB\"\n"),
        "{defaults}"
    );
    assert!(
        defaults.contains("server_keepalive = \"disabled\"\n"),
        "{defaults}"
    );
    assert!(!defaults.contains("shards"), "{defaults}");
    assert!(!defaults.contains("rules"), "{defaults}");
    assert_eq!(load(&defaults).unwrap(), Config::default());
}
#[test]
fn empty_env_key_segments_are_unknown_keys() {
    message(
        load_env(&[("RINGMQ_", "1")]),
        &["unknown key \"\" (from env RINGMQ_); known keys at the top level"],
    );
    message(
        load_env(&[("RINGMQ_MQTT__", "1")]),
        &["unknown key \"mqtt.\" (from env RINGMQ_MQTT__); known keys in [mqtt]"],
    );
}
