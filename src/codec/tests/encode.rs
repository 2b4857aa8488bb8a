//! Encode checks and the encoders that must agree with the general one.

use super::*;

// ---- encode checks ----------------------------------------------------------

#[test]
fn encode_refuses_unframeable_packets() {
    let mut p = publish("t", QoS::AtMostOnce, 0, b"");
    p.properties
        .get_or_insert_default()
        .subscription_identifiers
        .push(268_435_456);
    assert!(matches!(
        encode(&Packet::Publish(p), Protocol::V5, &mut BytesMut::new()),
        Err(EncodeError::Invalid(_))
    ));
    let long = ByteStr::from("x".repeat(65_536));
    let p = Publish {
        topic: long,
        ..publish("", QoS::AtMostOnce, 0, b"")
    };
    assert!(matches!(
        encode(&Packet::Publish(p), Protocol::V311, &mut BytesMut::new()),
        Err(EncodeError::TooLong(_))
    ));
    // An aliased PUBLISH cannot go to a v3.1.1 client as it is.
    let mut aliased = publish("", QoS::AtMostOnce, 0, b"");
    aliased.properties.get_or_insert_default().topic_alias = Some(1);
    assert!(encode(
        &Packet::Publish(aliased.clone()),
        Protocol::V5,
        &mut BytesMut::new()
    )
    .is_ok());
    assert!(matches!(
        encode(
            &Packet::Publish(aliased),
            Protocol::V311,
            &mut BytesMut::new()
        ),
        Err(EncodeError::Invalid(_))
    ));
    let mut c = connect(Protocol::V311);
    c.password = Some(Bytes::from_static(b"p"));
    let mut out = BytesMut::new();
    assert!(encode(&Packet::Connect(Box::new(c)), Protocol::V311, &mut out).is_err());
    assert!(out.is_empty(), "nothing written on error");
    let huge = Publish {
        payload: Bytes::from(vec![0; 268_435_456]),
        ..publish("t", QoS::AtMostOnce, 0, b"")
    };
    assert!(matches!(
        encode(&Packet::Publish(huge), Protocol::V311, &mut out),
        Err(EncodeError::PacketTooLarge { .. })
    ));
}

#[test]
fn encode_appends_after_existing_bytes() {
    let mut out = BytesMut::from(&b"xy"[..]);
    encode(&Packet::PingReq, Protocol::V311, &mut out).unwrap();
    assert_eq!(&out[..], b"xy\xc0\x00");
}

#[test]
fn full_v5_packets_round_trip() {
    let user = vec![("k".into(), "v".into()), ("k".into(), "w".into())];
    let mut p = publish("a/b", QoS::ExactlyOnce, 9, b"{}");
    p.dup = true;
    p.retain = true;
    p.properties = PublishProperties {
        payload_format_indicator: Some(1),
        message_expiry_interval_s: Some(60),
        topic_alias: Some(3),
        response_topic: Some("r".into()),
        correlation_data: Some(Bytes::from_static(b"\x00\x01")),
        user_properties: user.clone(),
        subscription_identifiers: [1, 268_435_455].into_iter().collect(),
        content_type: Some("json".into()),
    }
    .boxed();
    round_trip(Packet::Publish(p), Protocol::V5);
    let mut c = connect(Protocol::V5);
    c.properties = ConnectProperties {
        session_expiry_interval_s: Some(1),
        receive_maximum: Some(10),
        maximum_packet_size: Some(1000),
        topic_alias_maximum: Some(0),
        request_response_information: Some(1),
        request_problem_information: Some(0),
        user_properties: user.clone(),
        authentication_method: Some("m".into()),
        authentication_data: Some(Bytes::from_static(b"d")),
    };
    round_trip(Packet::Connect(Box::new(c)), Protocol::V5);
    round_trip(
        Packet::Disconnect(Box::new(Disconnect {
            reason_code: ReasonCode::SERVER_MOVED,
            properties: DisconnectProperties {
                session_expiry_interval_s: Some(0),
                reason_string: Some("moved".into()),
                user_properties: user,
                server_reference: Some("other:1883".into()),
            },
        })),
        Protocol::V5,
    );
}

#[test]
fn short_ack_matches_the_general_encoder() {
    for protocol in [Protocol::V311, Protocol::V5] {
        for kind in [
            AckKind::PubAck,
            AckKind::PubRec,
            AckKind::PubRel,
            AckKind::PubComp,
        ] {
            for reason in [ReasonCode::SUCCESS, ReasonCode(0x10), ReasonCode(0x92)] {
                let a = PubAck {
                    packet_id: 0x1234,
                    reason_code: reason,
                    properties: AckProperties::default(),
                };
                let packet = match kind {
                    AckKind::PubAck => Packet::PubAck(a),
                    AckKind::PubRec => Packet::PubRec(a),
                    AckKind::PubRel => Packet::PubRel(a),
                    AckKind::PubComp => Packet::PubComp(a),
                };
                let mut out = BytesMut::new();
                let n = encode_short_ack(kind, 0x1234, reason, protocol, &mut out);
                assert_eq!(n, out.len());
                assert_eq!(
                    hex::encode(&out),
                    encode_hex(&packet, protocol),
                    "{kind:?} {reason:?} {protocol:?}"
                );
            }
        }
    }
}

#[test]
fn publish_parts_encode_like_a_publish() {
    let mut p = publish("a/b", QoS::AtLeastOnce, 7, b"payload");
    p.retain = true;
    p.dup = true;
    for protocol in [Protocol::V311, Protocol::V5] {
        let whole = encode_hex(&Packet::Publish(p.clone()), protocol);
        let mut out = BytesMut::new();
        assert!(encode_publish(&p.as_ref(), protocol, usize::MAX, &mut out).unwrap());
        assert_eq!(hex::encode(&out), whole);
        // One byte under its size: refused, nothing written.
        let mut out = BytesMut::new();
        let max = whole.len() / 2 - 1;
        assert!(!encode_publish(&p.as_ref(), protocol, max, &mut out).unwrap());
        assert!(out.is_empty());
    }
}
