//! `[mqtt]`: protocol limits and features offered to clients. Each field
//! reader checks the allowed range, with caps from `crate::limits`.

use super::value;
use crate::limits;
use crate::router::SharedStrategy;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
    /// `shared_subscription_strategy`: which member of a shared group
    /// (`$share/{group}/...`) gets each message, cluster-wide:
    /// `round_robin` (default: every member in turn), `random`, or `local`
    /// (members on the publisher's node while there are any; on a single
    /// node the same as `round_robin`). docs/clustering.md.
    #[serde(
        deserialize_with = "de_shared_subscription_strategy",
        serialize_with = "ser_shared_subscription_strategy"
    )]
    pub shared_subscription_strategy: SharedStrategy,
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
            shared_subscription_strategy: SharedStrategy::RoundRobin,
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

fn de_shared_subscription_strategy<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<SharedStrategy, D::Error> {
    value::one_of(
        d,
        &SharedStrategy::ALL.map(SharedStrategy::as_str),
        SharedStrategy::parse,
    )
}

fn ser_shared_subscription_strategy<S: Serializer>(
    strategy: &SharedStrategy,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(strategy.as_str())
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
