//! PUBLISH and the acknowledgements (PUBACK to PUBCOMP, DISCONNECT, AUTH).

use super::*;

// ---- PUBLISH --------------------------------------------------------------

#[test]
fn publish_payload_and_topic_share_the_input_buffer() {
    let mut b = buf("300a00047465737474657374");
    let range = b.as_ptr() as usize..b.as_ptr() as usize + b.len();
    let Some(Packet::Publish(p)) = decode(&mut b, Some(Protocol::V311), MAX).unwrap() else {
        panic!("not a publish");
    };
    assert_eq!(p.topic, "test");
    assert_eq!(&p.payload[..], b"test");
    assert!(range.contains(&(p.payload.as_ptr() as usize)));
    assert!(range.contains(&(p.topic.as_bytes().as_ptr() as usize)));
}

#[test]
fn publish_topic_rules() {
    // Wildcards.
    assert_eq!(
        server("30040002612b", Protocol::V311).unwrap_err().cause(),
        &DecodeError::TopicNameInvalid
    );
    assert_eq!(
        server("3006 00032f2361 00", Protocol::V5)
            .unwrap_err()
            .reason_code(),
        ReasonCode::TOPIC_NAME_INVALID
    );
    // Empty topic: v3.1.1 never, v5 only with a topic alias.
    assert_eq!(
        server("30020000", Protocol::V311),
        Err(DecodeError::TopicNameInvalid)
    );
    assert!(matches!(
        server("3003000000", Protocol::V5),
        Err(DecodeError::Protocol(_))
    ));
    let Some(Packet::Publish(p)) = server("300700000323000778", Protocol::V5).unwrap() else {
        panic!()
    };
    assert_eq!(p.properties().topic_alias, Some(7));
    assert_eq!(&p.payload[..], b"x");
}

#[test]
fn publish_packet_id_zero_is_refused() {
    assert!(matches!(
        server("32050001610000", Protocol::V311),
        Err(DecodeError::Protocol(_))
    ));
    assert!(matches!(
        encode(
            &Packet::Publish(publish("a", QoS::AtLeastOnce, 0, b"")),
            Protocol::V311,
            &mut BytesMut::new()
        ),
        Err(EncodeError::PacketIdZero(_))
    ));
}

#[test]
fn publish_payload_format_indicator() {
    // PFI 1 and a payload that is not UTF-8.
    let err = server("30070001610201 01 ff", Protocol::V5).unwrap_err();
    assert_eq!(err, DecodeError::PayloadFormatInvalid);
    assert_eq!(err.reason_code(), ReasonCode::PAYLOAD_FORMAT_INVALID);
    // PFI 0: any bytes.
    assert!(server("30070001610201 00 ff", Protocol::V5).is_ok());
    // PFI 2: not a defined value.
    assert!(server("30070001610201 02 ff", Protocol::V5).is_err());
}

#[test]
fn publish_properties_rules() {
    // Duplicate message expiry.
    assert!(matches!(
        server("300e 000161 0a 0200000001 0200000002", Protocol::V5),
        Err(DecodeError::Protocol(_))
    ));
    // Topic alias 0 decodes; the session answers it with 0x94.
    match server("3007 000161 03 230000", Protocol::V5) {
        Ok(Some(Packet::Publish(p))) => assert_eq!(p.properties().topic_alias, Some(0)),
        other => panic!("{other:?}"),
    }
    // Subscription identifier from a client; fine from a server, repeated.
    let hex_str = "3008 000161 04 0b010b02";
    assert!(matches!(
        server(hex_str, Protocol::V5),
        Err(DecodeError::Protocol(_))
    ));
    let Some(Packet::Publish(p)) = any(hex_str, Protocol::V5).unwrap() else {
        panic!()
    };
    assert_eq!(&p.properties().subscription_identifiers[..], &[1, 2]);
    // Subscription identifier 0.
    assert!(any("3006 000161 02 0b00", Protocol::V5).is_err());
    // Property not allowed on PUBLISH (Session Expiry Interval).
    assert!(matches!(
        server("3009 000161 05 1100000001", Protocol::V5),
        Err(DecodeError::Malformed(_))
    ));
    // Property length runs past the packet.
    assert!(matches!(
        server("3005 000161 09 01", Protocol::V5),
        Err(DecodeError::Malformed(_))
    ));
    // Response topic with a wildcard.
    assert!(server("3008 000161 04 0800012b", Protocol::V5).is_err());
    // User properties may repeat.
    let Some(Packet::Publish(p)) = server(
        "3013 000161 0e 260001610001622600016100016263",
        Protocol::V5,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(p.properties().user_properties.len(), 2);
    assert_eq!(&p.payload[..], b"c");
}

#[test]
fn publish_properties_dropped_on_v3() {
    let mut p = publish("t", QoS::AtMostOnce, 0, b"x");
    p.properties
        .get_or_insert_default()
        .message_expiry_interval_s = Some(5);
    assert_eq!(
        encode_hex(&Packet::Publish(p), Protocol::V311),
        "300400017478"
    );
}

// ---- acknowledgements -----------------------------------------------------

#[test]
fn ack_short_forms() {
    for (hex_str, code, props) in [
        ("40020001", 0x00, false),
        ("4003000110", 0x10, false),
        ("400400011000", 0x10, false),
        ("4008000110041f000178", 0x10, true),
    ] {
        let Some(Packet::PubAck(a)) = server(hex_str, Protocol::V5).unwrap() else {
            panic!("{hex_str}")
        };
        assert_eq!(a.packet_id, 1);
        assert_eq!(a.reason_code, ReasonCode(code));
        assert_eq!(a.properties.reason_string.is_some(), props);
    }
    let success = PubAck {
        packet_id: 1,
        ..PubAck::default()
    };
    assert_eq!(
        encode_hex(&Packet::PubAck(success.clone()), Protocol::V5),
        "40020001"
    );
    assert_eq!(
        encode_hex(&Packet::PubRel(success), Protocol::V5),
        "62020001"
    );
    let refused = PubAck {
        packet_id: 1,
        reason_code: ReasonCode::NO_MATCHING_SUBSCRIBERS,
        ..PubAck::default()
    };
    assert_eq!(
        encode_hex(&Packet::PubAck(refused.clone()), Protocol::V5),
        "400400011000"
    );
    // v3.1.1 has no reason code.
    assert_eq!(
        encode_hex(&Packet::PubAck(refused), Protocol::V311),
        "40020001"
    );
}

#[test]
fn ack_reason_codes_per_kind() {
    assert!(server("4003000105", Protocol::V5).is_err());
    assert!(server("5003000191", Protocol::V5).is_ok());
    assert!(server("6203000192", Protocol::V5).is_ok());
    assert!(server("6203000110", Protocol::V5).is_err());
    assert!(server("7003000110", Protocol::V5).is_err());
    // v3.1.1 acks are exactly two bytes.
    assert!(server("4003000100", Protocol::V311).is_err());
}

#[test]
fn disconnect_forms() {
    let normal = Packet::Disconnect(Box::default());
    assert_eq!(server("e000", Protocol::V5), Ok(Some(normal.clone())));
    assert_eq!(server("e00100", Protocol::V5), Ok(Some(normal.clone())));
    assert_eq!(server("e0020000", Protocol::V5), Ok(Some(normal.clone())));
    assert_eq!(encode_hex(&normal, Protocol::V5), "e000");
    let with_will = Packet::Disconnect(Box::new(Disconnect {
        reason_code: ReasonCode::DISCONNECT_WITH_WILL_MESSAGE,
        ..Disconnect::default()
    }));
    assert_eq!(server("e00104", Protocol::V5), Ok(Some(with_will.clone())));
    assert_eq!(encode_hex(&with_will, Protocol::V5), "e0020400");
    assert_eq!(encode_hex(&with_will, Protocol::V311), "e000");
    assert!(server("e00105", Protocol::V5).is_err());
}

#[test]
fn auth_forms() {
    assert_eq!(
        server("f000", Protocol::V5),
        Ok(Some(Packet::Auth(Box::default())))
    );
    assert!(
        server("f00118", Protocol::V5).is_err(),
        "reason without properties"
    );
    assert!(server("f0021800", Protocol::V5).is_ok());
    assert!(server("f0021700", Protocol::V5).is_err());
    assert!(matches!(
        encode(
            &Packet::Auth(Box::default()),
            Protocol::V311,
            &mut BytesMut::new()
        ),
        Err(EncodeError::NotInProtocol(_))
    ));
}
