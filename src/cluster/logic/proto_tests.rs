use proptest::prelude::*;

use super::*;

fn message_snapshot(topic: &str) -> MessageSnapshot {
    MessageSnapshot {
        topic: topic.into(),
        payload: Bytes::from_static(b"payload"),
        qos: 1,
        retain: false,
        payload_format_indicator: Some(1),
        message_expiry_interval_s: Some(60),
        response_topic: Some("reply/to".into()),
        correlation_data: Some(Bytes::from_static(b"corr")),
        user_properties: vec![("k".into(), "v".into())],
        content_type: Some("text/plain".into()),
        origin: Some("publisher".into()),
        expires_at_unix_ms: Some(1_700_000_060_000),
    }
}

fn epoch() -> ClaimEpoch {
    ClaimEpoch {
        claimed_at_ms: 1_700_000_000_000,
        home: 7,
        counter: 3,
    }
}

/// One message of every kind, so a kind added to `messages!` without a
/// sample here fails `every_kind_round_trips`.
fn samples() -> Vec<Message> {
    let entry = RouteEntry {
        filter: "a/+/c".into(),
        group: Some("g".into()),
        members: 2,
    };
    let id = MessageId {
        node: 9,
        shard: 1,
        seq: 42,
    };
    let at = WireLocation { node: 9, shard: 1 };
    vec![
        Message::RouteChange(RouteChange {
            epoch: 5,
            seq: 1,
            entry: entry.clone(),
        }),
        Message::RouteAck(RouteAck { epoch: 5, seq: 1 }),
        Message::RouteSnapshotRequest(RouteSnapshotRequest {
            known_epoch: 5,
            applied_seq: 1,
        }),
        Message::RouteSnapshot(RouteSnapshot {
            epoch: 5,
            seq: 9,
            entries: vec![entry],
            last: true,
        }),
        Message::Forward(Forward {
            id,
            stream_seq: 3,
            message: message_snapshot("a/b/c"),
            shared: Some(SharedTarget {
                group: "g".into(),
                filter: "a/+/c".into(),
            }),
        }),
        Message::ForwardAck(ForwardAck {
            window: WindowId {
                epoch: 9,
                opened: 2,
            },
            shard: 1,
            up_to: 3,
        }),
        Message::Claim(Claim {
            client_id: "c1".into(),
            claimant: at,
            request: 1,
        }),
        Message::ClaimAnswer(ClaimAnswer {
            client_id: "c1".into(),
            request: 1,
            epoch: Some(epoch()),
            previous: Some(at),
        }),
        Message::ClaimDone(ClaimDone {
            client_id: "c1".into(),
            epoch: epoch(),
            owner: at,
        }),
        Message::TakeoverKick(TakeoverKick {
            client_id: "c1".into(),
            epoch: epoch(),
            new_owner: at,
        }),
        Message::TakeoverExport(TakeoverExport {
            client_id: "c1".into(),
            epoch: epoch(),
            snapshot: Some(Bytes::from_static(b"RMQS...")),
        }),
        Message::HeldRequest(HeldRequest {
            client_id: "c1".into(),
            epoch: epoch(),
        }),
        Message::HeldDeliveries(HeldDeliveries {
            client_id: "c1".into(),
            epoch: epoch(),
            messages: vec![HeldMessage {
                id,
                delivery: DeliverySnapshot {
                    message: message_snapshot("a/b/c"),
                    qos: 1,
                    retain: false,
                    subscription_ids: vec![4],
                    id: Some(id),
                },
            }],
            last: true,
        }),
        Message::OwnerReport(OwnerReport {
            client_id: "c1".into(),
            owner: at,
            epoch: epoch(),
        }),
        Message::OwnerEnded(OwnerEnded {
            client_id: "c1".into(),
            owner: at,
            epoch: epoch(),
        }),
        Message::Evict(Evict {
            client_id: "c1".into(),
            epoch: epoch(),
        }),
        Message::RetainedSync(RetainedSync {
            topic: "a/b".into(),
            message: Some(message_snapshot("a/b")),
            id: Some(MessageId {
                node: 9,
                shard: 1,
                seq: 77,
            }),
        }),
        Message::LoadFigures(LoadFigures {
            connections: 10,
            connections_max: 100,
            version: "0.1.0".into(),
        }),
        Message::ForwardBatch(ForwardBatch {
            window: WindowId {
                epoch: 1_700_000_000_000,
                opened: 3,
            },
            forwards: vec![Forward {
                id,
                stream_seq: 4,
                message: message_snapshot("a/b"),
                shared: None,
            }],
        }),
        Message::ClientsQuery(ClientsQuery::new(
            7,
            ClientsQuestion::List { skip: 10, take: 5 },
        )),
        Message::ClientsAnswer(ClientsAnswer::new(
            7,
            ClientsReply::Clients(vec![WireClient {
                client_id: "c1".into(),
                shard: 1,
                connected: true,
                username: Some("u".into()),
                proto_ver: 5,
                peer: Some("127.0.0.2:50000".into()),
                keepalive_s: 60,
                clean_start: Some(true),
                expiry_interval_s: 0,
                subscriptions: 2,
                mqueue_len: 0,
                mqueue_max: 1000,
                mqueue_dropped: 0,
                inflight_cnt: 0,
                connected_at_ms: Some(1_700_000_000_000),
                disconnected_at_ms: None,
            }]),
        )),
        Message::SessionPush(SessionPush {
            client_id: "c1".into(),
            request: 3,
        }),
        Message::SessionPushDone(SessionPushDone {
            client_id: "c1".into(),
            request: 3,
            moved: true,
        }),
    ]
}

#[test]
fn a_clients_frame_without_its_magic_is_refused() {
    let mut bad = ClientsAnswer::new(1, ClientsReply::Client(None));
    bad.magic = 0;
    let body = Message::ClientsAnswer(bad).encode().unwrap();
    assert!(matches!(
        Message::decode(PROTO_VERSION, kind::ClientsAnswer, &body),
        Err(ProtoError::Malformed { .. })
    ));
}

#[test]
fn every_kind_round_trips() {
    let samples = samples();
    let mut kinds: Vec<u8> = samples.iter().map(Message::kind).collect();
    kinds.sort_unstable();
    kinds.dedup();
    let mut expected: Vec<u8> = (16..=34).collect();
    expected.extend([40, 41, 48, 49]);
    assert_eq!(kinds, expected, "one sample per kind");
    for message in samples {
        let body = message.encode().unwrap();
        let back = Message::decode(PROTO_VERSION, message.kind(), &body).unwrap();
        assert_eq!(back, message);
    }
}

#[test]
fn kinds_are_the_logic_range() {
    assert!(samples().iter().all(|m| m.kind() >= KIND_FIRST_LOGIC));
    assert_eq!(kind::RouteChange, 16);
    assert_eq!(kind::LoadFigures, 32);
}

#[test]
fn unknown_version_and_kind_are_refused() {
    let body = samples()[0].encode().unwrap();
    for version in [1, PROTO_VERSION + 1] {
        assert_eq!(
            Message::decode(version, kind::RouteChange, &body),
            Err(ProtoError::UnknownVersion {
                found: version,
                supported: PROTO_VERSION
            })
        );
    }
    assert_eq!(
        Message::decode(PROTO_VERSION, 200, &body),
        Err(ProtoError::UnknownKind(200))
    );
}

#[test]
fn truncated_bodies_are_errors() {
    for message in samples() {
        let body = message.encode().unwrap();
        for len in 0..body.len() {
            let decoded = Message::decode(PROTO_VERSION, message.kind(), &body[..len]);
            assert!(
                decoded.is_err(),
                "kind {} truncated to {len} of {} bytes decoded: {decoded:?}",
                message.kind(),
                body.len()
            );
        }
        assert!(Message::decode(PROTO_VERSION, message.kind(), &[]).is_err());
    }
}

#[test]
fn a_body_of_another_kind_is_not_taken_for_this_one() {
    // A claim body read as a forward must fail validation, not panic.
    let claim = samples()[6].encode().unwrap();
    assert!(Message::decode(PROTO_VERSION, kind::Forward, &claim).is_err());
}

#[test]
fn oversized_bodies_are_refused_before_validation() {
    let body = vec![0u8; CLUSTER_LOGIC_BODY_MAX_BYTES + 1];
    assert!(matches!(
        Message::decode(PROTO_VERSION, kind::RouteAck, &body),
        Err(ProtoError::TooLarge { .. })
    ));
}

proptest! {
    #[test]
    fn random_bytes_never_panic(kind in 16u8..=40, body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = Message::decode(PROTO_VERSION, kind, &body);
    }

    #[test]
    fn flipped_bytes_never_panic(which in 0usize..17, at in any::<prop::sample::Index>(), bit in 0u8..8) {
        let message = &samples()[which];
        let mut body = message.encode().unwrap();
        let i = at.index(body.len());
        body[i] ^= 1 << bit;
        let _ = Message::decode(PROTO_VERSION, message.kind(), &body);
    }
}
