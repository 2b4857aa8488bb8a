//! Record bytes and keys: round trips, and every kind of damage refused.

use super::*;
use crate::session::snapshot::{
    DeliverySnapshot, DropsSnapshot, InflightSnapshot, SubscriptionSnapshot, WillSnapshot,
};
use bytes::Bytes;

pub(crate) fn message(topic: &str, payload: &[u8], qos: u8) -> MessageSnapshot {
    MessageSnapshot {
        topic: topic.into(),
        payload: Bytes::copy_from_slice(payload),
        qos,
        retain: false,
        payload_format_indicator: Some(1),
        message_expiry_interval_s: Some(60),
        response_topic: Some("reply".into()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        user_properties: vec![("k".into(), "v".into())],
        content_type: Some("text/plain".into()),
        origin: Some("pub-1".into()),
        expires_at_unix_ms: Some(1_700_000_060_000),
    }
}

pub(crate) fn delivery(seq: u64, qos: u8, state: DeliveryState) -> DeliveryRecord {
    DeliveryRecord {
        delivery: DeliverySnapshot {
            message: message("a/b", format!("payload {seq}").as_bytes(), qos),
            qos,
            retain: false,
            subscription_ids: vec![7],
            id: Some(crate::session::MessageId {
                node: 0xA1B2_C3D4,
                shard: 3,
                seq: 1_000_000 + seq,
            }),
        },
        state,
    }
}

pub(crate) fn meta(client: &str, epoch: u64) -> SessionMeta {
    SessionMeta {
        client_id: client.into(),
        epoch,
        expiry_interval_s: 3600,
        expires_at_unix_ms: Some(1_700_000_000_000),
        subscriptions: vec![SubscriptionSnapshot {
            filter: "a/+".into(),
            qos: 1,
            no_local: false,
            retain_as_published: true,
            retain_handling: 0,
            identifier: Some(7),
        }],
        next_packet_id: 5,
        next_seq: 100,
        queue_len_max: 1000,
        incoming_qos2: vec![3, 9],
        drops: DropsSnapshot {
            queue_full: 1,
            ..DropsSnapshot::default()
        },
        will: Some(WillSnapshot {
            message: message("will/t", b"gone", 1),
            due_unix_ms: 1_700_000_005_000,
        }),
    }
}

#[test]
fn records_round_trip() {
    let m = meta("client-1", 4);
    assert_eq!(decode_meta(&encode_meta(&m).unwrap()).unwrap(), m);
    let inflight = DeliveryState::Inflight {
        packet_id: 12,
        awaiting: AwaitingSnapshot::PubRec,
        transmitted: true,
    };
    for d in [
        delivery(1, 1, DeliveryState::Queued),
        delivery(2, 2, inflight),
    ] {
        assert_eq!(decode_delivery(&encode_delivery(&d).unwrap()).unwrap(), d);
    }
    let r = message("r/t", b"retained", 1);
    assert_eq!(decode_retained(&encode_retained(&r).unwrap()).unwrap(), r);
}

#[test]
fn a_record_of_another_kind_is_refused() {
    let bytes = encode_meta(&meta("c", 1)).unwrap();
    assert_eq!(
        decode_delivery(&bytes),
        Err(RecordError::NotARecord(RecordKind::Delivery))
    );
    assert_eq!(
        decode_retained(&bytes),
        Err(RecordError::NotARecord(RecordKind::Retained))
    );
}

#[test]
fn truncated_records_are_refused_at_every_length() {
    let bytes = encode_delivery(&delivery(1, 1, DeliveryState::Queued)).unwrap();
    for len in 0..bytes.len() {
        let e = decode_delivery(&bytes[..len]).unwrap_err();
        assert!(
            matches!(
                e,
                RecordError::Truncated { .. } | RecordError::NotARecord(_)
            ),
            "{len}: {e}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(decode_delivery(&longer), Err(RecordError::TrailingBytes(1)));
}

#[test]
fn every_flipped_bit_of_the_body_fails_the_checksum() {
    let bytes = encode_meta(&meta("client-1", 1)).unwrap();
    for i in HEADER_BYTES..bytes.len() {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << bit;
            assert_eq!(
                decode_meta(&bad),
                Err(RecordError::Checksum),
                "byte {i} bit {bit}"
            );
        }
    }
}

#[test]
fn an_unknown_version_or_flag_is_refused_and_named() {
    let mut bytes = encode_retained(&message("t", b"x", 0)).unwrap();
    bytes[4] = 3;
    let e = decode_retained(&bytes).unwrap_err();
    assert_eq!(
        e,
        RecordError::UnknownVersion {
            found: 3,
            supported: 2
        }
    );
    assert!(e.to_string().contains("version 3 is not supported"), "{e}");
    bytes[4] = 0;
    assert!(matches!(
        decode_retained(&bytes),
        Err(RecordError::UnknownVersion { found: 0, .. })
    ));
    bytes[4] = 2;
    bytes[6] = 1;
    assert_eq!(decode_retained(&bytes), Err(RecordError::UnknownFlags(1)));
}

/// A record body framed as version `version` (what an older build wrote).
fn framed_as(version: u16, kind: RecordKind, body: &[u8]) -> Vec<u8> {
    let mut out = frame(kind, body).unwrap();
    out[4..6].copy_from_slice(&version.to_le_bytes());
    out
}

/// Version 2 delivery records carry the message id; a version 1 delivery
/// record (its `DeliverySnapshot` had no id, `DeliveryRecordV1`) still
/// reads, with no id; meta and retained records of version 1 read as they
/// are (their bodies did not change).
#[test]
fn version_1_records_still_read_and_deliveries_have_no_id() {
    let current = delivery(5, 1, DeliveryState::Queued);
    assert!(current.delivery.id.is_some());
    let back = decode_delivery(&encode_delivery(&current).unwrap()).unwrap();
    assert_eq!(back.delivery.id, current.delivery.id, "the id round-trips");

    let old = DeliveryRecordV1 {
        delivery: crate::session::snapshot::DeliverySnapshotV2 {
            message: current.delivery.message.clone(),
            qos: 1,
            retain: false,
            subscription_ids: vec![7],
        },
        state: DeliveryState::Queued,
    };
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(&old).unwrap();
    let read = decode_delivery(&framed_as(1, RecordKind::Delivery, &body)).unwrap();
    let mut expected = current.clone();
    expected.delivery.id = None;
    assert_eq!(read, expected);
    // The same body as version 2 is not a valid current archive: the
    // version decides the layout, nothing is guessed.
    assert!(decode_delivery(&framed_as(2, RecordKind::Delivery, &body)).is_err());

    let m = meta("client-1", 4);
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(&m).unwrap();
    assert_eq!(
        decode_meta(&framed_as(1, RecordKind::Meta, &body)).unwrap(),
        m
    );
    let r = message("r/t", b"retained", 1);
    let body = rkyv::to_bytes::<rkyv::rancor::Error>(&r).unwrap();
    assert_eq!(
        decode_retained(&framed_as(1, RecordKind::Retained, &body)).unwrap(),
        r
    );
}

#[test]
fn an_oversized_length_is_refused_before_reading() {
    let mut bytes = encode_meta(&meta("c", 1)).unwrap();
    bytes[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        decode_meta(&bytes),
        Err(RecordError::TooLarge { len, max: DURABLE_RECORD_BYTES_MAX }) if len == u32::MAX as usize
    ));
}

#[test]
fn a_valid_checksum_over_a_bad_archive_is_malformed_not_a_panic() {
    // A body that is not an archive, with a correct checksum.
    let framed = frame(RecordKind::Delivery, &[0xAB; 64]).unwrap();
    assert!(matches!(
        decode_delivery(&framed),
        Err(RecordError::Malformed(_))
    ));
}

#[test]
fn records_that_break_the_rules_are_invalid() {
    let qos0 = delivery(1, 0, DeliveryState::Queued);
    let bytes = encode_delivery(&qos0).unwrap();
    assert!(matches!(
        decode_delivery(&bytes),
        Err(RecordError::Invalid(_))
    ));
    let wrong = delivery(
        1,
        1,
        DeliveryState::Inflight {
            packet_id: 1,
            awaiting: AwaitingSnapshot::PubComp,
            transmitted: true,
        },
    );
    let bytes = encode_delivery(&wrong).unwrap();
    assert!(matches!(
        decode_delivery(&bytes),
        Err(RecordError::Invalid(_))
    ));
    let mut m = meta("c", 1);
    m.incoming_qos2 = vec![4, 4];
    assert!(matches!(
        decode_meta(&encode_meta(&m).unwrap()),
        Err(RecordError::Invalid(_))
    ));
}

#[test]
fn delivery_keys_sort_by_client_then_seq_and_split_back() {
    let mut keys = vec![
        delivery_key("a", 256),
        delivery_key("ab", 0),
        delivery_key("a", 1),
        delivery_key("a", u64::MAX),
    ];
    keys.sort();
    assert_eq!(
        keys,
        vec![
            delivery_key("a", 1),
            delivery_key("a", 256),
            delivery_key("a", u64::MAX),
            delivery_key("ab", 0),
        ]
    );
    // The prefix of "a" holds none of "ab"'s deliveries.
    assert!(!delivery_key("ab", 0).starts_with(&delivery_prefix("a")));
    assert_eq!(
        split_delivery_key(&delivery_key("a", 256)),
        Some((&b"a"[..], 256))
    );
    assert_eq!(split_delivery_key(b"short"), None);
}

#[test]
fn long_names_are_keyed_by_their_hash() {
    let long = "x".repeat(DURABLE_KEY_NAME_BYTES_MAX + 1);
    let key = session_key(&long);
    assert_eq!(key.len(), 33);
    assert_eq!(key[0], HASHED_NAME);
    assert_ne!(
        session_key(&"y".repeat(DURABLE_KEY_NAME_BYTES_MAX + 1)),
        key
    );
    let edge = "x".repeat(DURABLE_KEY_NAME_BYTES_MAX);
    assert_eq!(session_key(&edge), edge.as_bytes());
    let (client, seq) = split_delivery_key(&delivery_key(&long, 9))
        .map(|(c, s)| (c.to_vec(), s))
        .unwrap();
    assert_eq!((client, seq), (key, 9));
}

#[test]
fn a_session_becomes_records_and_back() {
    let inflight = InflightSnapshot {
        packet_id: 3,
        seq: 40,
        awaiting: AwaitingSnapshot::PubAck,
        transmitted: true,
        delivery: delivery(40, 1, DeliveryState::Queued).delivery,
    };
    let queued = |seq, qos| crate::session::snapshot::QueuedSnapshot {
        seq,
        delivery: delivery(0, qos, DeliveryState::Queued).delivery,
    };
    let m = meta("c", 1);
    let snapshot = SessionSnapshot {
        client_id: "c".into(),
        expiry_interval_s: m.expiry_interval_s,
        expires_at_unix_ms: m.expires_at_unix_ms,
        subscriptions: m.subscriptions.clone(),
        inflight: vec![inflight],
        next_packet_id: m.next_packet_id,
        next_seq: 50,
        queue: vec![queued(44, 1), queued(48, 2)],
        queue_len_max: m.queue_len_max,
        incoming_qos2: m.incoming_qos2.clone(),
        drops: m.drops,
        will: m.will.clone(),
    };
    let (meta, deliveries) = session_records(&snapshot, 7);
    assert_eq!(meta.epoch, 7);
    assert_eq!(meta.next_seq, 50);
    let seqs: Vec<u64> = deliveries.iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, [40, 44, 48]);
    assert_eq!(session_snapshot(meta, deliveries), snapshot);
}
