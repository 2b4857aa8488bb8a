use super::*;
use crate::authz::{DenyAction, DenyReason, Permission, RuleAction, Who};
use std::net::SocketAddr;
use std::path::PathBuf;

fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
    vars.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn load(toml: &str) -> Result<Config, ConfigError> {
    Config::load_from(Some(toml), &[])
}

fn load_env(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::load_from(None, &env(vars))
}

/// The error message, asserting it names everything an operator needs.
fn message(result: Result<Config, ConfigError>, fragments: &[&str]) -> String {
    let error = result.expect_err("config must be refused");
    let text = error.to_string();
    for fragment in fragments {
        assert!(
            text.contains(fragment),
            "message {text:?} lacks {fragment:?}"
        );
    }
    text
}

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

// ---------------------------------------------------------------- errors: unknown keys

#[test]
fn unknown_key_in_file_names_key_file_and_known_keys() {
    let path = PathBuf::from("ringmq.toml");
    let origin = Origin::File(path.clone());
    let result = Config::load_layers(Some(("[mqtt]\nmax_inflght = 64\n", &origin)), &[]);
    let text = message(
        result,
        &[
            "unknown key mqtt.max_inflght in ringmq.toml",
            "known keys in [mqtt]: max_packet_size, max_inflight,",
        ],
    );
    assert!(text.contains("retained_max_payload_size"), "{text}");
}

#[test]
fn unknown_keys_at_every_level() {
    message(
        load("mqqt = 1"),
        &["unknown key mqqt in the TOML text; known keys at the top level: node, listeners, mqtt, log"],
    );
    message(
        load("[node]\nshard = 2"),
        &[
            "unknown key node.shard",
            "known keys in [node]: name, shards, data_dir",
        ],
    );
    message(
        load("[listeners.quic.default]\nbind = \"0.0.0.0:14567\""),
        &[
            "unknown key listeners.quic",
            "known keys in [listeners]: tcp, ssl, ws, wss",
        ],
    );
    message(
        load("[listeners.tcp.default]\nport = 1883"),
        &[
            "unknown key listeners.tcp.default.port",
            "known keys in [listeners.tcp.default]: enable, bind, max_connections",
        ],
    );
    message(
        load("[log]\nfile = \"x\""),
        &["unknown key log.file", "known keys in [log]: level"],
    );
}

#[test]
fn unknown_env_key_names_the_variable() {
    message(
        load_env(&[("RINGMQ_MQTT__MAX_INFLGHT", "64")]),
        &[
            "unknown key mqtt.max_inflght (from env RINGMQ_MQTT__MAX_INFLGHT)",
            "known keys in [mqtt]:",
        ],
    );
    message(
        load_env(&[("RINGMQ_TEST_SOMETHING", "1")]),
        &[
            "unknown key test_something (from env RINGMQ_TEST_SOMETHING)",
            "known keys at the top level: node, listeners, mqtt, log",
        ],
    );
    // A single underscore between levels is a different (unknown) key.
    message(
        load_env(&[("RINGMQ_MQTT_MAX_INFLIGHT", "64")]),
        &["unknown key mqtt_max_inflight (from env RINGMQ_MQTT_MAX_INFLIGHT)"],
    );
    message(
        load_env(&[("RINGMQ_MQTT__FOO__BAR", "1")]),
        &["unknown key mqtt.foo (from env RINGMQ_MQTT__FOO__BAR)"],
    );
}

#[test]
fn env_unknown_key_wins_over_a_valid_file() {
    message(
        Config::load_from(
            Some("[mqtt]\nmax_inflight = 10"),
            &env(&[("RINGMQ_MQTT__INFLIGHT", "64")]),
        ),
        &["unknown key mqtt.inflight (from env RINGMQ_MQTT__INFLIGHT)"],
    );
}

#[test]
fn clashing_env_variables_are_refused() {
    message(
        load_env(&[
            ("RINGMQ_MQTT__MAX_INFLIGHT", "1"),
            ("RINGMQ_mqtt__max_inflight", "2"),
        ]),
        &["mqtt.max_inflight", "one environment variable per key"],
    );
    message(
        load_env(&[("RINGMQ_MQTT", "1"), ("RINGMQ_MQTT__MAX_INFLIGHT", "2")]),
        &["mqtt", "RINGMQ_MQTT", "one environment variable per key"],
    );
}

// ---------------------------------------------------------------- errors: bad values

#[test]
fn bad_env_value_names_key_value_allowed_and_variable() {
    let text = message(load_env(&[("RINGMQ_MQTT__MAX_INFLIGHT", "0")]), &[]);
    assert_eq!(
        text,
        "invalid value for mqtt.max_inflight (from env RINGMQ_MQTT__MAX_INFLIGHT): 0; \
         allowed: an integer from 1 to 65535"
    );
}

#[test]
fn bad_file_value_names_the_file() {
    let origin = Origin::File(PathBuf::from("/etc/ringmq/ringmq.toml"));
    let result = Config::load_layers(Some(("[mqtt]\nmax_inflight = 70000\n", &origin)), &[]);
    let text = message(result, &[]);
    assert_eq!(
        text,
        "invalid value for mqtt.max_inflight in /etc/ringmq/ringmq.toml: 70000; \
         allowed: an integer from 1 to 65535"
    );
}

/// Every key with a value it must refuse: (key, toml value, env value,
/// fragment of the allowed text).
const BAD_VALUES: &[(&str, &str, &str, &str)] = &[
    ("node.name", "\"\"", "", "name@host"),
    ("node.name", "\"ringmq\"", "ringmq", "name@host"),
    ("node.name", "5", "a b@c", "name@host"),
    ("node.shards", "0", "0", "an integer from 1 to 256"),
    ("node.shards", "257", "many", "an integer from 1 to 256"),
    ("node.data_dir", "\"\"", " ", "a non-empty directory path"),
    (
        "node.idle_poll_us",
        "10001",
        "-1",
        "an integer from 0 to 10000",
    ),
    (
        "node.idle_poll_us",
        "\"50us\"",
        "fast",
        "an integer from 0 to 10000",
    ),
    (
        "listeners.tcp.default.bind",
        "\"localhost:1883\"",
        "localhost:1883",
        "ip:port",
    ),
    (
        "listeners.tcp.default.bind",
        "\"0.0.0.0\"",
        "1883",
        "ip:port",
    ),
    ("listeners.tcp.default.bind", "1883", "::1:1883", "ip:port"),
    (
        "listeners.tcp.default.max_connections",
        "0",
        "0",
        "an integer from 1 to 10000000",
    ),
    ("listeners.tcp.default.enable", "1", "yes", "true or false"),
    (
        "mqtt.max_packet_size",
        "1",
        "1",
        "a size from 2 to 268435460 bytes",
    ),
    (
        "mqtt.max_packet_size",
        "\"1GB\"",
        "1GB",
        "a size from 2 to 268435460 bytes",
    ),
    ("mqtt.max_packet_size", "\"1XB\"", "1XB", "\"256KB\""),
    ("mqtt.max_packet_size", "-5", "-5", "a size from 2"),
    ("mqtt.max_inflight", "0", "0", "an integer from 1 to 65535"),
    (
        "mqtt.max_inflight",
        "65536",
        "65536",
        "an integer from 1 to 65535",
    ),
    (
        "mqtt.max_inflight",
        "1.5",
        "1.5",
        "an integer from 1 to 65535",
    ),
    (
        "mqtt.max_mqueue_len",
        "0",
        "0",
        "an integer from 1 to 1048576",
    ),
    (
        "mqtt.max_publisher_hold_ms",
        "600001",
        "-1",
        "an integer from 0 to 600000",
    ),
    (
        "mqtt.max_session_expiry_interval",
        "4294967296",
        "4294967296",
        "0 to 4294967295 seconds",
    ),
    ("mqtt.max_session_expiry_interval", "\"2x\"", "2x", "\"2h\""),
    ("mqtt.max_session_expiry_interval", "-1", "-1", "a duration"),
    (
        "mqtt.max_topic_alias",
        "65536",
        "65536",
        "an integer from 0 to 65535",
    ),
    (
        "mqtt.server_keepalive",
        "0",
        "0",
        "\"disabled\" or a duration from 1 to 65535",
    ),
    (
        "mqtt.server_keepalive",
        "65536",
        "off",
        "\"disabled\" or a duration from 1 to 65535",
    ),
    (
        "mqtt.retain_available",
        "\"maybe\"",
        "maybe",
        "true or false",
    ),
    ("mqtt.shared_subscription", "0", "0", "true or false"),
    ("mqtt.wildcard_subscription", "\"\"", "", "true or false"),
    (
        "mqtt.max_clientid_len",
        "22",
        "22",
        "an integer from 23 to 65535",
    ),
    (
        "mqtt.max_topic_levels",
        "0",
        "1025",
        "an integer from 1 to 1024",
    ),
    ("mqtt.allow_publish_sys", "1", "yes", "true or false"),
    (
        "mqtt.max_subscriptions",
        "0",
        "100001",
        "an integer from 1 to 100000",
    ),
    (
        "mqtt.retained_max_messages",
        "0",
        "10000001",
        "an integer from 1 to 10000000",
    ),
    (
        "mqtt.retained_max_payload_size",
        "0",
        "300MB",
        "a size from 1 to 268435460 bytes",
    ),
    (
        "log.level",
        "\"verbose\"",
        "verbose",
        "one of \"error\", \"warn\", \"info\", \"debug\", \"trace\"",
    ),
    ("log.level", "3", "", "one of \"error\""),
    (
        "authorization.no_match",
        "\"maybe\"",
        "permit",
        "one of \"allow\", \"deny\"",
    ),
    (
        "authorization.deny_action",
        "true",
        "kick",
        "one of \"ignore\", \"disconnect\"",
    ),
    (
        "authorization.deny_reason",
        "\"0x87\"",
        "not-authorized",
        "one of \"not_authorized\", \"unspecified_error\"",
    ),
];

/// `a.b.c = v` as TOML: a table header and a key.
fn toml_setting(key: &str, value: &str) -> String {
    let (table, leaf) = key.rsplit_once('.').unwrap();
    format!("[{table}]\n{leaf} = {value}\n")
}

fn env_name(key: &str) -> String {
    format!("RINGMQ_{}", key.replace('.', "__").to_ascii_uppercase())
}

#[test]
fn every_bad_file_value_is_reported_with_key_and_allowed() {
    for (key, toml_value, _, allowed) in BAD_VALUES {
        let text = message(
            load(&toml_setting(key, toml_value)),
            &[
                &format!("invalid value for {key} in the TOML text: "),
                "; allowed: ",
                allowed,
            ],
        );
        assert!(!text.contains("struct") && !text.contains('\n'), "{text}");
    }
}

#[test]
fn every_bad_env_value_is_reported_with_key_variable_and_allowed() {
    for (key, _, env_value, allowed) in BAD_VALUES {
        let var = env_name(key);
        let text = message(
            load_env(&[(&var, env_value)]),
            &[
                &format!("invalid value for {key} (from env {var}): "),
                allowed,
            ],
        );
        assert!(
            text.contains(&format!("{env_value:?}")) || text.contains(env_value),
            "{text}"
        );
    }
}

#[test]
fn table_where_a_value_belongs_and_value_where_a_table_belongs() {
    message(
        load("mqtt = 5"),
        &["invalid value for mqtt in the TOML text: 5; allowed: a table of keys"],
    );
    message(
        load("[mqtt.max_inflight]\nx = 1"),
        &["invalid value for mqtt.max_inflight in the TOML text: a table; allowed: an integer"],
    );
    message(
        load_env(&[("RINGMQ_LOG", "debug")]),
        &["invalid value for log (from env RINGMQ_LOG): \"debug\"; allowed: a table of keys"],
    );
}

#[test]
fn listener_names_are_checked() {
    message(
        load("[listeners.tcp.Internal]\nbind = \"127.0.0.1:1884\""),
        &[
            "invalid value for listeners.tcp.Internal in the TOML text: \"Internal\"",
            "lowercase letters, digits",
        ],
    );
}

#[test]
fn overlapping_binds_are_refused() {
    message(
        load("[listeners.tcp.local]\nbind = \"127.0.0.1:1883\""),
        &[
            "invalid value for listeners.tcp.local.bind in the TOML text: \"127.0.0.1:1883\"",
            "listeners.tcp.default.bind overlaps it",
        ],
    );
    // Disabled listeners and other ports do not clash.
    load(
        "[listeners.tcp.default]\nenable = false\n[listeners.tcp.local]\nbind = \"127.0.0.1:1883\"",
    )
    .unwrap();
    load("[listeners.tcp.local]\nbind = \"127.0.0.1:1884\"").unwrap();
    load("[listeners.tcp.v6]\nbind = \"[::]:1883\"").unwrap();
}

#[test]
fn syntax_error_names_file_and_line() {
    let origin = Origin::File(PathBuf::from("ringmq.toml"));
    let text = "[mqtt]\nmax_inflight = 32\nmax_mqueue_len = \n";
    let error = Config::load_layers(Some((text, &origin)), &[]).unwrap_err();
    let shown = error.to_string();
    assert!(
        shown.starts_with("TOML syntax error in ringmq.toml at line 3, column 18: "),
        "{shown}"
    );
    assert!(!shown.contains('\n'), "{shown}");
    message(
        load("[mqtt\n"),
        &["TOML syntax error in the TOML text at line 1"],
    );
    message(
        load("[mqtt]\nmax_inflight = 1\nmax_inflight = 2\n"),
        &["TOML syntax error", "line 3"],
    );
}

#[test]
fn unreadable_file_names_the_path() {
    let error = Config::load(Some(Path::new("/nonexistent/ringmq.toml"))).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot read config file /nonexistent/ringmq.toml: "),
        "{error}"
    );
}

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

const EXAMPLE_TOML: &str = include_str!("../../ringmq.example.toml");

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

/// A rule with every optional key set.
const FULL_RULE: &str = r#"
    [[authorization.rules]]
    permission = "deny"
    action = "subscribe"
    topics = ["test/nosubscribe", "secret/#"]
    client_id = "sensor-1"
    username = "alice"
"#;

fn every_key() -> Vec<String> {
    let mut config = load(FULL_RULE).unwrap();
    config.node.shards = Some(1);
    config.mqtt.server_keepalive = Some(60);
    config.server_redirection.redirect_servers = vec![RedirectServerConfig {
        host: "server1.example.com".into(),
        port: 1883,
        description: Some("Primary backup".into()),
    }];
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
    let docs = include_str!("../../docs/configuration.md");
    let keys = every_key();
    assert_eq!(keys.len(), 68, "{keys:?}");
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

// ---------------------------------------------------------------- [authorization]

#[test]
fn authorization_rules_load_in_order() {
    let config = load(&format!(
        r#"
        [authorization]
        no_match = "deny"
        deny_action = "disconnect"
        [[authorization.rules]]
        permission = "allow"
        action = "all"
        topics = ["devices/${{clientid}}/#", "eq a/+"]
        {FULL_RULE}
        "#
    ))
    .unwrap();
    let section = &config.authorization;
    assert_eq!(section.no_match, Permission::Deny);
    assert_eq!(section.deny_action, DenyAction::Disconnect);
    assert_eq!(section.rules.len(), 2);
    let rules = section.rules();
    assert_eq!(rules[0].permission, Permission::Allow);
    assert_eq!(rules[0].action, RuleAction::All);
    assert_eq!(rules[0].topics, ["devices/${clientid}/#", "eq a/+"]);
    assert_eq!(rules[0].client_id, None);
    assert_eq!(rules[1].permission, Permission::Deny);
    assert_eq!(rules[1].action, RuleAction::Subscribe);
    assert_eq!(rules[1].client_id.as_deref(), Some("sensor-1"));
    assert_eq!(rules[1].username.as_deref(), Some("alice"));
    let authz = config.authz().unwrap();
    let who = Who {
        client_id: "d1",
        username: None,
    };
    assert!(authz.check_publish(&who, "devices/d1/t"));
    assert!(!authz.check_publish(&who, "devices/d2/t"));
}

#[test]
fn authorization_scalars_from_env() {
    let config = load_env(&[
        ("RINGMQ_AUTHORIZATION__NO_MATCH", "Deny"),
        ("RINGMQ_AUTHORIZATION__DENY_ACTION", "disconnect"),
        ("RINGMQ_AUTHORIZATION__DENY_REASON", "unspecified_error"),
    ])
    .unwrap();
    assert_eq!(config.authorization.no_match, Permission::Deny);
    assert_eq!(config.authorization.deny_action, DenyAction::Disconnect);
    assert_eq!(
        config.authorization.deny_reason,
        DenyReason::UnspecifiedError
    );
    // The file's rules stay when env sets the scalars.
    let config = Config::load_from(
        Some(FULL_RULE),
        &env(&[("RINGMQ_AUTHORIZATION__NO_MATCH", "deny")]),
    )
    .unwrap();
    assert_eq!(config.authorization.rules.len(), 1);
    message(
        load_env(&[("RINGMQ_AUTHORIZATION__RULES", "x")]),
        &[
            "invalid value for authorization.rules (from env RINGMQ_AUTHORIZATION__RULES): \"x\"",
            "no environment form",
        ],
    );
    message(
        load_env(&[("RINGMQ_AUTHORIZATION__RULES__0__ACTION", "all")]),
        &["invalid value for authorization.rules (from env", "a table"],
    );
}

fn rule_toml(body: &str) -> String {
    format!("[[authorization.rules]]\npermission = \"deny\"\naction = \"all\"\ntopics = [\"a\"]\n[[authorization.rules]]\n{body}\n")
}

#[test]
fn bad_rules_name_the_key_by_index() {
    let complete = "permission = \"deny\"\naction = \"all\"\ntopics = [\"a\"]";
    let cases: &[(&str, &[&str])] = &[
        (
            "permission = \"deny\"\naction = \"pub\"\ntopics = [\"a\"]",
            &[
                "invalid value for authorization.rules[1].action in the TOML text: \"pub\"",
                "allowed: one of \"publish\", \"subscribe\", \"all\"",
            ],
        ),
        (
            "permission = \"reject\"\naction = \"all\"\ntopics = [\"a\"]",
            &[
                "authorization.rules[1].permission",
                "one of \"allow\", \"deny\"",
            ],
        ),
        (
            "permission = \"deny\"\ntopics = [\"a\"]",
            &["invalid value for authorization.rules[1].action", "required"],
        ),
        (
            "permission = \"deny\"\naction = \"all\"",
            &["authorization.rules[1].topics", "required"],
        ),
        (
            "permission = \"deny\"\naction = \"all\"\ntopics = \"a\"",
            &["authorization.rules[1].topics", "an array of topic filter strings"],
        ),
        (
            "permission = \"deny\"\naction = \"all\"\ntopics = [\"a\", 7]",
            &["authorization.rules[1].topics[1]", ": 7; allowed: a string"],
        ),
        (
            "permission = \"deny\"\naction = \"all\"\ntopics = [\"ok\", \"a/#/b\"]",
            &[
                "invalid value for authorization.rules[1].topics[1] in the TOML text: \"a/#/b\"",
                "a topic filter",
            ],
        ),
        (
            "permission = \"deny\"\naction = \"all\"\ntopics = []",
            &["authorization.rules[1].topics", "an array of 1 to 100 topic filters"],
        ),
        (
            "permission = \"deny\"\naction = \"all\"\ntopics = [\"x/${ip}\"]",
            &["authorization.rules[1].topics[0]", "${clientid} or ${username}"],
        ),
        (
            &format!("{complete}\nclient_id = \"\""),
            &["authorization.rules[1].client_id", "a non-empty string"],
        ),
        (
            &format!("{complete}\nusername = 5"),
            &["authorization.rules[1].username", "a non-empty string"],
        ),
        (
            &format!("{complete}\nclientid = \"x\""),
            &[
                "unknown key authorization.rules[1].clientid in the TOML text",
                "known keys in [authorization.rules[1]]: permission, action, topics, client_id, username",
            ],
        ),
    ];
    for (body, fragments) in cases {
        let text = message(load(&rule_toml(body)), fragments);
        assert!(!text.contains('\n'), "{text}");
    }
    let path = PathBuf::from("/etc/ringmq.toml");
    let origin = Origin::File(path);
    let result = Config::load_layers(
        Some((
            &rule_toml("permission = \"deny\"\naction = \"all\"\ntopics = [\"$share/g/a\"]"),
            &origin,
        )),
        &[],
    );
    message(
        result,
        &["invalid value for authorization.rules[1].topics[0] in /etc/ringmq.toml: \"$share/g/a\""],
    );
    message(
        load("[authorization]\nrules = 5"),
        &["invalid value for authorization.rules in the TOML text: 5; allowed: an array of [[authorization.rules]] tables"],
    );
    message(
        load("[authorization]\nno_match = \"deny\"\nrule = []"),
        &[
            "unknown key authorization.rule",
            "known keys in [authorization]: no_match, deny_action, deny_reason, rules",
        ],
    );
}

#[test]
fn too_many_rules_is_refused() {
    let rule =
        "[[authorization.rules]]\npermission = \"deny\"\naction = \"all\"\ntopics = [\"a\"]\n";
    let text = rule.repeat(crate::authz::RULES_MAX + 1);
    message(
        load(&text),
        &["invalid value for authorization.rules in the TOML text: an array of 1001 rules; allowed: at most 1000 rules"],
    );
}

#[test]
fn listener_named_like_an_index_keeps_its_dotted_key() {
    message(
        load("[listeners.tcp.0]\nbind = \"x\""),
        &["invalid value for listeners.tcp.0.bind"],
    );
}

// ---------------------------------------------------------------- [server_redirection], [api]

const REDIRECTION: &str = r#"
    [server_redirection]
    enable = true
    redirect_strategy = "round_robin"
    max_connections = 500
    [[server_redirection.redirect_servers]]
    host = "server1.example.com"
    description = "Primary backup"
    [[server_redirection.redirect_servers]]
    host = "fd00::2"
    port = 1884
"#;

#[test]
fn redirection_defaults() {
    let c = load("").unwrap();
    let r = &c.server_redirection;
    assert!(!r.enable);
    assert_eq!(r.redirect_strategy, crate::admission::Strategy::Random);
    assert_eq!(r.max_connections, 1000);
    assert!(r.redirect_servers.is_empty());
    assert!(c.api.enable);
    assert_eq!(c.api.bind.to_string(), "127.0.0.1:18083");
    assert!(c.api.has_default_credentials());
}

#[test]
fn redirection_from_file() {
    let c = load(REDIRECTION).unwrap();
    let live = c.server_redirection.to_redirection();
    assert!(live.enable);
    assert_eq!(live.strategy, crate::admission::Strategy::RoundRobin);
    assert_eq!(live.max_connections, 500);
    let refs: Vec<&str> = live.servers.iter().map(|s| s.reference()).collect();
    assert_eq!(refs, ["server1.example.com:1883", "[fd00::2]:1884"]);
    assert_eq!(
        live.servers[0].description.as_deref(),
        Some("Primary backup")
    );
}

#[test]
fn redirection_env_overlay() {
    let c = Config::load_from(
        Some(REDIRECTION),
        &env(&[
            ("RINGMQ_SERVER_REDIRECTION__ENABLE", "false"),
            ("RINGMQ_SERVER_REDIRECTION__MAX_CONNECTIONS", "7"),
            ("RINGMQ_SERVER_REDIRECTION__REDIRECT_STRATEGY", "random"),
        ]),
    )
    .unwrap();
    let r = &c.server_redirection;
    assert_eq!((r.enable, r.max_connections), (false, 7));
    assert_eq!(r.redirect_strategy, crate::admission::Strategy::Random);
    assert_eq!(r.redirect_servers.len(), 2, "the file's servers stay");
}

#[test]
fn redirection_servers_from_env_by_index() {
    let c = load_env(&[
        ("RINGMQ_SERVER_REDIRECTION__ENABLE", "true"),
        ("RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__1__HOST", "b"),
        ("RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__0__HOST", "a"),
        (
            "RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__0__PORT",
            "2000",
        ),
    ])
    .unwrap();
    let refs: Vec<String> = c
        .server_redirection
        .to_redirection()
        .servers
        .iter()
        .map(|s| s.reference().to_string())
        .collect();
    assert_eq!(refs, ["a:2000", "b:1883"]);
    let gap = load_env(&[("RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__1__HOST", "b")]);
    assert!(gap.is_err());
}

fn redirection_error(toml: &str) -> String {
    let e = load(toml).unwrap_err();
    e.key().expect("names a key").to_string()
}

#[test]
fn redirection_bad_values_name_the_key() {
    let cases = [
        (
            "[server_redirection]\nredirect_strategy = \"weighted\"",
            "server_redirection.redirect_strategy",
        ),
        (
            "[server_redirection]\nenable = true",
            "server_redirection.redirect_servers",
        ),
        (
            "[[server_redirection.redirect_servers]]\nhost = \"\"",
            "server_redirection.redirect_servers[0].host",
        ),
        (
            "[[server_redirection.redirect_servers]]\nhost = \"a b\"",
            "server_redirection.redirect_servers[0].host",
        ),
        (
            "[[server_redirection.redirect_servers]]\nhost = \"a\"\nport = 0",
            "server_redirection.redirect_servers[0].port",
        ),
        (
            "[[server_redirection.redirect_servers]]\nhost = \"a\"\n\
             [[server_redirection.redirect_servers]]\nhost = \"b\"\nport = 65536",
            "server_redirection.redirect_servers[1].port",
        ),
        (
            "[[server_redirection.redirect_servers]]\nport = 1",
            "server_redirection.redirect_servers[0].host",
        ),
        (
            "[server_redirection]\nmax_connections = -1",
            "server_redirection.max_connections",
        ),
        ("[api]\nbind = \"localhost:80\"", "api.bind"),
        ("[api]\nusername = \"a:b\"", "api.username"),
        ("[api]\npassword = \"\"", "api.password"),
    ];
    for (toml, key) in cases {
        assert_eq!(redirection_error(toml), key, "{toml}");
    }
}

#[test]
fn api_bind_must_not_overlap_a_listener() {
    let e =
        load("[listeners.tcp.default]\nbind = \"0.0.0.0:1883\"\n[api]\nbind = \"127.0.0.1:1883\"")
            .unwrap_err();
    assert_eq!(e.key(), Some("api.bind"));
    assert!(e.to_string().contains("listeners.tcp.default.bind"), "{e}");
    // A disabled API may say anything.
    load("[api]\nenable = false\nbind = \"0.0.0.0:1883\"").unwrap();
}

#[test]
fn redirection_hosts() {
    for host in [
        "a",
        "server1.example.com",
        "10.0.0.1",
        "::1",
        "[fd00::2]",
        "xn--bcher-kva.example.",
    ] {
        let toml = format!("[[server_redirection.redirect_servers]]\nhost = {host:?}");
        load(&toml).unwrap_or_else(|e| panic!("{host}: {e}"));
    }
    for host in ["-a", "a..b", "a_b", "[a]", "http://a", "a:1883"] {
        let toml = format!("[[server_redirection.redirect_servers]]\nhost = {host:?}");
        assert!(load(&toml).is_err(), "{host} accepted");
    }
}
