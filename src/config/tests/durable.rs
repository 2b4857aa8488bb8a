//! `[durable_sessions]` and `[redis]`: defaults, file and env, errors
//! naming the key and the fix; durations in milliseconds.

use super::*;

#[test]
fn durable_defaults_are_the_documented_ones() {
    let config = Config::default();
    let d = &config.durable_sessions;
    assert!(!d.enable);
    assert_eq!(d.backend, Backend::Builtin);
    assert_eq!(d.sync, SyncMode::Batch);
    assert_eq!(d.batch_interval(), std::time::Duration::from_millis(10));
    assert_eq!(config.redis.redis_type, RedisType::Cluster);
    let servers: Vec<String> = config.redis.servers.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        servers,
        ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
    );
    assert_eq!(config.redis.password, "");
}

#[test]
fn durable_keys_load_from_the_file_and_the_environment() {
    let config = load(
        r#"
        [durable_sessions]
        enable = true
        backend = "redis"
        sync = "always"
        batch_interval = "1s500ms"
        [redis]
        redis_type = "single"
        servers = ["redis.example.com:6379", "[::1]:7000"]
        password = "secret"
        "#,
    )
    .unwrap();
    let d = &config.durable_sessions;
    assert!(d.enable);
    assert_eq!(d.backend, Backend::Redis);
    assert_eq!(d.sync, SyncMode::Always);
    assert_eq!(d.batch_interval_ms, 1_500);
    assert_eq!(config.redis.redis_type, RedisType::Single);
    assert_eq!(config.redis.servers[1].to_string(), "[::1]:7000");
    assert_eq!(config.redis.password, "secret");

    let config = load_env(&[
        ("RINGMQ_DURABLE_SESSIONS__ENABLE", "true"),
        ("RINGMQ_DURABLE_SESSIONS__SYNC", "None"),
        ("RINGMQ_DURABLE_SESSIONS__BATCH_INTERVAL", "25"),
        ("RINGMQ_REDIS__SERVERS", "10.0.0.1:7000,10.0.0.2:7000"),
    ])
    .unwrap();
    assert!(config.durable_sessions.enable);
    assert_eq!(config.durable_sessions.sync, SyncMode::None);
    assert_eq!(config.durable_sessions.batch_interval_ms, 25);
    assert_eq!(config.redis.servers.len(), 2);
    // The dump loads back equal, the interval as "25ms".
    let dumped = config.to_toml();
    assert!(dumped.contains("batch_interval = \"25ms\"\n"), "{dumped}");
    assert_eq!(load(&dumped).unwrap(), config);
}

#[test]
fn bad_durable_values_name_the_key_and_what_is_allowed() {
    message(
        load("[durable_sessions]\nbackend = \"rocksdb\""),
        &["durable_sessions.backend", "\"builtin\", \"redis\""],
    );
    message(
        load_env(&[("RINGMQ_DURABLE_SESSIONS__SYNC", "sometimes")]),
        &[
            "durable_sessions.sync",
            "RINGMQ_DURABLE_SESSIONS__SYNC",
            "\"none\", \"batch\", \"always\"",
        ],
    );
    for bad in ["0", "\"0ms\"", "\"11s\"", "\"10 parsecs\"", "\"1m\""] {
        message(
            load(&format!("[durable_sessions]\nbatch_interval = {bad}")),
            &["durable_sessions.batch_interval", "from 1ms to 10s"],
        );
    }
    message(
        load("[redis]\nservers = [\"127.0.0.1\"]"),
        &["redis.servers", "\"host:port\""],
    );
    message(
        load("[redis]\nservers = [\"127.0.0.1:0\"]"),
        &["redis.servers"],
    );
    message(
        load("[redis]\nredis_type = \"sentinel\""),
        &["redis.redis_type", "\"single\", \"cluster\""],
    );
}

#[test]
fn the_redis_backend_needs_servers() {
    message(
        load("[durable_sessions]\nenable = true\nbackend = \"redis\"\n[redis]\nservers = []"),
        &[
            "redis.servers",
            "at least one \"host:port\" when durable_sessions.backend is \"redis\"",
        ],
    );
    // Not used, not needed.
    load("[durable_sessions]\nbackend = \"redis\"\n[redis]\nservers = []").unwrap();
    load("[durable_sessions]\nenable = true\n[redis]\nservers = []").unwrap();
}

#[test]
fn millisecond_durations_parse_and_format() {
    assert_eq!(parse_duration_ms("10ms"), Some(10));
    assert_eq!(parse_duration_ms("10"), Some(10));
    assert_eq!(parse_duration_ms("1s"), Some(1_000));
    assert_eq!(parse_duration_ms("1s500ms"), Some(1_500));
    assert_eq!(parse_duration_ms("2m"), Some(120_000));
    assert_eq!(parse_duration_ms("10MS"), Some(10));
    assert_eq!(parse_duration_ms("ms"), None);
    assert_eq!(parse_duration_ms("1us"), None);
    assert_eq!(parse_duration_ms(""), None);
    assert_eq!(format_duration_ms(10), "10ms");
    assert_eq!(format_duration_ms(2_000), "2s");
    assert_eq!(format_duration_ms(1_500), "1500ms");
    assert_eq!(format_duration_ms(60_000), "1m");
    // Seconds durations do not take "ms": it would not be whole seconds.
    assert_eq!(parse_duration_secs("10ms"), None);
}
