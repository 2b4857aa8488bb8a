//! Unit tests across the codec: frame checks, per-packet validation, short
//! forms, error mapping and encode checks. Round trips of arbitrary packets
//! and the conformance vectors live in `tests/codec_*.rs`.

use bytes::{Bytes, BytesMut};

use super::*;

const MAX: u32 = 1 << 20;

fn buf(hex_str: &str) -> BytesMut {
    BytesMut::from(&hex::decode(hex_str.replace(' ', "")).unwrap()[..])
}

fn server(hex_str: &str, protocol: Protocol) -> Result<Option<Packet>, DecodeError> {
    decode(&mut buf(hex_str), Some(protocol), MAX)
}

fn any(hex_str: &str, protocol: Protocol) -> Result<Option<Packet>, DecodeError> {
    decode_any(&mut buf(hex_str), protocol, MAX)
}

fn encode_hex(packet: &Packet, protocol: Protocol) -> String {
    let mut out = BytesMut::new();
    encode(packet, protocol, &mut out).unwrap();
    assert_eq!(out.len(), encoded_len(packet, protocol));
    hex::encode(&out)
}

fn round_trip(packet: Packet, protocol: Protocol) {
    let mut out = BytesMut::new();
    encode(&packet, protocol, &mut out).unwrap();
    assert_eq!(out.len(), encoded_len(&packet, protocol));
    let decoded = decode_any(&mut out, protocol, MAX).unwrap().unwrap();
    assert_eq!(decoded, packet);
    assert!(out.is_empty());
}

fn publish(topic: &str, qos: QoS, packet_id: u16, payload: &'static [u8]) -> Publish {
    Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        payload: Bytes::from_static(payload),
        properties: None,
    }
}

fn connect(protocol: Protocol) -> Connect {
    Connect {
        protocol,
        clean_start: true,
        keep_alive_s: 30,
        client_id: "c".into(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

// ---- frame check ----------------------------------------------------------

#[test]
fn incomplete_frames_consume_nothing() {
    let full = "300a00047465737474657374";
    for cut in 0..full.len() / 2 {
        let mut b = buf(&full[..cut * 2]);
        assert_eq!(decode(&mut b, Some(Protocol::V311), MAX), Ok(None), "{cut}");
        assert_eq!(b.len(), cut);
    }
}

#[test]
fn size_cap_applies_from_the_header_alone() {
    // Remaining length 268,435,455 announced, no body sent.
    let mut b = buf("30ffffff7f");
    assert_eq!(
        decode(&mut b, Some(Protocol::V311), 1000),
        Err(DecodeError::PacketTooLarge {
            size: 268_435_460,
            max: 1000
        })
    );
    // The cap counts the fixed header: 2 + 10 bytes.
    assert!(decode(
        &mut buf("300a00047465737474657374"),
        Some(Protocol::V311),
        12
    )
    .is_ok());
    assert!(matches!(
        decode(&mut buf("300a"), Some(Protocol::V311), 11),
        Err(DecodeError::PacketTooLarge { size: 12, max: 11 })
    ));
}

#[test]
fn remaining_length_of_five_bytes_is_malformed() {
    assert!(matches!(
        server("10ffffffff01", Protocol::V311),
        Err(DecodeError::Malformed(_))
    ));
    assert!(matches!(
        server("30ffffff80", Protocol::V311),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn first_packet_must_be_connect() {
    let err = decode(&mut buf("c000"), None, MAX).unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    // Even a single byte is enough to tell.
    assert!(decode(&mut buf("30"), None, MAX).is_err());
    let connect_v5 = "101000044d5154540502003c032100140000";
    assert!(matches!(
        decode(&mut buf(connect_v5), None, MAX),
        Ok(Some(Packet::Connect(_)))
    ));
}

#[test]
fn server_refuses_server_to_client_kinds() {
    for hex_str in ["20020000", "9003000100", "b0020001", "d000"] {
        let err = server(hex_str, Protocol::V311).unwrap_err();
        assert!(matches!(err, DecodeError::Protocol(_)), "{hex_str}: {err}");
        assert!(any(hex_str, Protocol::V311).unwrap().is_some(), "{hex_str}");
    }
}

#[test]
fn second_connect_decodes() {
    let c = Packet::Connect(Box::new(connect(Protocol::V5)));
    let mut out = BytesMut::new();
    encode(&c, Protocol::V5, &mut out).unwrap();
    assert_eq!(decode(&mut out, Some(Protocol::V5), MAX), Ok(Some(c)));
}

#[test]
fn reserved_flags_and_types() {
    for (hex_str, protocol) in [
        ("000100", Protocol::V311),           // type 0
        ("f000", Protocol::V311),             // AUTH before v5
        ("41020001", Protocol::V5),           // PUBACK flags
        ("60020001", Protocol::V5),           // PUBREL without 0b0010
        ("c100", Protocol::V311),             // PINGREQ flags
        ("3606000474657374", Protocol::V311), // QoS 3
        ("3806000474657374", Protocol::V311), // DUP on QoS 0
    ] {
        assert!(
            matches!(server(hex_str, protocol), Err(DecodeError::Malformed(_))),
            "{hex_str}"
        );
    }
}

#[test]
fn trailing_bytes_are_malformed() {
    for (hex_str, protocol) in [
        ("4003000100", Protocol::V311),
        ("c00100", Protocol::V311),
        ("e00100", Protocol::V311),
        ("b003000100", Protocol::V311),
    ] {
        assert!(
            matches!(any(hex_str, protocol), Err(DecodeError::Malformed(_))),
            "{hex_str}"
        );
    }
}

#[test]
fn two_packets_in_one_buffer() {
    let mut b = buf("c000 e000");
    assert_eq!(
        decode(&mut b, Some(Protocol::V311), MAX),
        Ok(Some(Packet::PingReq))
    );
    assert_eq!(
        decode(&mut b, Some(Protocol::V311), MAX),
        Ok(Some(Packet::Disconnect(Box::default())))
    );
    assert_eq!(decode(&mut b, Some(Protocol::V311), MAX), Ok(None));
}

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

// ---- SUBSCRIBE / UNSUBSCRIBE ------------------------------------------------

#[test]
fn subscribe_rules() {
    // No filters.
    assert!(matches!(
        server("82020001", Protocol::V311),
        Err(DecodeError::Protocol(_))
    ));
    assert!(matches!(
        server("8203000100", Protocol::V5),
        Err(DecodeError::Protocol(_))
    ));
    // Packet id 0.
    assert!(matches!(
        server("8206000000016100", Protocol::V311),
        Err(DecodeError::Protocol(_))
    ));
    // Empty filter.
    assert_eq!(
        server("820500010000 00", Protocol::V311),
        Err(DecodeError::TopicFilterInvalid)
    );
    // v3.1.1 options: QoS 3, upper bits.
    assert!(matches!(
        server("8206000100016103", Protocol::V311),
        Err(DecodeError::Malformed(_))
    ));
    assert!(matches!(
        server("8206000100016104", Protocol::V311),
        Err(DecodeError::Malformed(_))
    ));
    // v5 options: reserved bits malformed; retain handling 3, QoS 3 protocol errors.
    assert!(matches!(
        server("820700010000016140", Protocol::V5),
        Err(DecodeError::Malformed(_))
    ));
    assert!(matches!(
        server("820700010000016130", Protocol::V5),
        Err(DecodeError::Protocol(_))
    ));
    assert!(matches!(
        server("820700010000016103", Protocol::V5),
        Err(DecodeError::Protocol(_))
    ));
    let Some(Packet::Subscribe(s)) = server("82070001000001612e", Protocol::V5).unwrap() else {
        panic!()
    };
    assert_eq!(
        s.filters[0].1,
        SubscriptionOptions {
            qos: QoS::ExactlyOnce,
            no_local: true,
            retain_as_published: true,
            retain_handling: 2,
        }
    );
    // Filter truncated before its options byte.
    assert!(server("82050001000161", Protocol::V311).is_err());
}

#[test]
fn unsubscribe_rules() {
    assert!(matches!(
        server("a2020001", Protocol::V311),
        Err(DecodeError::Protocol(_))
    ));
    assert_eq!(
        server("a20400010000", Protocol::V311),
        Err(DecodeError::TopicFilterInvalid)
    );
    assert!(server("a205000100016 1".replace(' ', "").as_str(), Protocol::V311).is_ok());
}

#[test]
fn suback_v3_maps_v5_errors_to_0x80() {
    let suback = Packet::SubAck(SubAck {
        packet_id: 1,
        reason_codes: vec![ReasonCode::GRANTED_QOS_1, ReasonCode::NOT_AUTHORIZED],
        properties: AckProperties::default(),
    });
    assert_eq!(encode_hex(&suback, Protocol::V311), "900400010180");
    assert_eq!(encode_hex(&suback, Protocol::V5), "90050001000187");
}

// ---- CONNECT ----------------------------------------------------------------

#[test]
fn connect_round_trips() {
    for protocol in [Protocol::V31, Protocol::V311, Protocol::V5] {
        let mut c = connect(protocol);
        c.will = Some(Will {
            topic: "w".into(),
            payload: Bytes::from_static(b"bye"),
            qos: QoS::AtLeastOnce,
            retain: true,
            properties: WillProperties::default(),
        });
        c.username = Some("u".into());
        c.password = Some(Bytes::from_static(b"p"));
        round_trip(Packet::Connect(Box::new(c)), protocol);
    }
}

#[test]
fn connect_protocol_name_and_level() {
    let err = decode(
        &mut buf("101200064141414141410300000a000474657374"),
        None,
        MAX,
    )
    .unwrap_err();
    assert_eq!(err, DecodeError::InvalidProtocolName);
    assert_eq!(err.protocol_hint(), None);
    assert_eq!(err.connack_v3(), None);

    // MQIsdp level 1: CONNACK 0x01 the v3.1.1 way.
    let err = decode(
        &mut buf("101200064d51497364700100000a000474657374"),
        None,
        MAX,
    )
    .unwrap_err();
    assert_eq!(err, DecodeError::UnsupportedProtocolVersion(1));
    assert_eq!(err.protocol_hint(), Some(Protocol::V311));
    assert_eq!(
        err.connack_v3(),
        Some(connack_v3::UNACCEPTABLE_PROTOCOL_VERSION)
    );
    assert_eq!(err.reason_code(), ReasonCode::UNSUPPORTED_PROTOCOL_VERSION);

    // "MQTT" level 6: a client newer than v5 gets the v5 answer (0x84).
    let err = decode(&mut buf("100a00044d5154540602001e"), None, MAX).unwrap_err();
    assert_eq!(err.protocol_hint(), Some(Protocol::V5));
    // MQIsdp with level byte 5: answered v5-style.
    let err = decode(
        &mut buf("100c00064d5149736470050200 1e".replace(' ', "").as_str()),
        None,
        MAX,
    )
    .unwrap_err();
    assert_eq!(err, DecodeError::UnsupportedProtocolVersion(5));
    assert_eq!(err.protocol_hint(), Some(Protocol::V5));
    // Bridge bit (0x84): unsupported.
    assert_eq!(
        decode(&mut buf("100c00044d5154548400001e0000"), None, MAX),
        Err(DecodeError::UnsupportedProtocolVersion(0x84))
    );
}

#[test]
fn connect_flag_rules() {
    for hex_str in [
        "100a00044d5154540403001e",     // reserved bit
        "100a00044d5154540422001e",     // will retain without will
        "100a00044d5154540412001e",     // will QoS without will
        "100a00044d515454041e001e",     // will QoS 3
        "100c00044d5154540442001e0001", // password without user name (v3.1.1)
    ] {
        let err = decode(&mut buf(hex_str), None, MAX).unwrap_err();
        assert!(
            matches!(err.cause(), DecodeError::Malformed(_)),
            "{hex_str}: {err}"
        );
        assert_eq!(err.protocol_hint(), Some(Protocol::V311), "{hex_str}");
        assert_eq!(err.connack_v3(), None);
    }
    // v5 allows a password without a user name.
    let Some(Packet::Connect(c)) = decode(
        &mut buf("1011 00044d515454 05 42 001e 00 0001 63 0001 70"),
        None,
        MAX,
    )
    .unwrap() else {
        panic!()
    };
    assert_eq!(c.username, None);
    assert_eq!(c.password.as_deref(), Some(&b"p"[..]));
}

#[test]
fn connect_client_identifier_rules() {
    // v3.1.1, empty id, clean session 0: CONNACK 0x02.
    let err = decode(&mut buf("100c00044d5154540400001e0000"), None, MAX).unwrap_err();
    assert_eq!(err.cause(), &DecodeError::ClientIdNotValid);
    assert_eq!(err.connack_v3(), Some(connack_v3::IDENTIFIER_REJECTED));
    assert_eq!(err.protocol_hint(), Some(Protocol::V311));
    // v3.1.1, empty id, clean session 1: fine. v5 empty id: fine.
    assert!(decode(&mut buf("100c00044d5154540402001e0000"), None, MAX).is_ok());
    assert!(decode(&mut buf("100d00044d5154540500001e000000"), None, MAX).is_ok());
    // MQTT 3.1 always needs one.
    let err = decode(&mut buf("100e00064d51497364700302001e0000"), None, MAX).unwrap_err();
    assert_eq!(err.connack_v3(), Some(connack_v3::IDENTIFIER_REJECTED));
}

#[test]
fn connect_v5_errors_carry_the_protocol() {
    // Receive Maximum 0.
    let err = decode(
        &mut buf("1010 00044d515454 05 02 001e 03 210000 0000"),
        None,
        MAX,
    )
    .unwrap_err();
    assert_eq!(err.protocol_hint(), Some(Protocol::V5));
    assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    // Will topic with a wildcard.
    let err = decode(
        &mut buf("1014 00044d515454 05 06 001e 00 0001 63 00 0001 23 0000"),
        None,
        MAX,
    )
    .unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::TOPIC_NAME_INVALID);
    // Will payload not UTF-8 under PFI 1.
    let err = decode(
        &mut buf("1017 00044d515454 05 06 001e 00 0001 63 02 0101 0001 74 0001 ff"),
        None,
        MAX,
    )
    .unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::PAYLOAD_FORMAT_INVALID);
    // Authentication data without a method.
    let err = decode(
        &mut buf("1011 00044d515454 05 02 001e 04 16000100 0000"),
        None,
        MAX,
    )
    .unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::PROTOCOL_ERROR);
    // Trailing byte after the payload.
    let err = decode(
        &mut buf("100e 00044d515454 05 02 001e 00 0000 00"),
        None,
        MAX,
    )
    .unwrap_err();
    assert_eq!(err.reason_code(), ReasonCode::MALFORMED_PACKET);
}

#[test]
fn connack_rules() {
    assert!(any("20020205", Protocol::V311).is_err(), "reserved flag");
    assert!(any("20020006", Protocol::V311).is_err(), "return code 6");
    assert!(
        any("20020105", Protocol::V311).is_err(),
        "session present on refusal"
    );
    assert!(
        any("2003008b00", Protocol::V5).is_err(),
        "0x8B not a CONNACK code"
    );
    // A v3.1.1 server's answer to a v5 CONNECT.
    let Some(Packet::ConnAck(c)) = any("20020001", Protocol::V5).unwrap() else {
        panic!()
    };
    assert_eq!(c.reason_code, connack_v3::UNACCEPTABLE_PROTOCOL_VERSION);
    // Maximum QoS 2 is a protocol error (3.2.2.3.4).
    assert!(any("20050000022402", Protocol::V5).is_err());
    assert!(matches!(
        encode(
            &Packet::ConnAck(Box::new(ConnAck {
                reason_code: ReasonCode::NOT_AUTHORIZED,
                ..ConnAck::default()
            })),
            Protocol::V311,
            &mut BytesMut::new()
        ),
        Err(EncodeError::Invalid(_))
    ));
}

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
