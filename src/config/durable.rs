//! `[durable_sessions]` and `[redis]`: persistent sessions, their queues
//! and retained messages written to a store (issue 15,
//! docs/adr/0007-durable-sessions.md, docs/durability.md).

use super::cluster::HostPort;
use super::{value, Config, ConfigError};
use crate::limits;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

/// `[durable_sessions]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DurableSessionsConfig {
    /// `durable_sessions.enable`: persistent sessions, their queues,
    /// inflight state and retained messages survive restarts. Default
    /// `false`.
    #[serde(deserialize_with = "value::bool")]
    pub enable: bool,
    /// `durable_sessions.backend`: `builtin` (one fjall store per shard
    /// under `node.data_dir/durable/`) or `redis` (`[redis]`). Default
    /// `builtin`.
    #[serde(deserialize_with = "de_backend", serialize_with = "ser_backend")]
    pub backend: Backend,
    /// `durable_sessions.engine`: how the builtin backend stores:
    /// `log` (an append-only log per shard under
    /// `node.data_dir/durable-log/`, `durable::log`) or `fjall` (an LSM
    /// tree per shard under `node.data_dir/durable/`). Default `log`.
    #[serde(deserialize_with = "de_engine", serialize_with = "ser_engine")]
    pub engine: Engine,
    /// `durable_sessions.sync`: `none`, `batch` or `always` (what each
    /// promises: docs/durability.md). Default `batch`.
    #[serde(deserialize_with = "de_sync", serialize_with = "ser_sync")]
    pub sync: SyncMode,
    /// `durable_sessions.batch_interval`: with `sync = "batch"`, the
    /// longest time an acknowledged change may stay unsynced, in
    /// milliseconds (1 to `limits::DURABLE_BATCH_INTERVAL_MAX_MS`).
    /// Default `"10ms"`.
    #[serde(
        rename = "batch_interval",
        deserialize_with = "de_batch_interval",
        serialize_with = "ser_batch_interval"
    )]
    pub batch_interval_ms: u32,
    /// `durable_sessions.max_session_size`: bytes of queued and inflight
    /// QoS 1/2 messages one durable session may keep in the store (topic,
    /// payload and a 64-byte record overhead each); a message beyond it is
    /// dropped for that session and counted (`session::store_quota`).
    /// Default `"256MB"`.
    #[serde(
        deserialize_with = "de_max_session_size",
        serialize_with = "value::serialize_size_bytes_u64"
    )]
    pub max_session_size: u64,
    /// `durable_sessions.max_store_size`: the same for all durable sessions
    /// of this node together, shared equally by its shards. Default
    /// `"16GB"`.
    #[serde(
        deserialize_with = "de_max_store_size",
        serialize_with = "value::serialize_size_bytes_u64"
    )]
    pub max_store_size: u64,
}

impl Default for DurableSessionsConfig {
    fn default() -> Self {
        DurableSessionsConfig {
            enable: false,
            backend: Backend::Builtin,
            engine: Engine::Log,
            sync: SyncMode::Batch,
            batch_interval_ms: 10,
            max_session_size: 256 << 20,
            max_store_size: 16 << 30,
        }
    }
}

impl DurableSessionsConfig {
    pub fn batch_interval(&self) -> Duration {
        Duration::from_millis(self.batch_interval_ms.into())
    }
}

/// `durable_sessions.backend`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Backend {
    #[default]
    Builtin,
    Redis,
}

impl Backend {
    pub const ALL: [Backend; 2] = [Backend::Builtin, Backend::Redis];

    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Builtin => "builtin",
            Backend::Redis => "redis",
        }
    }

    fn parse(text: &str) -> Option<Backend> {
        let text = text.trim();
        Backend::ALL
            .into_iter()
            .find(|b| b.as_str().eq_ignore_ascii_case(text))
    }
}

/// `durable_sessions.engine` (builtin backend only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    #[default]
    Log,
    Fjall,
}

impl Engine {
    pub const ALL: [Engine; 2] = [Engine::Log, Engine::Fjall];

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Log => "log",
            Engine::Fjall => "fjall",
        }
    }

    fn parse(text: &str) -> Option<Engine> {
        let text = text.trim();
        Engine::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(text))
    }
}

/// `durable_sessions.sync`: when a store syncs, and so when an
/// acknowledgement may go (ADR 0007, "Acknowledgements and the three
/// modes"). Shared by every backend.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SyncMode {
    /// Never synced by ringmq (the OS writes when it likes); synced at a
    /// clean shutdown.
    None,
    /// Acknowledged at once, synced at least every `batch_interval`.
    #[default]
    Batch,
    /// Acknowledged only once synced (group commit).
    Always,
}

impl SyncMode {
    pub const ALL: [SyncMode; 3] = [SyncMode::None, SyncMode::Batch, SyncMode::Always];

    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::None => "none",
            SyncMode::Batch => "batch",
            SyncMode::Always => "always",
        }
    }

    fn parse(text: &str) -> Option<SyncMode> {
        let text = text.trim();
        SyncMode::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(text))
    }
}

/// `[redis]`: the Redis backend's servers (`durable_sessions.backend =
/// "redis"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis.redis_type`: `single` (one server) or `cluster` (a Redis
    /// Cluster; `servers` are seeds). Default `cluster`.
    #[serde(deserialize_with = "de_redis_type", serialize_with = "ser_redis_type")]
    pub redis_type: RedisType,
    /// `redis.servers`: `host:port` of the server (`single`) or of any
    /// nodes of the cluster. At most `limits::REDIS_SERVERS_MAX`.
    #[serde(deserialize_with = "de_servers", serialize_with = "ser_servers")]
    pub servers: Vec<HostPort>,
    /// `redis.password`: AUTH password; `""` for none. Default `""`.
    #[serde(deserialize_with = "de_password")]
    pub password: String,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            redis_type: RedisType::Cluster,
            servers: ["127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"]
                .iter()
                .map(|s| HostPort::parse(s).expect("a valid default"))
                .collect(),
            password: String::new(),
        }
    }
}

/// `redis.redis_type`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedisType {
    Single,
    #[default]
    Cluster,
}

impl RedisType {
    pub const ALL: [RedisType; 2] = [RedisType::Single, RedisType::Cluster];

    pub fn as_str(self) -> &'static str {
        match self {
            RedisType::Single => "single",
            RedisType::Cluster => "cluster",
        }
    }

    fn parse(text: &str) -> Option<RedisType> {
        let text = text.trim();
        RedisType::ALL
            .into_iter()
            .find(|t| t.as_str().eq_ignore_ascii_case(text))
    }
}

impl Config {
    /// The checks of `[durable_sessions]` and `[redis]` that span keys.
    pub(super) fn validate_durable(&self) -> Result<(), ConfigError> {
        let durable = &self.durable_sessions;
        if durable.enable && durable.backend == Backend::Redis && self.redis.servers.is_empty() {
            return Err(ConfigError::InvalidValue {
                key: "redis.servers".to_string(),
                origin: self.origin_of("redis.servers"),
                value: "no servers".to_string(),
                allowed: "at least one \"host:port\" when durable_sessions.backend is \
                          \"redis\", e.g. servers = [\"127.0.0.1:7000\"]"
                    .to_string(),
            });
        }
        Ok(())
    }
}

fn de_backend<'de, D: Deserializer<'de>>(d: D) -> Result<Backend, D::Error> {
    value::one_of(d, &Backend::ALL.map(Backend::as_str), Backend::parse)
}

fn ser_backend<S: Serializer>(backend: &Backend, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(backend.as_str())
}

fn de_engine<'de, D: Deserializer<'de>>(d: D) -> Result<Engine, D::Error> {
    value::one_of(d, &Engine::ALL.map(Engine::as_str), Engine::parse)
}

fn ser_engine<S: Serializer>(engine: &Engine, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(engine.as_str())
}

fn de_sync<'de, D: Deserializer<'de>>(d: D) -> Result<SyncMode, D::Error> {
    value::one_of(d, &SyncMode::ALL.map(SyncMode::as_str), SyncMode::parse)
}

fn ser_sync<S: Serializer>(mode: &SyncMode, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(mode.as_str())
}

fn de_redis_type<'de, D: Deserializer<'de>>(d: D) -> Result<RedisType, D::Error> {
    value::one_of(d, &RedisType::ALL.map(RedisType::as_str), RedisType::parse)
}

fn ser_redis_type<S: Serializer>(t: &RedisType, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(t.as_str())
}

fn de_batch_interval<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::duration_ms_in(d, 1, limits::DURABLE_BATCH_INTERVAL_MAX_MS)
}

fn de_max_session_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    value::size_bytes_u64_in(
        d,
        limits::DURABLE_SIZE_MIN_BYTES,
        limits::DURABLE_SESSION_SIZE_MAX_BYTES,
    )
}

fn de_max_store_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    value::size_bytes_u64_in(
        d,
        limits::DURABLE_SIZE_MIN_BYTES,
        limits::DURABLE_STORE_SIZE_MAX_BYTES,
    )
}

fn ser_batch_interval<S: Serializer>(ms: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value::format_duration_ms((*ms).into()))
}

const SERVERS_ALLOWED: &str =
    "an array of Redis addresses \"host:port\" (a host name, an IPv4 address or an [IPv6] \
     address, and a port from 1 to 65535), e.g. [\"127.0.0.1:7000\", \"redis1.example.com:6379\"]; \
     from the environment also \"a:7000,b:7001\"";

fn de_servers<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<HostPort>, D::Error> {
    let items = value::string_list(d, SERVERS_ALLOWED)?;
    if items.len() > limits::REDIS_SERVERS_MAX {
        return Err(D::Error::invalid_length(
            items.len(),
            &format!("at most {} servers", limits::REDIS_SERVERS_MAX).as_str(),
        ));
    }
    items
        .iter()
        .map(|item| {
            HostPort::parse(item).ok_or_else(|| {
                D::Error::invalid_value(serde::de::Unexpected::Str(item), &SERVERS_ALLOWED)
            })
        })
        .collect()
}

fn ser_servers<S: Serializer>(servers: &[HostPort], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(servers.iter().map(HostPort::to_string))
}

fn de_password<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let allowed = format!(
        "a string of at most {} bytes (\"\" for no AUTH)",
        limits::REDIS_PASSWORD_LEN_MAX_BYTES
    );
    value::string_matching(d, &allowed, |s| {
        s.len() <= limits::REDIS_PASSWORD_LEN_MAX_BYTES
    })
}
