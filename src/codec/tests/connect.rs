//! CONNECT and CONNACK.

use super::*;

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
