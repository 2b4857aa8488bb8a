//! The configuration sections: `[node]`, `[listeners]`, `[mqtt]`, `[log]`,
//! `[authorization]`, `[server_redirection]`, `[api]`.
//!
//! Field names are the config keys (EMQX's spelling, so operators can carry
//! their knowledge over); the unit of each is in its doc comment. Each field
//! reader checks the allowed range, with caps from `crate::limits`.

use super::listeners::{SslListenerConfig, WsListenerConfig, WssListenerConfig};
use super::value;
use crate::admission::{RedirectServer, Redirection, Strategy};
use crate::authz::{DenyAction, DenyReason, Permission, Rule, RuleAction};
use crate::limits;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

// ---------------------------------------------------------------- [node]

/// `[node]`: identity and placement of this broker process.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// `node.name`: `name@host`, unique in a cluster.
    /// Default `"ringmq@127.0.0.1"`.
    #[serde(deserialize_with = "de_node_name")]
    pub name: String,
    /// `node.shards`: shard (thread) count, one shard per CPU. `None` (key
    /// absent): one per CPU in the process's affinity mask. 1 to
    /// `limits::SHARDS_MAX`; more than the mask holds fails in
    /// `Config::shard_cpus`.
    #[serde(
        deserialize_with = "de_shards",
        skip_serializing_if = "Option::is_none"
    )]
    pub shards: Option<usize>,
    /// `node.data_dir`: directory for durable state; relative paths are
    /// relative to the working directory. Default `"data"`.
    #[serde(deserialize_with = "de_data_dir")]
    pub data_dir: PathBuf,
    /// `node.idle_poll_us`, microseconds: how long a shard with nothing to
    /// do keeps polling its rings and channels before it sleeps. Polling
    /// answers a message that arrives within that time without a wake-up
    /// (no interrupt, no scheduler, no idle-to-busy transition of the
    /// CPU), at the price of a busy CPU while it lasts. 0: sleep at once.
    /// 0 to `limits::IDLE_POLL_MAX_US`. Default
    /// `limits::IDLE_POLL_DEFAULT_US`.
    #[serde(deserialize_with = "de_idle_poll_us")]
    pub idle_poll_us: u32,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            name: "ringmq@127.0.0.1".to_string(),
            shards: None,
            data_dir: PathBuf::from("data"),
            idle_poll_us: limits::IDLE_POLL_DEFAULT_US,
        }
    }
}

fn is_node_name(name: &str) -> bool {
    let Some((local, host)) = name.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !host.is_empty()
        && name.len() <= limits::NODE_NAME_LEN_MAX_BYTES
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
        && !host.contains('@')
}

fn de_node_name<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let allowed = format!(
        "a string name@host of at most {} bytes, without spaces, e.g. \"ringmq@10.0.0.1\"",
        limits::NODE_NAME_LEN_MAX_BYTES
    );
    value::string_matching(d, &allowed, is_node_name)
}

fn de_shards<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    let shards_max = u32::try_from(limits::SHARDS_MAX).expect("SHARDS_MAX fits u32");
    value::int_in(d, 1u32, shards_max).map(|shards| Some(shards as usize))
}

fn de_idle_poll_us<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::int_in(d, 0u32, limits::IDLE_POLL_MAX_US)
}

fn de_data_dir<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    value::string_matching(d, "a non-empty directory path", |s| !s.trim().is_empty())
        .map(PathBuf::from)
}

// ---------------------------------------------------------------- [listeners]

/// `[listeners]`: where clients connect.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenersConfig {
    /// `listeners.tcp.<name>`: plain-TCP MQTT listeners by name. The
    /// `default` listener always exists (it is filled from defaults when the
    /// file does not mention it; set its `enable = false` to turn it off).
    /// Names are lowercase letters, digits, `_` and `-`, because env var
    /// keys are lowercased.
    pub tcp: BTreeMap<String, TcpListenerConfig>,
    /// `listeners.ssl.<name>`: MQTT over TLS (`config/listeners.rs`).
    /// None by default.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ssl: BTreeMap<String, SslListenerConfig>,
    /// `listeners.ws.<name>`: MQTT over WebSocket. None by default.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ws: BTreeMap<String, WsListenerConfig>,
    /// `listeners.wss.<name>`: MQTT over WebSocket over TLS. None by
    /// default.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub wss: BTreeMap<String, WssListenerConfig>,
}

/// The listener every install has.
pub const DEFAULT_LISTENER_NAME: &str = "default";

impl Default for ListenersConfig {
    fn default() -> Self {
        ListenersConfig {
            tcp: BTreeMap::from([(
                DEFAULT_LISTENER_NAME.to_string(),
                TcpListenerConfig::default(),
            )]),
            ssl: BTreeMap::new(),
            ws: BTreeMap::new(),
            wss: BTreeMap::new(),
        }
    }
}

/// `[listeners.tcp.<name>]`: one plain-TCP listener.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TcpListenerConfig {
    /// `enable`: start this listener. Default `true`.
    #[serde(deserialize_with = "value::bool")]
    pub enable: bool,
    /// `bind`: `ip:port` with an IPv4 or bracketed IPv6 literal (no host
    /// names: binding must not depend on DNS). Default `"0.0.0.0:1883"`.
    #[serde(deserialize_with = "de_bind")]
    pub bind: SocketAddr,
    /// `max_connections`: connections open at once on this listener;
    /// further ones are refused. 1 to `limits::CONNECTIONS_PER_LISTENER_MAX`.
    /// Default 100_000.
    #[serde(deserialize_with = "de_max_connections")]
    pub max_connections: u32,
}

impl Default for TcpListenerConfig {
    fn default() -> Self {
        TcpListenerConfig {
            enable: true,
            bind: SocketAddr::from(([0, 0, 0, 0], 1883)),
            max_connections: 100_000,
        }
    }
}

pub(super) fn de_bind<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    const ALLOWED: &str =
        "an address ip:port with an IPv4 or [IPv6] literal, e.g. \"0.0.0.0:1883\" or \"[::]:1883\"";
    let text = value::string_matching(d, ALLOWED, |s| s.trim().parse::<SocketAddr>().is_ok())?;
    Ok(text.trim().parse().expect("checked by string_matching"))
}

pub(super) fn de_max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::int_in(d, 1, limits::CONNECTIONS_PER_LISTENER_MAX)
}

// ---------------------------------------------------------------- [mqtt]

/// `[mqtt]`: protocol limits and features offered to clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `max_packet_size`, bytes: larger packets are refused (and announced
    /// as Maximum Packet Size in MQTT 5 CONNACK). 2 to 268_435_460; an
    /// integer or `"256KB"`/`"1MB"`. Default 1 MiB.
    #[serde(
        deserialize_with = "de_max_packet_size",
        serialize_with = "value::serialize_size_bytes"
    )]
    pub max_packet_size: u32,
    /// `max_inflight`: unacknowledged QoS 1/2 messages per client (the
    /// Receive Maximum the broker announces; a v5 client's own Receive
    /// Maximum caps its window further). 1 to 65535. Default 1000
    /// (docs/adr/0002-subscriber-backpressure.md).
    #[serde(deserialize_with = "de_max_inflight")]
    pub max_inflight: u16,
    /// `max_mqueue_len`: messages queued per session beyond the inflight
    /// window (and while offline). 1 to `limits::MQUEUE_LEN_MAX`.
    /// Default 1000.
    #[serde(deserialize_with = "de_max_mqueue_len")]
    pub max_mqueue_len: u32,
    /// `max_publisher_hold_ms`, milliseconds: how long a subscriber whose
    /// queue is past `max_mqueue_len` and that makes no progress may hold
    /// back the publishers of its messages before it is treated as stalled
    /// (its messages are then dropped). 0 turns back-pressure off: a full
    /// queue drops at once. 0 to `limits::PUBLISHER_HOLD_MAX_MS`. Default
    /// 5000.
    #[serde(deserialize_with = "de_max_publisher_hold_ms")]
    pub max_publisher_hold_ms: u32,
    /// `max_session_expiry_interval`, seconds: cap on the Session Expiry
    /// Interval a client may ask for. 0 to 4294967295; an integer or
    /// `"30s"`/`"30m"`/`"2h"`/`"1d"`. Default 2h (7200).
    #[serde(
        deserialize_with = "de_max_session_expiry_interval",
        serialize_with = "value::serialize_duration_secs"
    )]
    pub max_session_expiry_interval: u32,
    /// `max_topic_alias`: Topic Alias Maximum announced to clients; 0
    /// disables topic aliases. 0 to 65535. Default 65535.
    #[serde(deserialize_with = "de_max_topic_alias")]
    pub max_topic_alias: u16,
    /// `server_keepalive`, seconds: when set, overrides the client's Keep
    /// Alive (MQTT 5 Server Keep Alive). `None` (absent or `"disabled"`):
    /// the client's value stands. 1 to 65535. The Paho conformance run
    /// uses 60.
    #[serde(
        deserialize_with = "de_server_keepalive",
        serialize_with = "value::serialize_optional_secs"
    )]
    pub server_keepalive: Option<u16>,
    /// `retain_available`: accept retained messages. Default `true`.
    #[serde(deserialize_with = "value::bool")]
    pub retain_available: bool,
    /// `shared_subscription`: accept `$share/` filters. Default `true`.
    #[serde(deserialize_with = "value::bool")]
    pub shared_subscription: bool,
    /// `wildcard_subscription`: accept `+` and `#` in filters. Default
    /// `true`.
    #[serde(deserialize_with = "value::bool")]
    pub wildcard_subscription: bool,
    /// `max_clientid_len`, bytes: longer client ids are refused. 23 (the
    /// spec's minimum a server must accept) to 65535. Default 65535.
    #[serde(deserialize_with = "de_max_clientid_len")]
    pub max_clientid_len: u32,
    /// `max_topic_levels`: topic names (PUBLISH, will) and filters
    /// (SUBSCRIBE; of `$share/{group}/{filter}` the `{filter}`) with more
    /// levels are refused (see docs/configuration.md for the reason codes).
    /// 1 to `limits::TOPIC_LEVELS_MAX`. Default 128.
    #[serde(deserialize_with = "de_max_topic_levels")]
    pub max_topic_levels: u32,
    /// `allow_publish_sys`: let clients publish to `$SYS` and `$SYS/...`
    /// (for bridges relaying another broker's `$SYS` tree). Default `false`:
    /// such a PUBLISH is refused as if an authorization rule denied it
    /// (MQTT 5.0 section 4.7.2).
    #[serde(deserialize_with = "value::bool")]
    pub allow_publish_sys: bool,
    /// `max_subscriptions`: subscriptions one client may hold; further
    /// SUBSCRIBE entries get a quota-exceeded reason code. Bounded on
    /// purpose (no "unlimited"): 1 to `limits::SUBSCRIPTIONS_PER_CLIENT_MAX`.
    /// Default 1000.
    #[serde(deserialize_with = "de_max_subscriptions")]
    pub max_subscriptions: u32,
    /// `retained_max_messages`: retained messages kept by the node; a new
    /// retained topic beyond this is not stored. 1 to
    /// `limits::RETAINED_MESSAGES_MAX`. Default 100_000.
    #[serde(deserialize_with = "de_retained_max_messages")]
    pub retained_max_messages: u32,
    /// `retained_max_payload_size`, bytes: larger retained payloads are
    /// delivered but not stored. 1 to 268_435_460; an integer or
    /// `"64KB"`/`"1MB"`. Default 1 MiB.
    #[serde(
        deserialize_with = "de_retained_max_payload_size",
        serialize_with = "value::serialize_size_bytes"
    )]
    pub retained_max_payload_size: u32,
}

const MIB_BYTES: u32 = 1 << 20;
const HOUR_SECS: u32 = 3600;

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            max_packet_size: MIB_BYTES,
            max_inflight: 1000,
            max_mqueue_len: 1000,
            max_publisher_hold_ms: limits::PUBLISHER_HOLD_DEFAULT_MS,
            max_session_expiry_interval: 2 * HOUR_SECS,
            max_topic_alias: 65_535,
            server_keepalive: None,
            retain_available: true,
            shared_subscription: true,
            wildcard_subscription: true,
            max_clientid_len: 65_535,
            max_topic_levels: 128,
            allow_publish_sys: false,
            max_subscriptions: 1000,
            retained_max_messages: 100_000,
            retained_max_payload_size: MIB_BYTES,
        }
    }
}

fn de_max_packet_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::size_bytes_in(
        d,
        limits::PACKET_SIZE_MIN_BYTES,
        limits::PACKET_SIZE_MAX_BYTES,
    )
}

fn de_max_inflight<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    value::int_in(d, 1, limits::INFLIGHT_MAX)
}

fn de_max_mqueue_len<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::int_in(d, 1, limits::MQUEUE_LEN_MAX)
}

fn de_max_publisher_hold_ms<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::int_in(d, 0, limits::PUBLISHER_HOLD_MAX_MS)
}

fn de_max_session_expiry_interval<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::duration_secs_in(d, 0, limits::SESSION_EXPIRY_INTERVAL_MAX_SECS)
}

fn de_max_topic_alias<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    value::int_in(d, 0, limits::TOPIC_ALIAS_MAX)
}

fn de_server_keepalive<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    value::optional_duration_secs_in(d, 1, limits::KEEPALIVE_MAX_SECS)
}

fn de_max_clientid_len<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::int_in(
        d,
        limits::CLIENT_ID_LEN_MIN_BYTES,
        limits::CLIENT_ID_LEN_MAX_BYTES,
    )
}

fn de_max_topic_levels<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::int_in(d, 1, limits::TOPIC_LEVELS_MAX)
}

fn de_max_subscriptions<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::int_in(d, 1, limits::SUBSCRIPTIONS_PER_CLIENT_MAX)
}

fn de_retained_max_messages<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::int_in(d, 1, limits::RETAINED_MESSAGES_MAX)
}

fn de_retained_max_payload_size<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::size_bytes_in(d, 1, limits::PACKET_SIZE_MAX_BYTES)
}

// ---------------------------------------------------------------- [log]

/// `[log]`: diagnostics.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `log.level`: least severe level written. Default `"info"`.
    pub level: LogLevel,
}

/// `log.level` values, most to least severe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub const ALL: [LogLevel; 5] = [
        LogLevel::Error,
        LogLevel::Warn,
        LogLevel::Info,
        LogLevel::Debug,
        LogLevel::Trace,
    ];

    /// The spelling in the config file, which is also a valid
    /// `tracing_subscriber::EnvFilter` directive.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }

    fn parse(text: &str) -> Option<LogLevel> {
        let text = text.trim();
        LogLevel::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(text))
    }
}

impl<'de> Deserialize<'de> for LogLevel {
    // By hand rather than derived, so the error lists the levels in the
    // usual "allowed:" form and env values are case-insensitive.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const ALLOWED: &str = "one of \"error\", \"warn\", \"info\", \"debug\", \"trace\"";
        let text = value::string_matching(d, ALLOWED, |s| LogLevel::parse(s).is_some())?;
        Ok(LogLevel::parse(&text).expect("checked by string_matching"))
    }
}

// ---------------------------------------------------------------- [authorization]

/// `[authorization]`: topic authorization rules (ACL), EMQX-style; see
/// `docs/authorization.md` and [`crate::authz`]. The rules themselves are
/// checked when the whole config is validated (`Config::authz`), so errors
/// can name the rule by its index.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthorizationConfig {
    /// `no_match`: what a request no rule matches gets: `"allow"` or
    /// `"deny"`. Default `"allow"`.
    #[serde(deserialize_with = "de_permission", serialize_with = "ser_permission")]
    pub no_match: Permission,
    /// `deny_action`: what a denied PUBLISH causes: `"ignore"` (dropped; v5
    /// QoS 1/2 are acknowledged with 0x87) or `"disconnect"`. Default
    /// `"ignore"`.
    #[serde(
        deserialize_with = "de_deny_action",
        serialize_with = "ser_deny_action"
    )]
    pub deny_action: DenyAction,
    /// `deny_reason`: the MQTT 5 reason code of a refusal:
    /// `"not_authorized"` (0x87) or `"unspecified_error"` (0x80, reveals
    /// nothing; the Paho conformance run uses it). Default
    /// `"not_authorized"`.
    #[serde(
        deserialize_with = "de_deny_reason",
        serialize_with = "ser_deny_reason"
    )]
    pub deny_reason: DenyReason,
    /// `rules`: `[[authorization.rules]]` tables, tried in order, first match
    /// wins. Only settable in the file (an array of tables has no
    /// environment form). Default: none.
    #[serde(deserialize_with = "de_rules", skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthorizationRuleConfig>,
}

impl Default for AuthorizationConfig {
    fn default() -> Self {
        AuthorizationConfig {
            no_match: Permission::Allow,
            deny_action: DenyAction::Ignore,
            deny_reason: DenyReason::NotAuthorized,
            rules: Vec::new(),
        }
    }
}

impl AuthorizationConfig {
    /// The rules in the form [`crate::authz::Authz::new`] takes.
    pub fn rules(&self) -> Vec<Rule> {
        self.rules
            .iter()
            .map(|rule| Rule {
                permission: rule.permission,
                action: rule.action,
                topics: rule.topics.clone(),
                client_id: rule.client_id.clone(),
                username: rule.username.clone(),
            })
            .collect()
    }
}

/// One `[[authorization.rules]]` table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationRuleConfig {
    /// `permission`: `"allow"` or `"deny"`. Required.
    #[serde(deserialize_with = "de_permission", serialize_with = "ser_permission")]
    pub permission: Permission,
    /// `action`: `"publish"`, `"subscribe"` or `"all"`. Required.
    #[serde(
        deserialize_with = "de_rule_action",
        serialize_with = "ser_rule_action"
    )]
    pub action: RuleAction,
    /// `topics`: topic filters (with `${clientid}` / `${username}`), or
    /// `"eq <text>"` for that exact text. Required, 1 to
    /// `authz::TOPICS_PER_RULE_MAX`.
    #[serde(deserialize_with = "de_topics")]
    pub topics: Vec<String>,
    /// `client_id`: the rule applies only to this exact client id.
    #[serde(
        default,
        deserialize_with = "de_rule_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub client_id: Option<String>,
    /// `username`: the rule applies only to this exact user name.
    #[serde(
        default,
        deserialize_with = "de_rule_name",
        skip_serializing_if = "Option::is_none"
    )]
    pub username: Option<String>,
}

fn names_allowed(names: &[&str]) -> String {
    let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
    format!("one of {}", quoted.join(", "))
}

fn de_permission<'de, D: Deserializer<'de>>(d: D) -> Result<Permission, D::Error> {
    let allowed = names_allowed(&Permission::ALL.map(Permission::as_str));
    let text = value::string_matching(d, &allowed, |s| Permission::parse(s).is_some())?;
    Ok(Permission::parse(&text).expect("checked by string_matching"))
}

fn ser_permission<S: Serializer>(p: &Permission, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(p.as_str())
}

fn de_rule_action<'de, D: Deserializer<'de>>(d: D) -> Result<RuleAction, D::Error> {
    let allowed = names_allowed(&RuleAction::ALL.map(RuleAction::as_str));
    let text = value::string_matching(d, &allowed, |s| RuleAction::parse(s).is_some())?;
    Ok(RuleAction::parse(&text).expect("checked by string_matching"))
}

fn ser_rule_action<S: Serializer>(a: &RuleAction, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.as_str())
}

fn de_deny_action<'de, D: Deserializer<'de>>(d: D) -> Result<DenyAction, D::Error> {
    let allowed = names_allowed(&DenyAction::ALL.map(DenyAction::as_str));
    let text = value::string_matching(d, &allowed, |s| DenyAction::parse(s).is_some())?;
    Ok(DenyAction::parse(&text).expect("checked by string_matching"))
}

fn ser_deny_action<S: Serializer>(a: &DenyAction, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(a.as_str())
}

fn de_deny_reason<'de, D: Deserializer<'de>>(d: D) -> Result<DenyReason, D::Error> {
    let allowed = names_allowed(&DenyReason::ALL.map(DenyReason::as_str));
    let text = value::string_matching(d, &allowed, |s| DenyReason::parse(s).is_some())?;
    Ok(DenyReason::parse(&text).expect("checked by string_matching"))
}

fn ser_deny_reason<S: Serializer>(r: &DenyReason, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(r.as_str())
}

fn de_rule_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    value::string_matching(d, "a non-empty string", |s| !s.is_empty()).map(Some)
}

fn de_topics<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    value::string_array(
        d,
        "an array of topic filter strings, e.g. [\"secret/#\", \"devices/${clientid}/#\"]",
    )
}

fn de_rules<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<AuthorizationRuleConfig>, D::Error> {
    value::table_array(
        d,
        "an array of [[authorization.rules]] tables (file only: rules have no environment form)",
    )
}

// ---------------------------------------------------------------- [server_redirection]

/// `[server_redirection]`: when the node holds `max_connections` MQTT
/// connections, MQTT 5 clients are sent to another server (CONNACK 0x9C
/// with a Server Reference), v3.1.1 clients refused (return code 3). See
/// docs/redirection.md. Also readable and replaceable at run time through
/// the admin API (`/api/v5/config/server_redirection`), which goes through
/// the same readers and [`ServerRedirectionConfig::validate`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerRedirectionConfig {
    /// `enable`: redirect at the cap. Default `false`.
    #[serde(deserialize_with = "value::bool")]
    pub enable: bool,
    /// `redirect_strategy`: `"random"` (uniform) or `"round_robin"` (the
    /// configured order, node-wide). Default `"random"`.
    #[serde(
        deserialize_with = "de_redirect_strategy",
        serialize_with = "ser_redirect_strategy"
    )]
    pub redirect_strategy: Strategy,
    /// `max_connections`: MQTT connections on the whole node (every
    /// listener, every shard) at which redirection starts. 0 to
    /// `limits::CONNECTIONS_PER_NODE_MAX` (0 sends every new client away).
    /// Default 1000.
    #[serde(deserialize_with = "de_redirection_max_connections")]
    pub max_connections: u32,
    /// `redirect_servers`: `[[server_redirection.redirect_servers]]` tables,
    /// in order (round robin follows it). Required when `enable = true`.
    /// From the environment: `RINGMQ_SERVER_REDIRECTION__REDIRECT_SERVERS__0__HOST`
    /// and so on, indices from 0 (they replace the file's list).
    #[serde(deserialize_with = "de_redirect_servers")]
    pub redirect_servers: Vec<RedirectServerConfig>,
}

impl Default for ServerRedirectionConfig {
    fn default() -> Self {
        ServerRedirectionConfig {
            enable: false,
            redirect_strategy: Strategy::Random,
            max_connections: 1000,
            redirect_servers: Vec::new(),
        }
    }
}

/// One `[[server_redirection.redirect_servers]]` table. Host and port are
/// read leniently and checked by [`ServerRedirectionConfig::validate`], so
/// the config file and the admin API give the same messages.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedirectServerConfig {
    /// `host`: host name, IPv4 or IPv6 address (brackets optional).
    /// Required.
    #[serde(deserialize_with = "de_redirect_host")]
    pub host: String,
    /// `port`: 1 to 65535. Default 1883.
    #[serde(
        default = "default_redirect_port",
        deserialize_with = "de_redirect_port"
    )]
    pub port: u32,
    /// `description`: for operators; never sent to clients.
    #[serde(
        default,
        deserialize_with = "de_redirect_description",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<String>,
}

fn default_redirect_port() -> u32 {
    1883
}

/// A bad `[server_redirection]` value: the field (relative to the section,
/// e.g. `redirect_servers[1].host`), the value and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub value: String,
    pub allowed: String,
}

impl ServerRedirectionConfig {
    /// Checks that the readers leave open (host syntax, port range, a
    /// server list when enabled). The one validation of this section, for
    /// the config file, the environment and the admin API alike.
    pub fn validate(&self) -> Result<(), FieldError> {
        if self.redirect_servers.len() > limits::REDIRECT_SERVERS_MAX {
            return Err(FieldError {
                field: "redirect_servers".to_string(),
                value: format!("{} servers", self.redirect_servers.len()),
                allowed: format!("at most {} servers", limits::REDIRECT_SERVERS_MAX),
            });
        }
        for (i, server) in self.redirect_servers.iter().enumerate() {
            if !is_redirect_host(&server.host) {
                return Err(FieldError {
                    field: format!("redirect_servers[{i}].host"),
                    value: format!("{:?}", server.host),
                    allowed: REDIRECT_HOST_ALLOWED.to_string(),
                });
            }
            if !(1..=u32::from(u16::MAX)).contains(&server.port) {
                return Err(FieldError {
                    field: format!("redirect_servers[{i}].port"),
                    value: server.port.to_string(),
                    allowed: "a port from 1 to 65535".to_string(),
                });
            }
        }
        if self.enable && self.redirect_servers.is_empty() {
            return Err(FieldError {
                field: "redirect_servers".to_string(),
                value: "no servers".to_string(),
                allowed: "at least one server when server_redirection.enable is true \
                          (add [[server_redirection.redirect_servers]] with a host)"
                    .to_string(),
            });
        }
        Ok(())
    }

    /// The live form the shards read. Call on a validated config.
    pub fn to_redirection(&self) -> Redirection {
        Redirection {
            enable: self.enable,
            strategy: self.redirect_strategy,
            max_connections: self.max_connections as usize,
            servers: self
                .redirect_servers
                .iter()
                .map(|s| {
                    let port = u16::try_from(s.port).expect("validated port");
                    RedirectServer::new(&s.host, port, s.description.clone())
                })
                .collect(),
        }
    }
}

const REDIRECT_HOST_ALLOWED: &str =
    "a host name, an IPv4 address or an IPv6 address (optionally in brackets), e.g. \
     \"server1.example.com\", \"10.0.0.2\" or \"fd00::2\"";

/// A DNS host name (letters, digits, '-' inside labels, dots between
/// labels) or an IP literal.
fn is_redirect_host(host: &str) -> bool {
    let bare = crate::admission::strip_brackets(host);
    if bare.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    if host.starts_with('[') {
        return false;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.len() <= limits::REDIRECT_HOST_LEN_MAX_BYTES
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn de_redirect_strategy<'de, D: Deserializer<'de>>(d: D) -> Result<Strategy, D::Error> {
    let allowed = names_allowed(&Strategy::ALL.map(Strategy::as_str));
    let text = value::string_matching(d, &allowed, |s| Strategy::parse(s).is_some())?;
    Ok(Strategy::parse(&text).expect("checked by string_matching"))
}

fn ser_redirect_strategy<S: Serializer>(s: &Strategy, ser: S) -> Result<S::Ok, S::Error> {
    ser.serialize_str(s.as_str())
}

fn de_redirection_max_connections<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    value::int_in(d, 0, limits::CONNECTIONS_PER_NODE_MAX)
}

fn de_redirect_servers<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Vec<RedirectServerConfig>, D::Error> {
    value::table_array_or_indexed(
        d,
        "an array of [[server_redirection.redirect_servers]] tables with host, port, description",
    )
}

fn de_redirect_host<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    // Any string here; `validate` checks the syntax and names the server.
    value::string_matching(d, "a string: a host name, IPv4 or IPv6 address", |_| true)
        .map(|s| s.trim().to_string())
}

fn de_redirect_port<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    // Wide here so `validate` reports 0 and 65536 with the section's message.
    value::int_in(d, 0, u32::MAX)
}

fn de_redirect_description<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let allowed = format!(
        "a string of at most {} bytes",
        limits::REDIRECT_DESCRIPTION_LEN_MAX_BYTES
    );
    value::string_matching(d, &allowed, |s| {
        s.len() <= limits::REDIRECT_DESCRIPTION_LEN_MAX_BYTES
    })
    .map(Some)
}

// ---------------------------------------------------------------- [api]

/// `[api]`: the admin HTTP API (`src/admin`), served by a control-plane
/// thread, never by a shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// `enable`: serve the API. Default `true`.
    #[serde(deserialize_with = "value::bool")]
    pub enable: bool,
    /// `bind`: `ip:port` as for listeners. Default `"127.0.0.1:18083"`.
    #[serde(deserialize_with = "de_api_bind")]
    pub bind: SocketAddr,
    /// `username` for HTTP basic auth. Default `"admin"` (a warning is
    /// logged at start while the defaults are in use).
    #[serde(deserialize_with = "de_api_username")]
    pub username: String,
    /// `password` for HTTP basic auth. Default `"public"`.
    #[serde(deserialize_with = "de_api_password")]
    pub password: String,
}

pub const DEFAULT_API_USERNAME: &str = "admin";
pub const DEFAULT_API_PASSWORD: &str = "public";

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            enable: true,
            bind: SocketAddr::from(([127, 0, 0, 1], 18083)),
            username: DEFAULT_API_USERNAME.to_string(),
            password: DEFAULT_API_PASSWORD.to_string(),
        }
    }
}

impl ApiConfig {
    /// Whether the well-known default credentials are in use.
    pub fn has_default_credentials(&self) -> bool {
        self.username == DEFAULT_API_USERNAME && self.password == DEFAULT_API_PASSWORD
    }
}

fn de_api_bind<'de, D: Deserializer<'de>>(d: D) -> Result<SocketAddr, D::Error> {
    de_bind(d)
}

fn de_api_username<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    // Basic auth splits user:password at the first ':'.
    value::string_matching(
        d,
        "a non-empty string of at most 255 bytes without ':' or control characters",
        |s| !s.is_empty() && s.len() <= 255 && !s.contains(':') && !s.chars().any(char::is_control),
    )
}

fn de_api_password<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    value::string_matching(
        d,
        "a non-empty string of at most 255 bytes without control characters",
        |s| !s.is_empty() && s.len() <= 255 && !s.chars().any(char::is_control),
    )
}
