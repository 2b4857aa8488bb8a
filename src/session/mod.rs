//! The per-client MQTT protocol state machine, sans-IO.
//!
//! Two types split what outlives a socket from what does not:
//!
//! - [`Session`]: durable state (subscriptions, outbound inflight window,
//!   queued messages, inbound QoS 2 packet ids awaiting PUBREL). Plain data
//!   and `Send`, so a takeover can move it to another shard.
//! - [`Connection`]: a live client connection wrapping a `Session`: keepalive,
//!   topic aliases, the client's limits, the will, and the transmit queue.
//!
//! Around them: [`Lifecycle`] owns a session's transitions (created,
//! resumed, taken over, offline, expired, ended) and emits the events a
//! store follows; [`SessionSnapshot`] is a session as versioned plain data
//! with wall-clock deadlines, what moves between shards (and later nodes
//! and disk).
//!
//! # Call order (the quinn-proto model)
//!
//! Everything comes in through `handle_*` with the current instant, everything
//! goes out through `poll_*`. No I/O, no clock reads, no randomness.
//!
//! 1. [`Connection::check_connect`] on the first packet; on `Err` send the
//!    CONNACK (made to fit by [`Connection::fit_refusal`]) and close.
//!    Then [`Connection::check_connack_fits`] with the final client id: on
//!    `Err` send the refusal it gives, if any, and close.
//! 2. [`Connection::accept`] (after takeover of any existing session).
//! 3. After every `handle_packet` / `handle_delivery` / `handle_timeout` /
//!    `kick`: call [`Connection::poll_transmit`] until `None`, then
//!    [`Connection::poll_action`] until `None` (the Actions are processed
//!    synchronously; retained messages fed back with `handle_delivery` after
//!    an [`Action::Subscribe`] then go out after the SUBACK, because the tx
//!    queue is FIFO); re-arm the timer with [`Connection::poll_timeout`].
//! 4. After [`Action::Close`]: flush, close the socket,
//!    [`Connection::take_will`], then [`Connection::into_session`].
//!
//! # Queue and drop policy
//!
//! Outbound QoS 1/2 messages use the inflight window of
//! `min(client Receive Maximum, cfg.max_inflight)` packets; the rest wait in
//! the session queue (at most `cfg.max_mqueue_len` messages), in order. QoS 0
//! messages skip the window and go straight to the transmit queue when the
//! session queue is empty and fewer than [`TX_QOS0_MAX`] QoS 0 messages are
//! already waiting for the socket; otherwise they are queued behind the
//! others so ordering is kept. QoS 0 messages ARE queued while the client is
//! offline (MQTT 5.0 section 4.1 allows either); they are the first to go
//! when the queue fills.
//!
//! When a message arrives and the queue is full:
//! 1. the oldest queued QoS 0 message is dropped and the new one queued;
//! 2. else, for a QoS 1/2 message to a client that is online and not
//!    stalled (and `max_publisher_hold_ms` > 0), the message is queued past
//!    the bound, up to [`pressure::queue_len_hard_max`], and the client is
//!    congested: the shard pauses the publishers until the queue is back
//!    at half the bound (`Connection::poll_relieved`), or until the client
//!    has made no progress for the hold time (`Connection::stall`);
//! 3. else the new message is dropped (whatever its QoS: tail drop, so
//!    messages already accepted keep their place and order).
//!
//! Every message this session accepted and then did not deliver is counted in
//! [`DropCounts`] (`dropped_messages` is the sum): queue full, expired
//! (Message Expiry Interval passed before sending), too large for the
//! client's Maximum Packet Size (MQTT-3.1.2-25: QoS > 0 ones then count as
//! completed), and QoS 0 messages still in the transmit queue when the
//! connection closed. A message transmitted once counts as delivered: it is
//! resent on resume even if it expired meanwhile (onward delivery has
//! started, MQTT-3.3.2-5), and if a later connection's Maximum Packet Size no
//! longer fits it, QoS 1 completes and QoS 2 moves on to PUBREL so the
//! client releases the packet id.
//!
//! # Decisions where the spec leaves a choice
//!
//! - Will on takeover (MQTT 5.0 section 3.1.4 says the old connection's will
//!   is published "as described in 3.1.2.5", and MQTT-3.1.3-9 forbids
//!   sending it when a new connection to the session arrives before the Will
//!   Delay Interval has passed): see [`Connection::takeover`]. A new
//!   connection with Clean Start ends the session, so the will goes out
//!   immediately; one resuming the session cancels a delayed will; a will
//!   with no delay is published at once.
//! - Outbound topic aliases: assigned in first-send order up to
//!   `min(client Topic Alias Maximum, OUTBOUND_TOPIC_ALIAS_MAX)`; once all
//!   are used, new topics go without an alias (no LRU replacement: replacing
//!   costs a full topic resend anyway and churns the client's table).
//! - MQTT 3.1.1 keepalive is not capped by `server_keepalive_s`: a 3.1.1
//!   client cannot be told, and enforcing a shorter interval would
//!   disconnect a compliant client.
//! - Client identifiers: any MQTT string up to `max_client_id_len` bytes
//!   without control characters.
//! - Unacknowledged outbound messages are never retransmitted on a live
//!   connection, only on resume (MQTT-4.4.0-1).
//!
//! # Authorization
//!
//! With `cfg.authz` set, every SUBSCRIBE filter and every inbound PUBLISH is
//! checked against the rules (client id and the CONNECT user name):
//!
//! - a denied filter gets SUBACK 0x87 (v5) or 0x80 (v3.1.1) and no
//!   [`Action::Subscribe`]; the other filters of the packet are unaffected;
//! - a denied PUBLISH is not routed. With `DenyAction::Ignore` (EMQX's
//!   default) v5 QoS 1/2 get PUBACK/PUBREC 0x87, QoS 0 is dropped silently,
//!   and v3.1.1 is acknowledged as usual (it has no code to refuse with);
//!   with `DenyAction::Disconnect` the connection closes (v5: DISCONNECT
//!   0x87) and the will, if allowed, is published;
//! - `cfg.authz_deny_reason = UnspecifiedError` puts 0x80 instead of 0x87
//!   in every v5 refusal above;
//! - the will is checked when it is due ([`Connection::take_will`]), as EMQX
//!   does: a will to a denied topic is dropped, the CONNECT is not refused.
//!
//! With an ACL file (`cfg.authn`, `[authentication] acl_file`) the order
//! is: the built-in refusals below, then the `[authorization]` rules (the
//! first matching rule decides), then the ACL file, which denies what it
//! does not grant; `no_match` is not consulted. A superuser (built-in
//! database `is_superuser`, [`Connection::set_superuser`]) skips the ACL
//! file: for it, `no_match` decides what no rule matches, as without one.
//!
//! Topic names `$share` / `$share/...` (no subscription can match them)
//! and, unless `cfg.allow_publish_sys`, `$SYS` / `$SYS/...` (MQTT 5.0
//! section 4.7.2) are denied to every PUBLISH and will by a built-in rule
//! checked before the configured ones, with or without `cfg.authz`.
//!
//! # Topic levels
//!
//! Topic names and filters with more than `cfg.max_topic_levels` levels are
//! refused before anything is routed or stored (the router asserts the
//! compile-time cap): SUBSCRIBE 0x8F / 0x80 for that filter, a will with
//! CONNACK 0x90 / 5, a PUBLISH with PUBACK/PUBREC 0x90 where an ack can
//! carry it (v5 QoS 1/2) and by closing the connection otherwise (v5:
//! DISCONNECT 0x90), as EMQX does.

mod clock;
mod connack;
mod connection;
pub mod journal;
mod lazy;
pub mod lifecycle;
pub mod message_id;
mod origin;
pub mod pressure;
pub mod snapshot;
mod state;
pub mod store_quota;

#[cfg(test)]
mod tests;

pub use connection::Connection;
pub use lifecycle::{Lifecycle, SessionEvent};
pub use message_id::{MessageId, MessageIds};
pub use origin::Origin;
pub use snapshot::{SessionSnapshot, SnapshotError, WallClock, SNAPSHOT_VERSION};
pub use state::Session;

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::authn::Authn;
use crate::authz::{Authz, DenyAction, DenyReason};
use crate::codec::{
    ByteStr, PublishProperties, QoS, ReasonCode, SubscriptionOptions, PUBLISH_PROPERTIES_EMPTY,
};
use crate::router::SharedKey;

pub use crate::limits::{OUTBOUND_TOPIC_ALIAS_MAX, TX_QOS0_MAX};

/// Broker-wide limits the session enforces (built by the lead from config).
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Announced in CONNACK (v5) as Maximum Packet Size; enforced by the codec.
    pub max_packet_size: u32,
    /// Our Receive Maximum (announced) AND the cap on our outbound inflight
    /// window.
    pub max_inflight: u16,
    /// Per-session queue of messages waiting for the window or offline.
    /// An online subscriber that keeps reading may go past it while its
    /// publishers are paused (see [`pressure`]).
    pub max_mqueue_len: usize,
    /// How long a congested subscriber that makes no progress holds its
    /// publishers back (`mqtt.max_publisher_hold_ms`); 0: never, a full
    /// queue drops at once.
    pub max_publisher_hold_ms: u32,
    /// Cap on Session Expiry Interval; MQTT 3.1.1 persistent sessions (clean
    /// session 0) use this value.
    pub max_session_expiry_interval_s: u32,
    /// Topic Alias Maximum we announce (client to server aliases); 0 = none.
    pub max_topic_alias: u16,
    /// Cap on keepalive; when a v5 client asks for more (or 0), use the cap
    /// and announce Server Keep Alive.
    pub server_keepalive_s: Option<u16>,
    pub retain_available: bool,
    pub shared_subscription_available: bool,
    pub wildcard_subscription_available: bool,
    /// Per client; 0 = unlimited.
    pub max_subscriptions: usize,
    pub max_client_id_len: usize,
    /// Most levels in a topic name (PUBLISH, after topic alias resolution;
    /// the will) or a filter (the part after `$share/{group}/`); at most
    /// `limits::TOPIC_LEVELS_MAX`, which the router asserts.
    pub max_topic_levels: usize,
    /// Let clients publish to `$SYS` topics (bridges that relay another
    /// broker's `$SYS` tree); otherwise such a PUBLISH is refused as if an
    /// authorization rule denied it.
    pub allow_publish_sys: bool,
    /// Topic authorization rules; `None` allows everything without looking
    /// (the default config). Shared by every connection of every shard.
    pub authz: Option<Arc<Authz>>,
    /// What a PUBLISH the rules deny causes.
    pub authz_deny_action: DenyAction,
    /// The MQTT 5 reason code of a refusal (0x87 or 0x80).
    pub authz_deny_reason: DenyReason,
    /// `[authentication]`, when configured: its ACL file is consulted after
    /// the rules (see "Authorization" above); the shard checks CONNECTs
    /// with it. `None`: the defaults, nothing checked.
    pub authn: Option<Arc<Authn>>,
}

/// An application message as routed across shards: immutable, shared by
/// `Arc` (payload is `Bytes`, never copied).
#[derive(Debug, PartialEq)]
pub struct Message {
    pub topic: ByteStr,
    pub payload: Bytes,
    /// As published.
    pub qos: QoS,
    /// Retain flag as published.
    pub retain: bool,
    /// As published, minus topic_alias and subscription_identifiers; `None`
    /// when that leaves none (boxed as in [`crate::codec::Publish`]).
    pub properties: Option<Box<PublishProperties>>,
    /// Publisher's client id (for No Local).
    pub origin: Option<Origin>,
    /// From Message Expiry Interval at receipt.
    pub expires_at: Option<Instant>,
    /// The message's identity cluster-wide ([`MessageId`]): set by the
    /// publisher's shard before the `Arc` is shared (`Shard::publish_here`),
    /// carried by forwarded copies; `None` only for a message rebuilt from
    /// bytes written before ids existed, or not routed yet.
    pub id: Option<MessageId>,
}

impl Message {
    /// A copy of this message with id `id` (topic, payload and properties
    /// shared or cloned, not the `Arc`): for a message that reaches
    /// `Shard::publish_here` without an id while its `Arc` is already
    /// shared, which the usual paths never do.
    pub fn with_id(&self, id: MessageId) -> Message {
        Message {
            topic: self.topic.clone(),
            payload: self.payload.clone(),
            qos: self.qos,
            retain: self.retain,
            properties: self.properties.clone(),
            origin: self.origin.clone(),
            expires_at: self.expires_at,
            id: Some(id),
        }
    }

    /// The properties, empty ones when there are none.
    pub fn properties(&self) -> &PublishProperties {
        self.properties
            .as_deref()
            .unwrap_or(&PUBLISH_PROPERTIES_EMPTY)
    }
}

/// One message for one session.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub message: Arc<Message>,
    /// min(subscription QoS, message QoS), computed by the shard.
    pub qos: QoS,
    /// Retain flag to send (true for retained-on-subscribe, or RAP).
    pub retain: bool,
    pub subscription_ids: crate::router::SubscriptionIds,
    /// The shared group this delivery was picked for (`None`: an ordinary
    /// subscription). A session that ends with this message undelivered
    /// hands it back to the group (MQTT 5.0 section 4.8.2), see
    /// [`Session::take_shared_undelivered`]. The router's own `Arc`, so a
    /// reference count per delivery, no allocation. Not in the snapshot: a
    /// session that moves is not ending.
    pub shared: Option<Arc<SharedKey>>,
}

impl Delivery {
    /// `message` for a local recipient of it.
    pub fn of(message: &Arc<Message>, r: crate::router::RecipientRef<'_>) -> Delivery {
        Delivery {
            message: message.clone(),
            qos: r.qos.min(message.qos),
            retain: r.retain_as_published && message.retain,
            subscription_ids: r.subscription_ids,
            shared: None,
        }
    }

    /// `message` for the member `r` of the shared group `key` picked.
    pub fn shared(
        message: &Arc<Message>,
        r: crate::router::Recipient,
        key: Arc<SharedKey>,
    ) -> Delivery {
        Delivery {
            message: message.clone(),
            qos: r.qos.min(message.qos),
            retain: r.retain_as_published && message.retain,
            subscription_ids: r.subscription_ids,
            shared: Some(key),
        }
    }
}

/// What the shard must do next (see [`Connection::poll_action`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Route this message (after topic-alias resolution). For QoS 2 it is
    /// emitted when the PUBLISH first arrives; a duplicate with the same
    /// packet id while awaiting PUBREL is not routed again.
    Publish(Arc<Message>),
    /// Subscribe; the shard updates the router, then per retain_handling (0
    /// always; 1 only if `!existed`; 2 never) and if the filter isn't shared,
    /// feeds retained messages with `handle_delivery(retain = true)`.
    /// `existed` = this session already had this exact filter.
    Subscribe {
        filter: ByteStr,
        options: SubscriptionOptions,
        identifier: Option<u32>,
        existed: bool,
    },
    Unsubscribe {
        filter: ByteStr,
    },
    /// Close the socket after flushing everything `poll_transmit` returns.
    /// `will` = whether the will must be published (then `take_will` has
    /// it). Emitted exactly once per connection.
    Close {
        reason: ReasonCode,
        will: bool,
    },
}

/// Messages accepted by a session and then not delivered, by cause.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounts {
    /// Dropped by the queue policy (queue full).
    pub queue_full: u64,
    /// Message Expiry Interval passed before the message could be sent.
    pub expired: u64,
    /// Larger than the client's Maximum Packet Size (MQTT-3.1.2-25).
    pub too_large: u64,
    /// QoS 0 messages still waiting for the socket when the connection closed.
    pub closed: u64,
}

impl DropCounts {
    pub fn total(&self) -> u64 {
        self.queue_full + self.expired + self.too_large + self.closed
    }

    /// Adds `other`'s counts, cause by cause.
    pub fn add(&mut self, other: &DropCounts) {
        self.queue_full += other.queue_full;
        self.expired += other.expired;
        self.too_large += other.too_large;
        self.closed += other.closed;
    }
}
