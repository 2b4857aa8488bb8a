//! The bytes of a stored record and the keys they are stored under, shared
//! by every backend (the builtin fjall store, Redis).
//!
//! # Record form (version [`RECORD_VERSION`])
//!
//! ```text
//! offset  size  field
//!      0     4  magic, one per kind: "RMQM" meta, "RMQD" delivery, "RMQR" retained
//!      4     2  version, little endian (1 or RECORD_VERSION = 2; refused otherwise)
//!      6     2  flags, 0 (refused otherwise: a later version may use them)
//!      8     4  body length in bytes, little endian (<= DURABLE_RECORD_BYTES_MAX)
//!     12     8  FNV-1a 64 of the body, little endian
//!     20     -  body: the rkyv 0.8 archive of SessionMeta / DeliveryRecord /
//!               MessageSnapshot
//! ```
//!
//! The same layout as the session snapshot (`session::snapshot`), for the
//! same reasons: the checksum catches a flipped bit inside a payload (still
//! a valid archive), `bytecheck` validates every offset, length and enum
//! tag of the archive before a field is read (after a copy into an aligned
//! buffer: a value read from disk has no alignment), and then the record's
//! own rules are checked. A magic per kind means a record written in the
//! wrong place is an error, not a misread. A reader never guesses at a
//! version it does not know.
//!
//! Version 2 gave a delivery record its message's cluster-wide id
//! (`DeliverySnapshot::id`); a version 1 delivery reads with no id
//! ([`DeliveryRecordV1`]). Meta and retained records have the same body in
//! both versions.
//!
//! # Keys
//!
//! * a session's meta record: its client id;
//! * a delivery: client id, `0x00`, `seq` as 8 bytes big endian. Client ids
//!   are MQTT strings, which never hold U+0000, so `client id + 0x00` is a
//!   prefix that holds exactly that client's deliveries, and big-endian
//!   `seq` makes a prefix scan return them in `seq` order;
//! * a retained message: its topic.
//!
//! A client id or topic longer than `limits::DURABLE_KEY_NAME_BYTES_MAX`
//! is keyed by `0xFF` and its SHA-256 instead (fjall keys are at most
//! 65,535 bytes; `0xFF` never starts a UTF-8 string, so the two forms never
//! meet). The records themselves always carry the full name.

use std::collections::HashSet;

use crate::limits::{DURABLE_KEY_NAME_BYTES_MAX, DURABLE_RECORD_BYTES_MAX};
use crate::session::snapshot::{
    AwaitingSnapshot, DeliverySnapshotV2, MessageSnapshot, SessionSnapshot,
};

use super::{DeliveryRecord, DeliveryState, SessionMeta};

/// The version this build writes; it also reads version 1 (module doc).
pub const RECORD_VERSION: u16 = 2;

const HEADER_BYTES: usize = 20;

/// What a record holds; each kind has its magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    Meta,
    Delivery,
    Retained,
}

impl RecordKind {
    fn magic(self) -> [u8; 4] {
        match self {
            RecordKind::Meta => *b"RMQM",
            RecordKind::Delivery => *b"RMQD",
            RecordKind::Retained => *b"RMQR",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Meta => "session meta",
            RecordKind::Delivery => "delivery",
            RecordKind::Retained => "retained message",
        }
    }
}

/// Why stored bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a ringmq {} record (its magic bytes are not {:?})", .0.as_str(), String::from_utf8_lossy(&.0.magic()))]
    NotARecord(RecordKind),
    #[error(
        "record version {found} is not supported: this ringmq reads versions 1 to {supported} \
         (written by another ringmq version?)"
    )]
    UnknownVersion { found: u16, supported: u16 },
    #[error("record flags {0:#06x} are unknown to this version")]
    UnknownFlags(u16),
    #[error("record truncated: {needed} bytes needed, {got} present")]
    Truncated { needed: usize, got: usize },
    #[error("record has {0} bytes after its body")]
    TrailingBytes(usize),
    #[error(
        "record of {len} bytes is over the limit of {max} bytes (limits::DURABLE_RECORD_BYTES_MAX)"
    )]
    TooLarge { len: usize, max: usize },
    #[error("record checksum mismatch: the body was changed or damaged")]
    Checksum,
    #[error("record body is not a valid archive: {0}")]
    Malformed(String),
    #[error("record is inconsistent: {0}")]
    Invalid(String),
}

// ---------------------------------------------------------------- records

pub fn encode_meta(meta: &SessionMeta) -> Result<Vec<u8>, RecordError> {
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(meta)
        .map_err(|e| RecordError::Malformed(e.to_string()))?;
    frame(RecordKind::Meta, &body)
}

pub fn decode_meta(bytes: &[u8]) -> Result<SessionMeta, RecordError> {
    decode_meta_as(bytes, Sum::Own)
}

/// A meta record as the log engine stores it ([`Sum::Group`]).
pub fn decode_meta_in_group(bytes: &[u8]) -> Result<SessionMeta, RecordError> {
    decode_meta_as(bytes, Sum::Group)
}

fn decode_meta_as(bytes: &[u8], sum: Sum) -> Result<SessionMeta, RecordError> {
    let (_, body) = unframe(RecordKind::Meta, bytes, sum)?;
    let meta = rkyv::from_bytes::<SessionMeta, rkyv::rancor::Error>(&body)
        .map_err(|e| RecordError::Malformed(e.to_string()))?;
    check_meta(&meta)?;
    Ok(meta)
}

pub fn encode_delivery(record: &DeliveryRecord) -> Result<Vec<u8>, RecordError> {
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(record)
        .map_err(|e| RecordError::Malformed(e.to_string()))?;
    frame(RecordKind::Delivery, &body)
}

pub fn decode_delivery(bytes: &[u8]) -> Result<DeliveryRecord, RecordError> {
    decode_delivery_as(bytes, Sum::Own)
}

/// A delivery record as the log engine stores it ([`Sum::Group`]).
pub fn decode_delivery_in_group(bytes: &[u8]) -> Result<DeliveryRecord, RecordError> {
    decode_delivery_as(bytes, Sum::Group)
}

fn decode_delivery_as(bytes: &[u8], sum: Sum) -> Result<DeliveryRecord, RecordError> {
    let (version, body) = unframe(RecordKind::Delivery, bytes, sum)?;
    let malformed = |e: rkyv::rancor::Error| RecordError::Malformed(e.to_string());
    let record = if version == 1 {
        rkyv::from_bytes::<DeliveryRecordV1, rkyv::rancor::Error>(&body)
            .map(DeliveryRecordV1::upgrade)
            .map_err(malformed)?
    } else {
        rkyv::from_bytes::<DeliveryRecord, rkyv::rancor::Error>(&body).map_err(malformed)?
    };
    check_delivery(&record)?;
    Ok(record)
}

pub fn encode_retained(message: &MessageSnapshot) -> Result<Vec<u8>, RecordError> {
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(message)
        .map_err(|e| RecordError::Malformed(e.to_string()))?;
    frame(RecordKind::Retained, &body)
}

pub fn decode_retained(bytes: &[u8]) -> Result<MessageSnapshot, RecordError> {
    decode_retained_as(bytes, Sum::Own)
}

/// A retained record as the log engine stores it ([`Sum::Group`]).
pub fn decode_retained_in_group(bytes: &[u8]) -> Result<MessageSnapshot, RecordError> {
    decode_retained_as(bytes, Sum::Group)
}

fn decode_retained_as(bytes: &[u8], sum: Sum) -> Result<MessageSnapshot, RecordError> {
    let (_, body) = unframe(RecordKind::Retained, bytes, sum)?;
    let message = rkyv::from_bytes::<MessageSnapshot, rkyv::rancor::Error>(&body)
        .map_err(|e| RecordError::Malformed(e.to_string()))?;
    if message.qos > 2 {
        return Err(RecordError::Invalid(format!("QoS {}", message.qos)));
    }
    Ok(message)
}

fn frame(kind: RecordKind, body: &[u8]) -> Result<Vec<u8>, RecordError> {
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    frame_into(kind, body, Sum::Own, &mut out)?;
    Ok(out)
}

/// Who checks a record's bytes against damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sum {
    /// The record's own FNV-1a checksum (fjall stores, Redis).
    Own,
    /// The checksum of the log group that holds it (`durable::log`): the
    /// record carries flag [`FLAG_GROUP_SUM`] and no checksum of its own.
    Group,
}

/// Record flag: checksummed by its log group, not by itself.
const FLAG_GROUP_SUM: u16 = 1;

fn frame_into(
    kind: RecordKind,
    body: &[u8],
    sum: Sum,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    if body.len() > DURABLE_RECORD_BYTES_MAX {
        return Err(RecordError::TooLarge {
            len: body.len(),
            max: DURABLE_RECORD_BYTES_MAX,
        });
    }
    let (flags, checksum) = match sum {
        Sum::Own => (0u16, fnv1a64(body)),
        Sum::Group => (FLAG_GROUP_SUM, 0),
    };
    out.extend_from_slice(&kind.magic());
    out.extend_from_slice(&RECORD_VERSION.to_le_bytes());
    out.extend_from_slice(&flags.to_le_bytes());
    // Fits: at most DURABLE_RECORD_BYTES_MAX, asserted below u32::MAX.
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum.to_le_bytes());
    out.extend_from_slice(body);
    Ok(())
}

fn archive<T>(value: &T) -> Result<rkyv::util::AlignedVec, RecordError>
where
    T: for<'a> rkyv::Serialize<
        rkyv::api::high::HighSerializer<
            rkyv::util::AlignedVec,
            rkyv::ser::allocator::ArenaHandle<'a>,
            rkyv::rancor::Error,
        >,
    >,
{
    rkyv::to_bytes::<rkyv::rancor::Error>(value).map_err(|e| RecordError::Malformed(e.to_string()))
}

/// Appends `meta` as the log engine stores it (no checksum of its own).
pub fn append_meta_for_group(meta: &SessionMeta, out: &mut Vec<u8>) -> Result<(), RecordError> {
    frame_into(RecordKind::Meta, &archive(meta)?, Sum::Group, out)
}

/// Appends `record` as the log engine stores it.
pub fn append_delivery_for_group(
    record: &DeliveryRecord,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    frame_into(RecordKind::Delivery, &archive(record)?, Sum::Group, out)
}

/// Appends `message` as the log engine stores it.
pub fn append_retained_for_group(
    message: &MessageSnapshot,
    out: &mut Vec<u8>,
) -> Result<(), RecordError> {
    frame_into(RecordKind::Retained, &archive(message)?, Sum::Group, out)
}

const _: () = assert!(DURABLE_RECORD_BYTES_MAX <= u32::MAX as usize);

/// A delivery record of version 1: its delivery has no message id.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DeliveryRecordV1 {
    pub delivery: DeliverySnapshotV2,
    pub state: DeliveryState,
}

impl DeliveryRecordV1 {
    pub fn upgrade(self) -> DeliveryRecord {
        DeliveryRecord {
            delivery: self.delivery.upgrade(),
            state: self.state,
        }
    }
}

/// Header, length, checksum, in that order; the version and the body come
/// back, the body in a 16-byte aligned buffer, ready for the archive's
/// validation.
fn unframe(
    kind: RecordKind,
    bytes: &[u8],
    sum: Sum,
) -> Result<(u16, rkyv::util::AlignedVec<16>), RecordError> {
    if bytes.len() < 4 || bytes[..4] != kind.magic() {
        return Err(RecordError::NotARecord(kind));
    }
    if bytes.len() < HEADER_BYTES {
        return Err(RecordError::Truncated {
            needed: HEADER_BYTES,
            got: bytes.len(),
        });
    }
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let version = u16_at(4);
    if !(1..=RECORD_VERSION).contains(&version) {
        return Err(RecordError::UnknownVersion {
            found: version,
            supported: RECORD_VERSION,
        });
    }
    let flags = u16_at(6);
    let expected = match sum {
        Sum::Own => 0,
        Sum::Group => FLAG_GROUP_SUM,
    };
    if flags != expected {
        return Err(RecordError::UnknownFlags(flags));
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    if len > DURABLE_RECORD_BYTES_MAX {
        return Err(RecordError::TooLarge {
            len,
            max: DURABLE_RECORD_BYTES_MAX,
        });
    }
    let body = &bytes[HEADER_BYTES..];
    if body.len() < len {
        return Err(RecordError::Truncated {
            needed: HEADER_BYTES + len,
            got: bytes.len(),
        });
    }
    if body.len() > len {
        return Err(RecordError::TrailingBytes(body.len() - len));
    }
    let checksum = u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes"));
    if sum == Sum::Own && fnv1a64(body) != checksum {
        return Err(RecordError::Checksum);
    }
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(len);
    aligned.extend_from_slice(body);
    Ok((version, aligned))
}

/// The rules of a meta record the archive's types cannot express (the
/// session's own rules are checked again when it is rebuilt, by
/// `SessionSnapshot::into_session`).
fn check_meta(meta: &SessionMeta) -> Result<(), RecordError> {
    if meta.client_id.contains('\0') {
        return Err(RecordError::Invalid("client id holds U+0000".into()));
    }
    let mut ids = HashSet::with_capacity(meta.incoming_qos2.len());
    for &id in &meta.incoming_qos2 {
        if id == 0 || !ids.insert(id) {
            return Err(RecordError::Invalid(format!(
                "inbound QoS 2 packet id {id} is 0 or repeated"
            )));
        }
    }
    Ok(())
}

/// What a stored delivery must be: QoS 1 or 2, and an inflight state
/// that fits its QoS (also checked by the log engine once a state record
/// is applied).
pub(crate) fn check_delivery(record: &DeliveryRecord) -> Result<(), RecordError> {
    let qos = record.delivery.qos;
    if !(1..=2).contains(&qos) {
        return Err(RecordError::Invalid(format!(
            "a stored delivery has QoS {qos} (only QoS 1 and 2 are stored)"
        )));
    }
    if let DeliveryState::Inflight {
        packet_id,
        awaiting,
        ..
    } = record.state
    {
        let expected = match awaiting {
            AwaitingSnapshot::PubAck => 1,
            AwaitingSnapshot::PubRec | AwaitingSnapshot::PubComp => 2,
        };
        if packet_id == 0 || qos != expected {
            return Err(RecordError::Invalid(format!(
                "packet id {packet_id} awaits {awaiting:?} with QoS {qos}"
            )));
        }
    }
    Ok(())
}

/// FNV-1a, 64 bits: a checksum against damage, not an adversary (the
/// archive's validation guards memory safety whatever the bytes). The same
/// function as the session snapshot's.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

// ---------------------------------------------------------------- keys

/// Marks a name keyed by its hash (module doc, "Keys").
const HASHED_NAME: u8 = 0xFF;
const SEQ_BYTES: usize = 8;

/// The key form of a client id or topic.
pub fn name_key(name: &str) -> Vec<u8> {
    if name.len() <= DURABLE_KEY_NAME_BYTES_MAX {
        return name.as_bytes().to_vec();
    }
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let mut key = Vec::with_capacity(1 + digest.as_ref().len());
    key.push(HASHED_NAME);
    key.extend_from_slice(digest.as_ref());
    key
}

/// The key of a session's meta record.
pub fn session_key(client_id: &str) -> Vec<u8> {
    name_key(client_id)
}

/// The key of a retained message.
pub fn retained_key(topic: &str) -> Vec<u8> {
    name_key(topic)
}

/// The prefix of every delivery key of `client_id`.
pub fn delivery_prefix(client_id: &str) -> Vec<u8> {
    let mut key = name_key(client_id);
    key.push(0);
    key
}

/// The key of delivery `seq` of `client_id`.
pub fn delivery_key(client_id: &str, seq: u64) -> Vec<u8> {
    let mut key = delivery_prefix(client_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

/// Splits a delivery key into its client's key form (as [`session_key`]
/// gives it) and its `seq`; `None` if it is not a delivery key.
pub fn split_delivery_key(key: &[u8]) -> Option<(&[u8], u64)> {
    let split = key.len().checked_sub(SEQ_BYTES + 1)?;
    if key[split] != 0 {
        return None;
    }
    let seq = u64::from_be_bytes(key[split + 1..].try_into().ok()?);
    Some((&key[..split], seq))
}

// ---------------------------------------------------------------- sessions

/// A whole session as records (`Op::PutSession`): its meta record at
/// `epoch` and its QoS 1/2 deliveries by `seq`, ascending. QoS 0 messages
/// are not stored (ADR 0007).
///
/// Inflight deliveries keep their `seq`. Queued ones carry none in a
/// `SessionSnapshot`; every one of them entered after every inflight one
/// and before `next_seq`, so the `i`th of `n` queued is given
/// `next_seq - n + i`: unique, above every inflight `seq`, in queue order.
pub fn session_records(
    snapshot: &SessionSnapshot,
    epoch: u64,
) -> (SessionMeta, Vec<(u64, DeliveryRecord)>) {
    let meta = SessionMeta {
        client_id: snapshot.client_id.clone(),
        epoch,
        expiry_interval_s: snapshot.expiry_interval_s,
        expires_at_unix_ms: snapshot.expires_at_unix_ms,
        subscriptions: snapshot.subscriptions.clone(),
        next_packet_id: snapshot.next_packet_id,
        next_seq: snapshot.next_seq,
        queue_len_max: snapshot.queue_len_max,
        incoming_qos2: snapshot.incoming_qos2.clone(),
        drops: snapshot.drops,
        will: snapshot.will.clone(),
    };
    let mut deliveries = Vec::with_capacity(snapshot.inflight.len() + snapshot.queue.len());
    for o in &snapshot.inflight {
        let record = DeliveryRecord {
            delivery: o.delivery.clone(),
            state: DeliveryState::Inflight {
                packet_id: o.packet_id,
                awaiting: o.awaiting,
                transmitted: o.transmitted,
            },
        };
        deliveries.push((o.seq, record));
    }
    // Each queued delivery keeps the `seq` it got when it entered the
    // session (QoS 0 ones are not stored).
    for q in &snapshot.queue {
        if q.delivery.qos == 0 {
            continue;
        }
        let record = DeliveryRecord {
            delivery: q.delivery.clone(),
            state: DeliveryState::Queued,
        };
        deliveries.push((q.seq, record));
    }
    deliveries.sort_unstable_by_key(|(seq, _)| *seq);
    (meta, deliveries)
}

/// The inverse of [`session_records`]: a `SessionSnapshot` to rebuild the
/// session from (checked by `SessionSnapshot::into_session`). Inflight
/// deliveries by `seq`; queued ones in `seq` order.
pub fn session_snapshot(
    meta: SessionMeta,
    deliveries: Vec<(u64, DeliveryRecord)>,
) -> SessionSnapshot {
    let mut inflight = Vec::new();
    let mut queue = Vec::new();
    // Above every stored `seq` even if the meta was written before the
    // last deliveries entered.
    let mut next_seq = meta.next_seq;
    for (seq, record) in deliveries {
        next_seq = next_seq.max(seq + 1);
        match record.state {
            DeliveryState::Queued => queue.push(crate::session::snapshot::QueuedSnapshot {
                seq,
                delivery: record.delivery,
            }),
            DeliveryState::Inflight {
                packet_id,
                awaiting,
                transmitted,
            } => inflight.push(crate::session::snapshot::InflightSnapshot {
                packet_id,
                seq,
                awaiting,
                transmitted,
                delivery: record.delivery,
            }),
        }
    }
    SessionSnapshot {
        client_id: meta.client_id,
        expiry_interval_s: meta.expiry_interval_s,
        expires_at_unix_ms: meta.expires_at_unix_ms,
        subscriptions: meta.subscriptions,
        inflight,
        next_packet_id: meta.next_packet_id,
        next_seq,
        queue,
        queue_len_max: meta.queue_len_max,
        incoming_qos2: meta.incoming_qos2,
        drops: meta.drops,
        will: meta.will,
    }
}

#[cfg(test)]
#[path = "record_tests.rs"]
pub(crate) mod tests;
