//! SUBSCRIBE, UNSUBSCRIBE and SUBACK.

use super::*;

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
