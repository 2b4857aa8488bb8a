//! Defaults, the file, sizes and durations, and the environment overlay.

use super::*;

// ---------------------------------------------------------------- defaults

#[test]
fn defaults_without_file_or_env() {
    let config = Config::load_from(None, &[]).unwrap();
    assert_eq!(config, Config::default());
    assert_eq!(config.node.name, "ringmq@127.0.0.1");
    assert_eq!(config.node.shards, None);
    assert_eq!(config.node.data_dir, PathBuf::from("data"));
    assert_eq!(
        config.node.idle_poll_us,
        crate::limits::IDLE_POLL_DEFAULT_US
    );
    let default = &config.listeners.tcp["default"];
    assert_eq!(config.listeners.tcp.len(), 1);
    assert!(default.enable);
    assert_eq!(default.bind, "0.0.0.0:1883".parse::<SocketAddr>().unwrap());
    assert_eq!(default.max_connections, 100_000);
    let mqtt = &config.mqtt;
    assert_eq!(mqtt.max_packet_size, 1 << 20);
    assert_eq!(mqtt.max_inflight, 1000);
    assert_eq!(mqtt.max_mqueue_len, 1000);
    assert_eq!(mqtt.max_publisher_hold_ms, 5000);
    assert_eq!(mqtt.max_session_expiry_interval, 7200);
    assert_eq!(mqtt.max_topic_alias, 65535);
    assert_eq!(mqtt.server_keepalive, None);
    assert!(mqtt.retain_available && mqtt.shared_subscription && mqtt.wildcard_subscription);
    assert_eq!(mqtt.max_clientid_len, 65535);
    assert_eq!(mqtt.max_topic_levels, 128);
    assert!(!mqtt.allow_publish_sys);
    assert_eq!(mqtt.max_subscriptions, 1000);
    assert_eq!(mqtt.retained_max_messages, 100_000);
    assert_eq!(mqtt.retained_max_payload_size, 1 << 20);
    assert_eq!(config.log.level, LogLevel::Info);
    let authorization = &config.authorization;
    assert_eq!(authorization.no_match, Permission::Allow);
    assert_eq!(authorization.deny_action, DenyAction::Ignore);
    assert_eq!(authorization.deny_reason, DenyReason::NotAuthorized);
    assert!(authorization.rules.is_empty());
    assert!(config.authz().unwrap().allows_all());
    assert_eq!(config.origin_of("mqtt.max_inflight"), Origin::Default);
}

#[test]
fn empty_file_is_all_defaults() {
    assert_eq!(load("").unwrap(), Config::default());
}

// ---------------------------------------------------------------- file

#[test]
fn file_sets_every_section() {
    let config = load(
        r#"
        [node]
        name = "a@10.0.0.1"
        shards = 2
        data_dir = "/var/lib/ringmq"
        idle_poll_us = 0

        [listeners.tcp.default]
        bind = "[::1]:1884"
        max_connections = 10

        [mqtt]
        max_packet_size = "256KB"
        max_inflight = 100
        max_session_expiry_interval = "30m"
        server_keepalive = 60
        retain_available = false

        [log]
        level = "debug"
        "#,
    )
    .unwrap();
    assert_eq!(config.node.name, "a@10.0.0.1");
    assert_eq!(config.node.shards, Some(2));
    assert_eq!(config.node.data_dir, PathBuf::from("/var/lib/ringmq"));
    assert_eq!(config.node.idle_poll_us, 0);
    let default = &config.listeners.tcp["default"];
    assert_eq!(default.bind, "[::1]:1884".parse::<SocketAddr>().unwrap());
    assert_eq!(default.max_connections, 10);
    assert!(default.enable, "unset keys keep their defaults");
    assert_eq!(config.mqtt.max_packet_size, 256 * 1024);
    assert_eq!(config.mqtt.max_inflight, 100);
    assert_eq!(config.mqtt.max_session_expiry_interval, 1800);
    assert_eq!(config.mqtt.server_keepalive, Some(60));
    assert!(!config.mqtt.retain_available);
    assert_eq!(config.mqtt.max_mqueue_len, 1000);
    assert_eq!(config.log.level, LogLevel::Debug);
    assert_eq!(config.origin_of("mqtt.max_inflight"), Origin::Text);
}

#[test]
fn extra_listeners_keep_the_default_one() {
    let config = load(
        r#"
        [listeners.tcp.internal]
        bind = "127.0.0.1:1884"
        "#,
    )
    .unwrap();
    let names: Vec<&String> = config.enabled_tcp_listeners().map(|(n, _)| n).collect();
    assert_eq!(names, ["default", "internal"]);
    assert_eq!(config.listeners.tcp["internal"].max_connections, 100_000);

    let config = load(
        r#"
        [listeners.tcp.default]
        enable = false
        [listeners.tcp.internal]
        bind = "127.0.0.1:1884"
        "#,
    )
    .unwrap();
    let names: Vec<&String> = config.enabled_tcp_listeners().map(|(n, _)| n).collect();
    assert_eq!(names, ["internal"]);
}

#[test]
fn server_keepalive_disabled_is_none() {
    let config = load("[mqtt]\nserver_keepalive = \"disabled\"").unwrap();
    assert_eq!(config.mqtt.server_keepalive, None);
    let config = load("[mqtt]\nserver_keepalive = \"1m\"").unwrap();
    assert_eq!(config.mqtt.server_keepalive, Some(60));
}

#[test]
fn log_level_is_case_insensitive() {
    for level in LogLevel::ALL {
        let upper = level.as_str().to_ascii_uppercase();
        let config = load_env(&[("RINGMQ_LOG__LEVEL", &upper)]).unwrap();
        assert_eq!(config.log.level, level);
    }
}

// ---------------------------------------------------------------- sizes and durations

#[test]
fn sizes_parse() {
    for (text, bytes) in [
        ("\"1MB\"", 1 << 20),
        ("\"64KB\"", 64 * 1024),
        ("\"256kb\"", 256 * 1024),
        ("\"100B\"", 100),
        ("\"1048576\"", 1 << 20),
        ("1048576", 1 << 20),
        ("2", 2),
        ("268435460", 268_435_460),
    ] {
        let config = load(&format!("[mqtt]\nmax_packet_size = {text}")).unwrap();
        assert_eq!(config.mqtt.max_packet_size, bytes, "{text}");
    }
    let config = load_env(&[("RINGMQ_MQTT__MAX_PACKET_SIZE", "1MB")]).unwrap();
    assert_eq!(config.mqtt.max_packet_size, 1 << 20);
    let config = load_env(&[("RINGMQ_MQTT__RETAINED_MAX_PAYLOAD_SIZE", "64KB")]).unwrap();
    assert_eq!(config.mqtt.retained_max_payload_size, 64 * 1024);
    assert_eq!(parse_size_bytes("1GB"), Some(1 << 30));
    assert_eq!(parse_size_bytes("1TB"), None);
    assert_eq!(parse_size_bytes("MB"), None);
    assert_eq!(parse_size_bytes("-1MB"), None);
    assert_eq!(parse_size_bytes("99999999999999999999GB"), None);
}

#[test]
fn durations_parse() {
    for (text, secs) in [
        ("\"2h\"", 7200),
        ("\"30m\"", 1800),
        ("\"30s\"", 30),
        ("\"1d\"", 86_400),
        ("\"1h30m\"", 5400),
        ("\"7200\"", 7200),
        ("7200", 7200),
        ("0", 0),
        ("4294967295", u32::MAX),
    ] {
        let config = load(&format!("[mqtt]\nmax_session_expiry_interval = {text}")).unwrap();
        assert_eq!(config.mqtt.max_session_expiry_interval, secs, "{text}");
    }
    assert_eq!(parse_duration_secs("10S"), Some(10));
    assert_eq!(parse_duration_secs("h"), None);
    assert_eq!(parse_duration_secs("1x"), None);
    assert_eq!(parse_duration_secs("1h30"), None);
    assert_eq!(parse_duration_secs(""), None);
}

#[test]
fn sizes_and_durations_format_exactly() {
    assert_eq!(format_size_bytes(1 << 20).as_deref(), Some("1MB"));
    assert_eq!(format_size_bytes(64 * 1024).as_deref(), Some("64KB"));
    assert_eq!(format_size_bytes(268_435_460), None);
    assert_eq!(format_size_bytes(0), None);
    assert_eq!(format_duration_secs(7200), "2h");
    assert_eq!(format_duration_secs(5400), "90m");
    assert_eq!(format_duration_secs(86_400), "1d");
    assert_eq!(format_duration_secs(61), "61s");
    assert_eq!(format_duration_secs(0), "0s");
}

// ---------------------------------------------------------------- env

#[test]
fn env_values_take_the_field_type() {
    let config = load_env(&[
        ("RINGMQ_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:18830"),
        ("RINGMQ_MQTT__MAX_INFLIGHT", "64"),
        ("RINGMQ_NODE__SHARDS", "2"),
        ("RINGMQ_MQTT__RETAIN_AVAILABLE", "false"),
        ("RINGMQ_MQTT__SERVER_KEEPALIVE", "60"),
        ("RINGMQ_NODE__NAME", "n1@10.0.0.7"),
        ("RINGMQ_NODE__DATA_DIR", "1234"),
        ("RINGMQ_LOG__LEVEL", "trace"),
    ])
    .unwrap();
    assert_eq!(
        config.listeners.tcp["default"].bind,
        "127.0.0.1:18830".parse::<SocketAddr>().unwrap()
    );
    assert_eq!(config.mqtt.max_inflight, 64);
    assert_eq!(config.node.shards, Some(2));
    assert!(!config.mqtt.retain_available);
    assert_eq!(config.mqtt.server_keepalive, Some(60));
    assert_eq!(config.node.name, "n1@10.0.0.7");
    assert_eq!(config.node.data_dir, PathBuf::from("1234"));
    assert_eq!(config.log.level, LogLevel::Trace);
    assert_eq!(
        config.origin_of("mqtt.max_inflight"),
        Origin::Env("RINGMQ_MQTT__MAX_INFLIGHT".to_string())
    );
}

#[test]
fn env_ipv6_bind_is_a_string_not_an_array() {
    let config = load_env(&[("RINGMQ_LISTENERS__TCP__DEFAULT__BIND", "[::]:1883")]).unwrap();
    assert_eq!(
        config.listeners.tcp["default"].bind,
        "[::]:1883".parse::<SocketAddr>().unwrap()
    );
}

#[test]
fn env_overlay_beats_file() {
    let file = r#"
        [mqtt]
        max_inflight = 10
        max_mqueue_len = 5
        [listeners.tcp.default]
        bind = "0.0.0.0:1999"
    "#;
    let config = Config::load_from(
        Some(file),
        &env(&[
            ("RINGMQ_MQTT__MAX_INFLIGHT", "64"),
            ("RINGMQ_LISTENERS__TCP__DEFAULT__BIND", "127.0.0.1:18830"),
        ]),
    )
    .unwrap();
    assert_eq!(config.mqtt.max_inflight, 64);
    assert_eq!(
        config.mqtt.max_mqueue_len, 5,
        "file keys env does not set stay"
    );
    assert_eq!(config.listeners.tcp["default"].bind.port(), 18830);
    assert_eq!(config.origin_of("mqtt.max_mqueue_len"), Origin::Text);
}

#[test]
fn env_adds_a_listener() {
    let config = load_env(&[("RINGMQ_LISTENERS__TCP__LOCAL__BIND", "127.0.0.1:1884")]).unwrap();
    assert_eq!(config.listeners.tcp["local"].bind.port(), 1884);
    assert!(config.listeners.tcp["default"].enable);
}

#[test]
fn other_variables_are_ignored() {
    let config = load_env(&[
        ("PATH", "/usr/bin"),
        ("RINGMQX_FOO", "1"),
        ("ringmq_mqtt__max_inflight", "0"),
        ("XRINGMQ_MQTT__MAX_INFLIGHT", "0"),
    ])
    .unwrap();
    assert_eq!(config, Config::default());
}
