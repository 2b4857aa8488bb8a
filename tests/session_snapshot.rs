//! `SessionSnapshot`: any session survives snapshot -> session -> snapshot
//! and encode -> decode; a snapshot written by this version reads back in a
//! later process (a committed golden file, and a child process reading
//! what its parent wrote); an unknown version, a truncated or a corrupt
//! buffer is refused with an error, never a panic.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use ringmq::session::snapshot::{
    AwaitingSnapshot, DeliverySnapshot, DropsSnapshot, InflightSnapshot, MessageSnapshot,
    QueuedSnapshot, SubscriptionSnapshot, WillSnapshot,
};
use ringmq::session::{MessageId, SessionSnapshot, SnapshotError, WallClock, SNAPSHOT_VERSION};

/// A fixed wall-clock time for this process's "now": deadlines written
/// relative to it convert to `Instant`s and back exactly.
fn clock() -> WallClock {
    WallClock {
        instant: Instant::now(),
        unix_ms: 1_765_000_000_000,
    }
}

// ---- arbitrary valid sessions ----------------------------------------------

fn text() -> impl Strategy<Value = String> {
    "[a-z0-9/é€😀 _-]{0,10}"
}

fn deadline() -> impl Strategy<Value = u64> {
    // Up to a second in the past (within this process's `Instant` range)
    // and far into the future.
    (1_765_000_000_000u64 - 1_000)..(1_765_000_000_000u64 + 10_000_000_000)
}

fn message() -> impl Strategy<Value = MessageSnapshot> {
    (
        (
            "[a-z0-9/é]{1,12}",
            vec(any::<u8>(), 0..32),
            0u8..3,
            any::<bool>(),
        ),
        (
            option::of(0u8..2),
            option::of(any::<u32>()),
            option::of(text()),
            option::of(vec(any::<u8>(), 0..8)),
        ),
        (
            vec((text(), text()), 0..3),
            option::of(text()),
            option::of(text()),
            option::of(deadline()),
        ),
    )
        .prop_map(
            |(
                (topic, payload, qos, retain),
                (payload_format_indicator, message_expiry_interval_s, response_topic, correlation),
                (user_properties, content_type, origin, expires_at_unix_ms),
            )| MessageSnapshot {
                topic,
                payload: Bytes::from(payload),
                qos,
                retain,
                payload_format_indicator,
                message_expiry_interval_s,
                response_topic,
                correlation_data: correlation.map(Bytes::from),
                user_properties,
                content_type,
                origin,
                expires_at_unix_ms,
            },
        )
}

fn delivery(qos: impl Strategy<Value = u8>) -> impl Strategy<Value = DeliverySnapshot> {
    (
        message(),
        qos,
        any::<bool>(),
        vec(1u32..268_435_455, 0..3),
        option::of((any::<u32>(), any::<u16>(), any::<u64>())),
    )
        .prop_map(
            |(message, qos, retain, subscription_ids, id)| DeliverySnapshot {
                message,
                qos,
                retain,
                subscription_ids,
                id: id.map(|(node, shard, seq)| MessageId { node, shard, seq }),
            },
        )
}

fn subscription() -> impl Strategy<Value = (String, SubscriptionSnapshot)> {
    (
        "[a-z0-9/+#$]{1,12}",
        0u8..3,
        any::<bool>(),
        any::<bool>(),
        0u8..3,
        option::of(1u32..268_435_455),
    )
        .prop_map(
            |(filter, qos, no_local, retain_as_published, retain_handling, identifier)| {
                (
                    filter.clone(),
                    SubscriptionSnapshot {
                        filter,
                        qos,
                        no_local,
                        retain_as_published,
                        retain_handling,
                        identifier,
                    },
                )
            },
        )
}

fn inflight() -> impl Strategy<Value = InflightSnapshot> {
    (
        prop_oneof![
            Just(AwaitingSnapshot::PubAck),
            Just(AwaitingSnapshot::PubRec),
            Just(AwaitingSnapshot::PubComp)
        ],
        any::<bool>(),
        delivery(Just(1u8)),
    )
        .prop_map(|(awaiting, transmitted, mut delivery)| {
            delivery.qos = match awaiting {
                AwaitingSnapshot::PubAck => 1,
                _ => 2,
            };
            InflightSnapshot {
                // Numbered by `session()` below.
                packet_id: 0,
                seq: 0,
                awaiting,
                transmitted,
                delivery,
            }
        })
}

fn session() -> impl Strategy<Value = SessionSnapshot> {
    (
        ("[a-zA-Z0-9_-]{0,23}", any::<u32>(), option::of(deadline())),
        (
            vec(subscription(), 0..6),
            vec(inflight(), 0..6),
            any::<u16>(),
            0u64..1_000_000,
        ),
        (
            vec(delivery(0u8..3), 0..6),
            1u32..1_000_000,
            vec(1u16.., 0..6),
            any::<[u64; 4]>(),
        ),
        option::of((message(), deadline())),
        vec(1u16.., 0..6),
    )
        .prop_map(
            |(
                (client_id, expiry_interval_s, expires_at_unix_ms),
                (subscriptions, mut inflight, next_packet_id, seq_base),
                (queue, queue_len_max, incoming_qos2, drops),
                will,
                packet_ids,
            )| {
                let subscriptions: BTreeMap<String, SubscriptionSnapshot> =
                    subscriptions.into_iter().collect();
                let ids: BTreeSet<u16> = packet_ids.into_iter().collect();
                inflight.truncate(ids.len());
                for (i, (o, id)) in inflight.iter_mut().zip(ids).enumerate() {
                    o.packet_id = id;
                    o.seq = seq_base + 2 * i as u64;
                }
                let mut next_seq = seq_base + 2 * inflight.len() as u64 + 1;
                // Queued QoS 1/2 deliveries are numbered above the window's.
                let queue = queue
                    .into_iter()
                    .map(|delivery| {
                        let seq = if delivery.qos == 0 {
                            0
                        } else {
                            next_seq += 1;
                            next_seq - 1
                        };
                        QueuedSnapshot { seq, delivery }
                    })
                    .collect();
                SessionSnapshot {
                    client_id,
                    expiry_interval_s,
                    expires_at_unix_ms,
                    subscriptions: subscriptions.into_values().collect(),
                    inflight,
                    next_packet_id,
                    next_seq,
                    queue,
                    queue_len_max,
                    incoming_qos2: incoming_qos2
                        .into_iter()
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect(),
                    drops: DropsSnapshot {
                        queue_full: drops[0],
                        expired: drops[1],
                        too_large: drops[2],
                        closed: drops[3],
                    },
                    will: will.map(|(message, due_unix_ms)| WillSnapshot {
                        message,
                        due_unix_ms,
                    }),
                }
            },
        )
}

/// `snapshot` -> session -> snapshot.
fn through_session(snapshot: SessionSnapshot, clock: &WallClock) -> SessionSnapshot {
    let (session, expires_at, will) = snapshot.into_session(clock).expect("valid snapshot");
    SessionSnapshot::of(
        &session,
        expires_at,
        will.as_ref().map(|(m, due)| (m, *due)),
        clock,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_session_round_trips(snapshot in session()) {
        let clock = clock();
        prop_assert_eq!(&through_session(snapshot.clone(), &clock), &snapshot);
        let bytes = snapshot.encode().expect("encodes");
        let decoded = SessionSnapshot::decode(&bytes).expect("decodes");
        prop_assert_eq!(&decoded, &snapshot);
        prop_assert_eq!(through_session(decoded, &clock), snapshot);
    }

    /// Whatever bytes follow a valid header (with a matching checksum, so
    /// the archive's validation is what is tested), decode answers.
    #[test]
    fn arbitrary_bodies_never_panic(body in vec(any::<u8>(), 0..512)) {
        let mut bytes = header(SNAPSHOT_VERSION, &body);
        bytes.extend_from_slice(&body);
        if let Ok(s) = SessionSnapshot::decode(&bytes) {
            // A body that happens to be a valid archive is still checked
            // against the session's rules.
            let _ = s.into_session(&clock());
        }
    }

    #[test]
    fn any_damage_is_refused(snapshot in session(), at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let mut bytes = snapshot.encode().expect("encodes");
        let i = at.index(bytes.len());
        bytes[i] ^= 1 << bit;
        prop_assert!(SessionSnapshot::decode(&bytes).is_err(), "byte {} bit {} flipped", i, bit);
    }
}

/// A frame header as `SessionSnapshot::encode` writes it (module doc of
/// `session::snapshot`).
fn fold(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn header(version: u16, body: &[u8]) -> Vec<u8> {
    let mut h = b"RMQS".to_vec();
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&0u16.to_le_bytes());
    h.extend_from_slice(&(body.len() as u32).to_le_bytes());
    // From version 3 the checksum covers the version bytes, then the body.
    let seed = if version >= 3 {
        fold(0xcbf2_9ce4_8422_2325u64, &version.to_le_bytes())
    } else {
        0xcbf2_9ce4_8422_2325u64
    };
    let fnv = fold(seed, body);
    h.extend_from_slice(&fnv.to_le_bytes());
    h
}

// ---- a fixed session: the golden file and the second process --------------

/// Every field set, deadlines at fixed wall-clock times.
fn golden() -> SessionSnapshot {
    let message = |topic: &str, payload: &'static [u8], qos: u8| MessageSnapshot {
        topic: topic.into(),
        payload: Bytes::from_static(payload),
        qos,
        retain: false,
        payload_format_indicator: Some(1),
        message_expiry_interval_s: Some(3600),
        response_topic: Some("reply/here".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01corr")),
        user_properties: vec![("k".into(), "v".into()), ("ключ".into(), "値".into())],
        content_type: Some("text/plain".into()),
        origin: Some("publisher-1".into()),
        expires_at_unix_ms: Some(1_765_000_003_600_000),
    };
    let delivery = |m: MessageSnapshot, qos: u8| DeliverySnapshot {
        id: Some(MessageId {
            node: 0xDEAD_BEEF,
            shard: 3,
            seq: (1_765_000_000_000 << 20) + m.payload.len() as u64 + u64::from(qos),
        }),
        message: m,
        qos,
        retain: true,
        subscription_ids: vec![7, 268_435_455],
    };
    SessionSnapshot {
        client_id: "golden-client".into(),
        expiry_interval_s: 86_400,
        expires_at_unix_ms: Some(1_765_086_400_000),
        subscriptions: vec![
            SubscriptionSnapshot {
                filter: "$share/g/sensors/+".into(),
                qos: 1,
                no_local: false,
                retain_as_published: false,
                retain_handling: 0,
                identifier: None,
            },
            SubscriptionSnapshot {
                filter: "sensors/#".into(),
                qos: 2,
                no_local: true,
                retain_as_published: true,
                retain_handling: 2,
                identifier: Some(7),
            },
        ],
        inflight: vec![
            InflightSnapshot {
                packet_id: 65_535,
                seq: 10,
                awaiting: AwaitingSnapshot::PubAck,
                transmitted: true,
                delivery: delivery(message("sensors/a", b"one", 1), 1),
            },
            InflightSnapshot {
                packet_id: 1,
                seq: 11,
                awaiting: AwaitingSnapshot::PubComp,
                transmitted: true,
                delivery: delivery(message("sensors/b", b"two", 2), 2),
            },
            InflightSnapshot {
                packet_id: 2,
                seq: 12,
                awaiting: AwaitingSnapshot::PubRec,
                transmitted: false,
                delivery: delivery(message("sensors/c", b"", 2), 2),
            },
        ],
        next_packet_id: 3,
        // 13 in version 1's file: its queued QoS 1 delivery is numbered 13.
        next_seq: 14,
        queue: vec![
            QueuedSnapshot {
                seq: 0,
                delivery: delivery(message("sensors/d", b"\xff\x00binary", 0), 0),
            },
            QueuedSnapshot {
                seq: 13,
                delivery: delivery(message("sensors/e", b"five", 2), 1),
            },
        ],
        queue_len_max: 1000,
        incoming_qos2: vec![5, 9, 40_000],
        drops: DropsSnapshot {
            queue_full: 1,
            expired: 2,
            too_large: 3,
            closed: 4,
        },
        will: Some(WillSnapshot {
            message: message("clients/golden-client/status", b"gone", 1),
            due_unix_ms: 1_765_000_030_000,
        }),
    }
}

fn golden_path(version: u16) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join(format!("tests/data/session_snapshot_v{version}.bin"))
}

/// The golden session as versions 1 and 2 held it: no message ids.
fn golden_without_ids() -> SessionSnapshot {
    let mut s = golden();
    for o in &mut s.inflight {
        o.delivery.id = None;
    }
    for q in &mut s.queue {
        q.delivery.id = None;
    }
    s
}

/// `tests/data/session_snapshot_v3.bin` was written by this format version
/// (`RINGMQ_WRITE_GOLDEN=1 cargo test --test session_snapshot golden`
/// writes it anew: only when the format changes, with a new version).
/// It must read back, ids included, and this build must write the same
/// bytes: a change of the format without a new version fails here.
#[test]
fn golden_file_of_version_3_reads_back() {
    assert_eq!(SNAPSHOT_VERSION, 3);
    let path = golden_path(3);
    let written = golden().encode().expect("encodes");
    if std::env::var_os("RINGMQ_WRITE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &written).unwrap();
    }
    let bytes = std::fs::read(&path).expect("the golden file is committed");
    let read = SessionSnapshot::decode(&bytes).expect("decodes");
    assert_eq!(read, golden());
    assert!(read.queue.iter().all(|q| q.delivery.id.is_some()));
    assert_eq!(bytes, written, "the bytes form of version 3 changed");
}

/// Version 2's file (written before deliveries carried their message's
/// id) still reads: every delivery has no id.
#[test]
fn golden_file_of_version_2_still_reads_without_ids() {
    let bytes = std::fs::read(golden_path(2)).expect("the golden file is committed");
    assert_eq!(SessionSnapshot::decode(&bytes), Ok(golden_without_ids()));
}

/// Version 1's file (written before queued deliveries kept their `seq`)
/// still reads: its queued QoS 1/2 deliveries are numbered from its
/// `next_seq` on, and have no message id.
#[test]
fn golden_file_of_version_1_still_reads() {
    let bytes = std::fs::read(golden_path(1)).expect("the golden file is committed");
    assert_eq!(SessionSnapshot::decode(&bytes), Ok(golden_without_ids()));
}

/// The parent writes a snapshot whose session expires 60 s after the
/// parent's now; a second process (this test binary, run again) reads it
/// and finds the deadline 60 s after its own now, minus the time between.
#[test]
fn a_snapshot_written_by_one_process_reads_in_another() {
    let dir = std::env::temp_dir().join(format!("ringmq-snapshot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("session.bin");
    let now = WallClock::now();
    let mut snapshot = golden();
    snapshot.expires_at_unix_ms = Some(now.unix_ms + 60_000);
    std::fs::write(&path, snapshot.encode().unwrap()).unwrap();
    let written_at = Instant::now();

    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "second_process_reads",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("RINGMQ_SNAPSHOT_READ", &path)
        .status()
        .expect("runs the test binary again");
    assert!(status.success(), "the second process failed: {status}");
    let verdict = std::fs::read_to_string(path.with_extension("ok")).expect("the child ran");
    let remaining_ms: u64 = verdict.trim().parse().unwrap();
    let elapsed_ms = written_at.elapsed().as_millis() as u64;
    // Wall clocks agree between processes of one machine: what remains is
    // the minute less the time the child took to start, within a second.
    assert!(
        remaining_ms + elapsed_ms + 1_000 >= 60_000 && remaining_ms <= 60_000,
        "remaining {remaining_ms} ms after {elapsed_ms} ms"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The child side of the test above: does nothing unless run by it.
#[test]
fn second_process_reads() {
    let Some(path) = std::env::var_os("RINGMQ_SNAPSHOT_READ") else {
        return;
    };
    let path = PathBuf::from(path);
    let bytes = std::fs::read(&path).unwrap();
    let snapshot = SessionSnapshot::decode(&bytes).expect("decodes in a new process");
    let now = WallClock::now();
    let mut expected = golden();
    expected.expires_at_unix_ms = snapshot.expires_at_unix_ms;
    assert_eq!(snapshot, expected);
    let (session, expires_at, will) = snapshot.into_session(&now).expect("valid");
    assert_eq!(session.client_id().as_str(), "golden-client");
    assert_eq!(session.inflight_len(), 3);
    assert_eq!(session.queued_len(), 2);
    assert_eq!(session.subscriptions().count(), 2);
    assert!(will.is_some());
    let remaining = expires_at
        .expect("a deadline")
        .saturating_duration_since(now.instant);
    std::fs::write(path.with_extension("ok"), remaining.as_millis().to_string()).unwrap();
}

#[test]
fn an_unknown_version_is_refused_with_a_clear_error() {
    let mut bytes = golden().encode().unwrap();
    bytes[4..6].copy_from_slice(&4u16.to_le_bytes());
    let err = SessionSnapshot::decode(&bytes).unwrap_err();
    assert_eq!(
        err,
        SnapshotError::UnknownVersion {
            found: 4,
            supported: 3
        }
    );
    assert_eq!(
        err.to_string(),
        "session snapshot version 4 is not supported: this ringmq reads versions 1 to 3 \
         (written by another ringmq version?)"
    );
    bytes[4..6].copy_from_slice(&0u16.to_le_bytes());
    assert!(matches!(
        SessionSnapshot::decode(&bytes),
        Err(SnapshotError::UnknownVersion { found: 0, .. })
    ));
}

#[test]
fn every_truncation_is_refused() {
    let bytes = golden().encode().unwrap();
    for len in 0..bytes.len() {
        let err = SessionSnapshot::decode(&bytes[..len]).unwrap_err();
        match len {
            0..=3 => assert_eq!(err, SnapshotError::NotASnapshot),
            _ => assert!(
                matches!(err, SnapshotError::Truncated { got, .. } if got == len),
                "{len}: {err}"
            ),
        }
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        SessionSnapshot::decode(&longer),
        Err(SnapshotError::TrailingBytes(1))
    );
}

#[test]
fn other_bytes_and_damage_are_refused() {
    assert_eq!(
        SessionSnapshot::decode(b"{\"client_id\": \"x\"}"),
        Err(SnapshotError::NotASnapshot)
    );
    let bytes = golden().encode().unwrap();
    let mut flagged = bytes.clone();
    flagged[6] = 1;
    assert_eq!(
        SessionSnapshot::decode(&flagged),
        Err(SnapshotError::UnknownFlags(1))
    );
    let mut damaged = bytes.clone();
    let last = damaged.len() - 1;
    damaged[last] ^= 0x40;
    assert_eq!(
        SessionSnapshot::decode(&damaged),
        Err(SnapshotError::Checksum)
    );
    // A length over the limit is refused before anything is allocated.
    let mut huge = header(SNAPSHOT_VERSION, &[]);
    huge[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
    assert!(matches!(
        SessionSnapshot::decode(&huge),
        Err(SnapshotError::TooLarge { .. })
    ));
    // A valid archive that breaks the session's rules.
    let mut bad = golden();
    bad.inflight[1].packet_id = bad.inflight[0].packet_id;
    let err = SessionSnapshot::decode(&bad.encode().unwrap())
        .unwrap()
        .into_session(&clock())
        .unwrap_err();
    assert!(matches!(err, SnapshotError::Invalid(_)), "{err}");
    let mut bad = golden();
    bad.queue[0].delivery.message.topic = "nul\0here".into();
    assert!(matches!(
        bad.into_session(&clock()),
        Err(SnapshotError::Invalid(_))
    ));
    let mut bad = golden();
    bad.inflight[0].delivery.qos = 2;
    assert!(bad.into_session(&clock()).is_err());
}

#[test]
fn wall_clock_conversions_are_exact_to_the_millisecond() {
    let clock = clock();
    for offset_ms in [0u64, 1, 999, 60_000, 86_400_000] {
        let at = clock.instant + Duration::from_millis(offset_ms);
        assert_eq!(clock.to_unix_ms(at), clock.unix_ms + offset_ms);
        assert_eq!(clock.to_instant(clock.unix_ms + offset_ms), at);
    }
    let before = clock.instant - Duration::from_millis(250);
    assert_eq!(clock.to_unix_ms(before), clock.unix_ms - 250);
    assert_eq!(clock.to_instant(clock.unix_ms - 250), before);
    // Long before this process started: still an instant, and due.
    assert!(clock.to_instant(0) < before);
    assert_eq!(clock.to_unix_ms(clock.to_instant(0)), 0);
}
