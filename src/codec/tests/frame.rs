//! The frame check: incomplete frames, the size cap, reserved flags.

use super::*;

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
