//! [`SessionSnapshot`]: everything a [`Session`] owns, as plain data that
//! can leave the shard, the process and the node.
//!
//! One type for three journeys:
//! - a move between shards of this node (takeover): the snapshot is moved
//!   by value through the shard mesh (`ShardMsg::SessionMoved`), payloads
//!   stay `Bytes` and are not copied;
//! - the durable store and other nodes (later): the same value as bytes,
//!   [`SessionSnapshot::encode`] / [`SessionSnapshot::decode`].
//!
//! # Time
//!
//! An `Instant` means nothing to another process, so every deadline is a
//! wall-clock time in Unix milliseconds (`*_unix_ms`): the session expiry,
//! a pending will's due time, each message's expiry. They are converted
//! from and to `Instant` only at the edges, by a [`WallClock`] read once
//! by the caller (sans-IO: nothing here reads a clock).
//!
//! # Bytes form (version [`SNAPSHOT_VERSION`])
//!
//! ```text
//! offset  size  field
//!      0     4  magic "RMQS"
//!      4     2  version, little endian (1 to SNAPSHOT_VERSION = 3; refused otherwise)
//!      6     2  flags, 0 (refused otherwise: a later version may use them)
//!      8     4  body length in bytes, little endian (<= SESSION_SNAPSHOT_BYTES_MAX)
//!     12     8  FNV-1a 64 of the body (from version 3: of the version
//!               bytes, then the body), little endian
//!     20     -  body: the rkyv 0.8 archive of `SessionSnapshot`
//! ```
//!
//! Why rkyv: it is the frame format planned for the cluster
//! (`src/cluster/`, docs/ARCHITECTURE.md), so a snapshot read from disk or
//! from a peer is checked by the same code: `bytecheck` validates every
//! offset, length and enum tag of the archive before a field is read, so a
//! corrupt or hostile buffer is an `Err`, never a panic or an out-of-bounds
//! read. The body is copied into a 16-byte aligned buffer before it is
//! checked (a frame read from a file or a socket has no alignment). The
//! checksum catches what validation cannot: a flipped bit inside a payload
//! or a string is still a valid archive. After the archive, the session's
//! own rules are checked ([`SessionSnapshot::into_session`]): packet ids,
//! QoS values, subscription options, lengths within `src/limits.rs`.
//!
//! A new version adds a new `SNAPSHOT_VERSION` and keeps a reader for the
//! old one; a reader never guesses at a version it does not know. The
//! readers of versions 1 and 2 are in `snapshot_compat.rs`: version 2
//! gave queued deliveries their `seq`, version 3 gave every delivery its
//! message's cluster-wide id ([`DeliverySnapshot::id`]; `None` when read
//! from an older version).

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

pub use super::clock::WallClock;
use super::state::{Awaiting, Outbound, Session, Subscription};
use super::{Delivery, DropCounts, Message, MessageId, Origin};
use crate::codec::{ByteStr, PublishProperties, QoS, SubscriptionOptions};
use crate::limits::{
    INFLIGHT_MAX, MQUEUE_LEN_MAX, MQUEUE_OVERSHOOT_MAX, SESSION_SNAPSHOT_BYTES_MAX,
    SUBSCRIPTIONS_PER_CLIENT_MAX, SUBSCRIPTION_IDENTIFIER_MAX,
};

/// The version this build writes. It also reads version 1, whose queued
/// deliveries had no `seq`, and version 2, whose deliveries had no message
/// id (`snapshot_compat.rs`).
pub const SNAPSHOT_VERSION: u16 = 3;

const MAGIC: [u8; 4] = *b"RMQS";
const HEADER_BYTES: usize = 20;

/// Why bytes or a snapshot were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("not a ringmq session snapshot (the magic bytes are not \"RMQS\")")]
    NotASnapshot,
    #[error(
        "session snapshot version {found} is not supported: this ringmq reads versions 1 \
         to {supported} (written by another ringmq version?)"
    )]
    UnknownVersion { found: u16, supported: u16 },
    #[error("session snapshot flags {0:#06x} are unknown to this version")]
    UnknownFlags(u16),
    #[error("session snapshot truncated: {needed} bytes needed, {got} present")]
    Truncated { needed: usize, got: usize },
    #[error("session snapshot has {0} bytes after its body")]
    TrailingBytes(usize),
    #[error(
        "session snapshot of {len} bytes is over the limit of {max} bytes \
         (limits::SESSION_SNAPSHOT_BYTES_MAX)"
    )]
    TooLarge { len: usize, max: usize },
    #[error("session snapshot checksum mismatch: the body was changed or damaged")]
    Checksum,
    #[error("session snapshot body is not a valid archive: {0}")]
    Malformed(String),
    #[error("session snapshot is inconsistent: {0}")]
    Invalid(String),
}

/// A session as plain data. Collections are in a canonical order
/// (subscriptions by filter, inflight by admission order, QoS 2 ids
/// ascending), so equal sessions give equal snapshots.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SessionSnapshot {
    pub client_id: String,
    /// Effective Session Expiry Interval (`u32::MAX`: never).
    pub expiry_interval_s: u32,
    /// When the session ends if its client stays away; `None` while it is
    /// online (the countdown starts at the disconnect) or if it never does.
    pub expires_at_unix_ms: Option<u64>,
    pub subscriptions: Vec<SubscriptionSnapshot>,
    /// Outbound QoS 1/2 messages holding packet ids, by admission order.
    pub inflight: Vec<InflightSnapshot>,
    /// Where the next packet id search starts.
    pub next_packet_id: u16,
    /// The next delivery's number (above every `seq` of `inflight` and
    /// `queue`).
    pub next_seq: u64,
    /// Messages waiting for the window or the client, in order.
    pub queue: Vec<QueuedSnapshot>,
    /// The queue's bound (`mqtt.max_mqueue_len` of the last connection).
    pub queue_len_max: u32,
    /// Inbound QoS 2 packet ids: PUBREC sent, PUBREL not yet received.
    pub incoming_qos2: Vec<u16>,
    pub drops: DropsSnapshot,
    /// A will waiting for its delay while the client is offline.
    pub will: Option<WillSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct SubscriptionSnapshot {
    /// The raw filter, including any `$share/{group}/`.
    pub filter: String,
    pub qos: u8,
    pub no_local: bool,
    pub retain_as_published: bool,
    pub retain_handling: u8,
    pub identifier: Option<u32>,
}

/// Where an outbound QoS 1/2 message is in its handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum AwaitingSnapshot {
    PubAck,
    PubRec,
    PubComp,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct InflightSnapshot {
    pub packet_id: u16,
    pub seq: u64,
    pub awaiting: AwaitingSnapshot,
    /// Sent at least once: a resend carries DUP=1.
    pub transmitted: bool,
    pub delivery: DeliverySnapshot,
}

/// A queued delivery with the number it got when it entered the session
/// (0 for QoS 0: never stored on its own).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct QueuedSnapshot {
    pub seq: u64,
    pub delivery: DeliverySnapshot,
}

#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DeliverySnapshot {
    pub message: MessageSnapshot,
    /// QoS granted to this session (min of message and subscription).
    pub qos: u8,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// The message's cluster-wide id (`Message::id`): a session that moves
    /// between nodes is merged by it (`shard::takeover_remote`). Here and
    /// not in [`MessageSnapshot`], which is also a retained record, a will
    /// and a retained copy for a peer, whose ids nothing compares: their
    /// stored layout stays. `None`: read from a snapshot or record written
    /// before ids existed (version 2 and older).
    pub id: Option<MessageId>,
}

/// A routed message ([`Message`]) with its expiry on the wall clock.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct MessageSnapshot {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    pub payload_format_indicator: Option<u8>,
    /// As published; the remaining time is computed from `expires_at_unix_ms`.
    pub message_expiry_interval_s: Option<u32>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub user_properties: Vec<(String, String)>,
    pub content_type: Option<String>,
    pub origin: Option<String>,
    pub expires_at_unix_ms: Option<u64>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct DropsSnapshot {
    pub queue_full: u64,
    pub expired: u64,
    pub too_large: u64,
    pub closed: u64,
}

/// A will due at `due_unix_ms` (close + Will Delay Interval) unless the
/// client returns first.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct WillSnapshot {
    pub message: MessageSnapshot,
    pub due_unix_ms: u64,
}

impl SessionSnapshot {
    /// The state of `session` (payloads are shared, not copied). `expires_at` and `will` are what the shard
    /// keeps beside an offline session (see `session::lifecycle`).
    pub fn of(
        session: &Session,
        expires_at: Option<Instant>,
        will: Option<(&Message, Instant)>,
        clock: &WallClock,
    ) -> SessionSnapshot {
        let subscriptions = subscriptions_of(session);
        let mut inflight: Vec<InflightSnapshot> = session
            .inflight
            .iter()
            .map(|(&packet_id, o)| InflightSnapshot {
                packet_id,
                seq: o.seq,
                awaiting: match o.state {
                    Awaiting::PubAck => AwaitingSnapshot::PubAck,
                    Awaiting::PubRec => AwaitingSnapshot::PubRec,
                    Awaiting::PubComp => AwaitingSnapshot::PubComp,
                },
                transmitted: o.transmitted,
                delivery: DeliverySnapshot::of(&o.delivery, clock),
            })
            .collect();
        inflight.sort_unstable_by_key(|o| o.seq);
        let drops = &session.extras.drops;
        SessionSnapshot {
            client_id: session.client_id.as_str().to_owned(),
            expiry_interval_s: session.expiry_interval_s,
            expires_at_unix_ms: expires_at.map(|t| clock.to_unix_ms(t)),
            subscriptions,
            inflight,
            next_packet_id: session.next_packet_id,
            next_seq: session.next_seq,
            queue: session
                .queue
                .iter()
                .map(|(seq, d)| QueuedSnapshot {
                    seq: *seq,
                    delivery: DeliverySnapshot::of(d, clock),
                })
                .collect(),
            queue_len_max: session.queue_len_max,
            incoming_qos2: session.incoming_qos2.iter().copied().collect(),
            drops: DropsSnapshot {
                queue_full: drops.queue_full,
                expired: drops.expired,
                too_large: drops.too_large,
                closed: drops.closed,
            },
            will: will.map(|(message, due)| WillSnapshot {
                message: MessageSnapshot::of(message, clock),
                due_unix_ms: clock.to_unix_ms(due),
            }),
        }
    }

    /// Rebuilds the session, checking the session's rules first (a
    /// snapshot from disk or another node is input, not a trusted value).
    /// Returns the session, when it expires if its client stays away, and
    /// a pending will with its due time.
    #[allow(clippy::type_complexity)]
    pub fn into_session(
        self,
        clock: &WallClock,
    ) -> Result<(Session, Option<Instant>, Option<(Message, Instant)>), SnapshotError> {
        self.check()?;
        let mut session = Session::new(
            mqtt_str(self.client_id, "client id")?,
            self.expiry_interval_s,
            0,
        );
        session.queue_len_max = self.queue_len_max;
        session.next_packet_id = self.next_packet_id;
        session.next_seq = self.next_seq;
        for s in self.subscriptions {
            let options = SubscriptionOptions {
                qos: qos(s.qos)?,
                no_local: s.no_local,
                retain_as_published: s.retain_as_published,
                retain_handling: s.retain_handling,
            };
            let sub = Subscription {
                options,
                identifier: s.identifier,
            };
            session
                .subscriptions
                .insert(mqtt_str(s.filter, "filter")?, sub);
        }
        for o in self.inflight {
            let outbound = Outbound {
                seq: o.seq,
                delivery: o.delivery.into_delivery(clock)?,
                state: match o.awaiting {
                    AwaitingSnapshot::PubAck => Awaiting::PubAck,
                    AwaitingSnapshot::PubRec => Awaiting::PubRec,
                    AwaitingSnapshot::PubComp => Awaiting::PubComp,
                },
                transmitted: o.transmitted,
            };
            session.inflight.insert(o.packet_id, outbound);
        }
        for q in self.queue {
            let d = q.delivery.into_delivery(clock)?;
            if d.qos == QoS::AtMostOnce {
                session.queue_qos0_len += 1;
            }
            session.queue.push_back((q.seq, d));
        }
        if !self.incoming_qos2.is_empty() {
            session.incoming_qos2.extend(self.incoming_qos2);
        }
        let drops = DropCounts {
            queue_full: self.drops.queue_full,
            expired: self.drops.expired,
            too_large: self.drops.too_large,
            closed: self.drops.closed,
        };
        if drops != DropCounts::default() {
            session.extras.drops = drops;
        }
        let will = match self.will {
            Some(w) => Some((
                w.message.into_message(clock)?,
                clock.to_instant(w.due_unix_ms),
            )),
            None => None,
        };
        let expires_at = self.expires_at_unix_ms.map(|ms| clock.to_instant(ms));
        Ok((session, expires_at, will))
    }

    /// The rules of a session that the archive's types cannot express.
    fn check(&self) -> Result<(), SnapshotError> {
        let invalid = |why: String| Err(SnapshotError::Invalid(why));
        if self.subscriptions.len() > SUBSCRIPTIONS_PER_CLIENT_MAX as usize {
            return invalid(format!(
                "{} subscriptions, more than limits::SUBSCRIPTIONS_PER_CLIENT_MAX",
                self.subscriptions.len()
            ));
        }
        let mut filters = HashSet::with_capacity(self.subscriptions.len());
        for s in &self.subscriptions {
            if !filters.insert(s.filter.as_str()) {
                return invalid(format!("filter {:?} appears twice", s.filter));
            }
            if s.retain_handling > 2 {
                return invalid(format!("retain handling {}", s.retain_handling));
            }
            if s.identifier
                .is_some_and(|i| i == 0 || i > SUBSCRIPTION_IDENTIFIER_MAX)
            {
                return invalid(format!("subscription identifier {:?}", s.identifier));
            }
            qos(s.qos)?;
        }
        if self.inflight.len() > usize::from(INFLIGHT_MAX) {
            return invalid(format!("{} inflight messages", self.inflight.len()));
        }
        let mut ids = HashSet::with_capacity(self.inflight.len());
        for o in &self.inflight {
            if o.packet_id == 0 || !ids.insert(o.packet_id) {
                return invalid(format!(
                    "inflight packet id {} is 0 or repeated",
                    o.packet_id
                ));
            }
            if o.seq >= self.next_seq {
                return invalid(format!("inflight seq {} not below next_seq", o.seq));
            }
            let expected = match o.awaiting {
                AwaitingSnapshot::PubAck => QoS::AtLeastOnce,
                AwaitingSnapshot::PubRec | AwaitingSnapshot::PubComp => QoS::ExactlyOnce,
            };
            if qos(o.delivery.qos)? != expected {
                return invalid(format!(
                    "inflight packet id {} awaits {:?} with QoS {}",
                    o.packet_id, o.awaiting, o.delivery.qos
                ));
            }
        }
        let mut last_seq = None;
        for q in &self.queue {
            if qos(q.delivery.qos)? == QoS::AtMostOnce {
                continue;
            }
            if q.seq >= self.next_seq || last_seq.is_some_and(|l| q.seq <= l) {
                return invalid(format!("queued seq {} not ascending below next_seq", q.seq));
            }
            last_seq = Some(q.seq);
        }
        let queue_max = MQUEUE_LEN_MAX as usize + MQUEUE_OVERSHOOT_MAX;
        if self.queue.len() > queue_max {
            return invalid(format!(
                "{} queued messages, more than limits::MQUEUE_LEN_MAX + MQUEUE_OVERSHOOT_MAX",
                self.queue.len()
            ));
        }
        let mut qos2 = BTreeSet::new();
        for &id in &self.incoming_qos2 {
            if id == 0 || !qos2.insert(id) {
                return invalid(format!("inbound QoS 2 packet id {id} is 0 or repeated"));
            }
        }
        Ok(())
    }

    /// The bytes form (module doc).
    pub fn encode(&self) -> Result<Vec<u8>, SnapshotError> {
        let body = rkyv::to_bytes::<rkyv::rancor::Error>(self)
            .map_err(|e| SnapshotError::Malformed(e.to_string()))?;
        if body.len() > SESSION_SNAPSHOT_BYTES_MAX {
            return Err(SnapshotError::TooLarge {
                len: body.len(),
                max: SESSION_SNAPSHOT_BYTES_MAX,
            });
        }
        let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        // Fits: at most SESSION_SNAPSHOT_BYTES_MAX, asserted below u32::MAX.
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&checksum(SNAPSHOT_VERSION, &body).to_le_bytes());
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Reads the bytes form: header, length, checksum, archive validation,
    /// in that order; any failure is an `Err` naming it.
    pub fn decode(bytes: &[u8]) -> Result<SessionSnapshot, SnapshotError> {
        if bytes.len() < 4 || bytes[..4] != MAGIC {
            return Err(SnapshotError::NotASnapshot);
        }
        if bytes.len() < HEADER_BYTES {
            return Err(SnapshotError::Truncated {
                needed: HEADER_BYTES,
                got: bytes.len(),
            });
        }
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
        let version = u16_at(4);
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return Err(SnapshotError::UnknownVersion {
                found: version,
                supported: SNAPSHOT_VERSION,
            });
        }
        let flags = u16_at(6);
        if flags != 0 {
            return Err(SnapshotError::UnknownFlags(flags));
        }
        let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
        if len > SESSION_SNAPSHOT_BYTES_MAX {
            return Err(SnapshotError::TooLarge {
                len,
                max: SESSION_SNAPSHOT_BYTES_MAX,
            });
        }
        let body = &bytes[HEADER_BYTES..];
        if body.len() < len {
            return Err(SnapshotError::Truncated {
                needed: HEADER_BYTES + len,
                got: bytes.len(),
            });
        }
        if body.len() > len {
            return Err(SnapshotError::TrailingBytes(body.len() - len));
        }
        let stored = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
        if checksum(version, body) != stored {
            return Err(SnapshotError::Checksum);
        }
        let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(len);
        aligned.extend_from_slice(body);
        let malformed = |e: rkyv::rancor::Error| SnapshotError::Malformed(e.to_string());
        match version {
            1 => {
                return rkyv::from_bytes::<SessionSnapshotV1, rkyv::rancor::Error>(&aligned)
                    .map(|v1| v1.upgrade().upgrade())
                    .map_err(malformed)
            }
            2 => {
                return rkyv::from_bytes::<SessionSnapshotV2, rkyv::rancor::Error>(&aligned)
                    .map(SessionSnapshotV2::upgrade)
                    .map_err(malformed)
            }
            _ => {}
        }
        rkyv::from_bytes::<SessionSnapshot, rkyv::rancor::Error>(&aligned).map_err(malformed)
    }
}

#[path = "snapshot_compat.rs"]
mod compat;
pub use compat::{
    DeliverySnapshotV2, InflightSnapshotV2, QueuedSnapshotV2, SessionSnapshotV1, SessionSnapshotV2,
};

const _: () = assert!(SESSION_SNAPSHOT_BYTES_MAX <= u32::MAX as usize);

/// The session's subscriptions, by filter.
pub(crate) fn subscriptions_of(session: &Session) -> Vec<SubscriptionSnapshot> {
    session
        .subscriptions
        .iter()
        .map(|(filter, s)| SubscriptionSnapshot {
            filter: filter.as_str().to_owned(),
            qos: s.options.qos as u8,
            no_local: s.options.no_local,
            retain_as_published: s.options.retain_as_published,
            retain_handling: s.options.retain_handling,
            identifier: s.identifier,
        })
        .collect()
}

impl DeliverySnapshot {
    pub fn of(d: &Delivery, clock: &WallClock) -> DeliverySnapshot {
        DeliverySnapshot {
            message: MessageSnapshot::of(&d.message, clock),
            qos: d.qos as u8,
            retain: d.retain,
            subscription_ids: d.subscription_ids.to_vec(),
            id: d.message.id,
        }
    }

    pub fn into_delivery(self, clock: &WallClock) -> Result<Delivery, SnapshotError> {
        let mut message = self.message.into_message(clock)?;
        message.id = self.id;
        Ok(Delivery {
            qos: qos(self.qos)?,
            message: Arc::new(message),
            retain: self.retain,
            subscription_ids: self.subscription_ids.into_iter().collect(),
            // Not in the snapshot (docs/sessions.md): a moved session is
            // not ending, and its group is not known on another node.
            shared: None,
        })
    }
}

impl MessageSnapshot {
    pub fn of(m: &Message, clock: &WallClock) -> MessageSnapshot {
        let p = m.properties();
        let string = |s: &ByteStr| s.as_str().to_owned();
        MessageSnapshot {
            topic: string(&m.topic),
            payload: m.payload.clone(),
            qos: m.qos as u8,
            retain: m.retain,
            payload_format_indicator: p.payload_format_indicator,
            message_expiry_interval_s: p.message_expiry_interval_s,
            response_topic: p.response_topic.as_ref().map(string),
            correlation_data: p.correlation_data.clone(),
            user_properties: p
                .user_properties
                .iter()
                .map(|(k, v)| (string(k), string(v)))
                .collect(),
            content_type: p.content_type.as_ref().map(string),
            origin: m.origin.as_deref().map(str::to_owned),
            expires_at_unix_ms: m.expires_at.map(|t| clock.to_unix_ms(t)),
        }
    }

    pub fn into_message(self, clock: &WallClock) -> Result<Message, SnapshotError> {
        let opt = |s: Option<String>, what| s.map(|s| mqtt_str(s, what)).transpose();
        let mut user_properties = Vec::with_capacity(self.user_properties.len());
        for (k, v) in self.user_properties {
            user_properties.push((mqtt_str(k, "user property")?, mqtt_str(v, "user property")?));
        }
        Ok(Message {
            topic: mqtt_str(self.topic, "topic")?,
            payload: self.payload,
            qos: qos(self.qos)?,
            retain: self.retain,
            properties: PublishProperties {
                payload_format_indicator: self.payload_format_indicator,
                message_expiry_interval_s: self.message_expiry_interval_s,
                response_topic: opt(self.response_topic, "response topic")?,
                correlation_data: self.correlation_data,
                user_properties,
                content_type: opt(self.content_type, "content type")?,
                ..PublishProperties::default()
            }
            .boxed(),
            origin: opt(self.origin, "origin")?.map(|id| Origin::new(&id)),
            expires_at: self.expires_at_unix_ms.map(|ms| clock.to_instant(ms)),
            // Carried by `DeliverySnapshot` (its doc); a will or a
            // retained message gets one when it is routed.
            id: None,
        })
    }
}

fn qos(v: u8) -> Result<QoS, SnapshotError> {
    QoS::from_u8(v).ok_or_else(|| SnapshotError::Invalid(format!("QoS {v}")))
}

/// An MQTT UTF-8 string (no NUL, at most 65535 bytes) for `what`.
fn mqtt_str(s: String, what: &str) -> Result<ByteStr, SnapshotError> {
    ByteStr::try_from_bytes(Bytes::from(s.into_bytes()))
        .map_err(|e| SnapshotError::Invalid(format!("{what}: {e}")))
}

/// FNV-1a, 64 bits: a checksum against damage, not an adversary (the
/// archive's validation guards memory safety whatever the bytes).
fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_from(0xcbf2_9ce4_8422_2325, bytes)
}

fn fnv1a64_from(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The header's checksum. From version 3 it covers the version too: a
/// session without deliveries has the same archive in versions 1 to 3, so
/// a flipped bit turning 3 into 2 or 1 would otherwise read as another
/// (here harmless, in general unchecked) version.
fn checksum(version: u16, body: &[u8]) -> u64 {
    if version >= 3 {
        fnv1a64_from(fnv1a64(&version.to_le_bytes()), body)
    } else {
        fnv1a64(body)
    }
}
