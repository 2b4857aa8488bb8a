//! The bytes of a record in Redis: the rkyv archive of a [`SessionMeta`],
//! [`DeliveryRecord`] or [`MessageSnapshot`] inside a versioned header,
//! validated before use (ADR 0007, "What is written"). Private to the
//! Redis backend until it switches to the shared `durable::record` (the
//! same idea; the lead merges them).
//!
//! ```text
//! offset  size  field
//!      0     4  magic "RMQR"
//!      4     2  version, little endian (refused unless == RECORD_VERSION)
//!      6     1  kind: 1 meta, 2 delivery, 3 retained (refused if another)
//!      7     1  flags, 0
//!      8     4  body length, little endian
//!     12     8  FNV-1a 64 of the body, little endian
//!     20     -  body: the rkyv 0.8 archive
//! ```
//!
//! Also [`session_records`]: a `SessionSnapshot` as its meta record and
//! deliveries keyed by `seq` (`Op::PutSession`).

use crate::durable::{DeliveryRecord, DeliveryState, SessionMeta};
use crate::limits::SESSION_SNAPSHOT_BYTES_MAX;
use crate::session::snapshot::{MessageSnapshot, SessionSnapshot};

pub const RECORD_VERSION: u16 = 1;
const MAGIC: [u8; 4] = *b"RMQR";
const HEADER_BYTES: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Meta = 1,
    Delivery = 2,
    Retained = 3,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("not a ringmq Redis record (magic is not \"RMQR\")")]
    NotARecord,
    #[error("record version {0} is not supported (this ringmq reads {RECORD_VERSION})")]
    UnknownVersion(u16),
    #[error("record kind {found} where {expected:?} was expected")]
    WrongKind { found: u8, expected: Kind },
    #[error("record flags {0:#04x} are unknown")]
    UnknownFlags(u8),
    #[error("record length does not match: header says {header}, {present} present")]
    Length { header: usize, present: usize },
    #[error("record of {0} bytes is over limits::SESSION_SNAPSHOT_BYTES_MAX")]
    TooLarge(usize),
    #[error("record checksum mismatch: the body was changed or damaged")]
    Checksum,
    #[error("record body is not a valid archive: {0}")]
    Malformed(String),
}

fn frame(kind: Kind, body: &[u8]) -> Result<Vec<u8>, RecordError> {
    if body.len() > SESSION_SNAPSHOT_BYTES_MAX {
        return Err(RecordError::TooLarge(body.len()));
    }
    let mut out = Vec::with_capacity(HEADER_BYTES + body.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&RECORD_VERSION.to_le_bytes());
    out.push(kind as u8);
    out.push(0);
    // Fits: at most SESSION_SNAPSHOT_BYTES_MAX (< u32::MAX).
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&fnv1a64(body).to_le_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// The checked body, copied into an aligned buffer for rkyv.
fn unframe(kind: Kind, bytes: &[u8]) -> Result<rkyv::util::AlignedVec<16>, RecordError> {
    if bytes.len() < HEADER_BYTES || bytes[..4] != MAGIC {
        return Err(RecordError::NotARecord);
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != RECORD_VERSION {
        return Err(RecordError::UnknownVersion(version));
    }
    if bytes[6] != kind as u8 {
        return Err(RecordError::WrongKind {
            found: bytes[6],
            expected: kind,
        });
    }
    if bytes[7] != 0 {
        return Err(RecordError::UnknownFlags(bytes[7]));
    }
    let len = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes")) as usize;
    let body = &bytes[HEADER_BYTES..];
    if len > SESSION_SNAPSHOT_BYTES_MAX {
        return Err(RecordError::TooLarge(len));
    }
    if body.len() != len {
        return Err(RecordError::Length {
            header: len,
            present: body.len(),
        });
    }
    if fnv1a64(body) != u64::from_le_bytes(bytes[12..20].try_into().expect("8 bytes")) {
        return Err(RecordError::Checksum);
    }
    let mut aligned = rkyv::util::AlignedVec::<16>::with_capacity(len);
    aligned.extend_from_slice(body);
    Ok(aligned)
}

macro_rules! codec {
    ($encode:ident, $decode:ident, $ty:ty, $kind:expr) => {
        pub fn $encode(value: &$ty) -> Result<Vec<u8>, RecordError> {
            let body = rkyv::to_bytes::<rkyv::rancor::Error>(value)
                .map_err(|e| RecordError::Malformed(e.to_string()))?;
            frame($kind, &body)
        }

        pub fn $decode(bytes: &[u8]) -> Result<$ty, RecordError> {
            let aligned = unframe($kind, bytes)?;
            rkyv::from_bytes::<$ty, rkyv::rancor::Error>(&aligned)
                .map_err(|e| RecordError::Malformed(e.to_string()))
        }
    };
}

codec!(encode_meta, decode_meta, SessionMeta, Kind::Meta);
codec!(
    encode_delivery,
    decode_delivery,
    DeliveryRecord,
    Kind::Delivery
);
codec!(
    encode_retained,
    decode_retained,
    MessageSnapshot,
    Kind::Retained
);

/// A whole session as records (`Op::PutSession`): its meta at `epoch` and
/// its QoS 1/2 deliveries by `seq`, ascending. Inflight deliveries keep
/// their `seq`; queued ones carry none in a snapshot, and each entered
/// after every inflight one and before `next_seq`, so the `i`th of `n`
/// queued gets `next_seq - n + i` (the rule of the builtin store too).
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
        let state = DeliveryState::Inflight {
            packet_id: o.packet_id,
            awaiting: o.awaiting,
            transmitted: o.transmitted,
        };
        deliveries.push((
            o.seq,
            DeliveryRecord {
                delivery: o.delivery.clone(),
                state,
            },
        ));
    }
    let first = snapshot
        .next_seq
        .saturating_sub(snapshot.queue.len() as u64);
    for (i, d) in snapshot.queue.iter().enumerate() {
        if d.qos == 0 {
            continue;
        }
        let record = DeliveryRecord {
            delivery: d.clone(),
            state: DeliveryState::Queued,
        };
        deliveries.push((first + i as u64, record));
    }
    deliveries.sort_unstable_by_key(|(seq, _)| *seq);
    (meta, deliveries)
}

/// FNV-1a, 64 bits: against damage, not an adversary (rkyv's validation
/// guards memory safety whatever the bytes). Also picks retained buckets.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::snapshot::DeliverySnapshot;

    fn record() -> DeliveryRecord {
        DeliveryRecord {
            delivery: DeliverySnapshot {
                message: MessageSnapshot {
                    topic: "a/b".into(),
                    payload: bytes::Bytes::from_static(b"hello"),
                    qos: 2,
                    retain: false,
                    payload_format_indicator: Some(1),
                    message_expiry_interval_s: Some(60),
                    response_topic: None,
                    correlation_data: None,
                    user_properties: vec![("k".into(), "v".into())],
                    content_type: None,
                    origin: None,
                    expires_at_unix_ms: Some(1_765_000_000_000),
                },
                qos: 2,
                retain: false,
                subscription_ids: vec![1, 2],
            },
            state: DeliveryState::Queued,
        }
    }

    #[test]
    fn a_record_reads_back_and_damage_is_refused() {
        let bytes = encode_delivery(&record()).unwrap();
        assert_eq!(decode_delivery(&bytes).unwrap(), record());
        let mut flipped = bytes.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert_eq!(decode_delivery(&flipped), Err(RecordError::Checksum));
        assert!(matches!(
            decode_meta(&bytes),
            Err(RecordError::WrongKind { found: 2, .. })
        ));
        let mut version = bytes.clone();
        version[4] = 9;
        assert_eq!(
            decode_delivery(&version),
            Err(RecordError::UnknownVersion(9))
        );
        assert_eq!(
            decode_delivery(&bytes[..bytes.len() - 1]),
            Err(RecordError::Length {
                header: bytes.len() - HEADER_BYTES,
                present: bytes.len() - HEADER_BYTES - 1
            })
        );
        assert_eq!(decode_delivery(b"RMQ"), Err(RecordError::NotARecord));
    }
}
