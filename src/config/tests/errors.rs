//! Refusals: unknown keys and bad values name the key, the value, what is
//! allowed and where the value came from.

use super::*;

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
    (
        "mqtt.shared_subscription_strategy",
        "\"sticky\"",
        "hash_clientid",
        "one of \"round_robin\", \"random\", \"local\"",
    ),
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
