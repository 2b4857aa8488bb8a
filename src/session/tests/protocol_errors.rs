//! Issue 11: acknowledgements of the wrong type, and the CONNACK (only
//! non-default properties, made to fit the client's Maximum Packet Size).

use super::*;
use crate::codec::*;

fn closes(p: &Pair) -> Vec<(ReasonCode, bool)> {
    p.actions
        .iter()
        .filter_map(|a| match a {
            Action::Close { reason, will } => Some((*reason, *will)),
            _ => None,
        })
        .collect()
}

fn packet(kind: AckKind, id: u16) -> Packet {
    match kind {
        AckKind::PubAck => Packet::PubAck(ack(id)),
        AckKind::PubRec => Packet::PubRec(ack(id)),
        AckKind::PubRel => Packet::PubRel(ack(id)),
        AckKind::PubComp => Packet::PubComp(ack(id)),
    }
}

/// (QoS delivered, answered with PUBREC first, then the wrong ack).
const WRONG: [(QoS, bool, AckKind); 5] = [
    (QoS::AtLeastOnce, false, AckKind::PubRec),
    (QoS::AtLeastOnce, false, AckKind::PubComp),
    (QoS::ExactlyOnce, false, AckKind::PubAck),
    (QoS::ExactlyOnce, false, AckKind::PubComp),
    // A PUBREL answered with PUBACK.
    (QoS::ExactlyOnce, true, AckKind::PubAck),
];

#[test]
fn wrong_type_ack_is_a_protocol_error() {
    for v5 in [true, false] {
        for (qos, pubrec_first, wrong) in WRONG {
            let case = format!("v5={v5} {qos:?} pubrec_first={pubrec_first} {wrong:?}");
            let mut p = Pair::new(cfg());
            p.connect(if v5 { connect_v5("c") } else { connect_v3("c") });
            p.take_sent();
            p.deliver(delivery("t", qos, "m"));
            let id = p.publishes()[0].packet_id;
            if pubrec_first {
                p.send(Packet::PubRec(ack(id)));
                assert_eq!(p.take_sent(), vec![Packet::PubRel(ack(id))], "{case}");
            }
            p.send(packet(wrong, id));
            assert!(p.conn.is_none(), "closed: {case}");
            // (No will was set: `will` false.)
            assert_eq!(closes(&p), [(ReasonCode::PROTOCOL_ERROR, false)], "{case}");
            let sent = p.take_sent();
            if v5 {
                assert!(
                    matches!(sent.as_slice(), [Packet::Disconnect(d)] if d.reason_code == ReasonCode::PROTOCOL_ERROR),
                    "{case}: {sent:?}"
                );
            } else {
                assert!(sent.is_empty(), "{case}: {sent:?}");
            }
        }
    }
}

#[test]
fn acks_for_unknown_ids_are_tolerated() {
    for v5 in [true, false] {
        let mut p = Pair::new(cfg());
        p.connect(if v5 { connect_v5("c") } else { connect_v3("c") });
        p.take_sent();
        for kind in [AckKind::PubAck, AckKind::PubRec, AckKind::PubComp] {
            p.send(packet(kind, 4242));
        }
        assert!(p.conn.is_some(), "v5={v5}: still connected");
        assert!(closes(&p).is_empty());
    }
}

#[test]
fn right_acks_still_complete_with_a_window_of_one() {
    let mut p = Pair::new(SessionConfig {
        max_inflight: 1,
        ..cfg()
    });
    p.connect(connect_v5("c"));
    p.take_sent();
    p.deliver(delivery("t", QoS::ExactlyOnce, "a"));
    p.deliver(delivery("t", QoS::AtLeastOnce, "b"));
    let a = p.publishes()[0].packet_id;
    p.send(Packet::PubRec(ack(a)));
    p.send(Packet::PubComp(ack(a)));
    let sent = p.take_sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    let Packet::Publish(b) = &sent[1] else {
        panic!("{sent:?}")
    };
    p.send(Packet::PubAck(ack(b.packet_id)));
    assert_eq!(p.conn().session().inflight_len(), 0);
}

// ---- CONNACK ----

#[test]
fn connack_announces_only_what_differs_from_the_defaults() {
    let no_features = SessionConfig {
        retain_available: false,
        wildcard_subscription_available: false,
        shared_subscription_available: false,
        ..cfg()
    };
    let pr = Pair::new(no_features).connect(connect_v5("c")).properties;
    assert_eq!(pr.retain_available, Some(0));
    assert_eq!(pr.wildcard_subscription_available, Some(0));
    assert_eq!(pr.shared_subscription_available, Some(0));
    assert_eq!(pr.subscription_identifiers_available, None);

    let defaults = SessionConfig {
        max_inflight: u16::MAX,
        max_packet_size: crate::limits::PACKET_SIZE_MAX_BYTES,
        max_topic_alias: 0,
        ..cfg()
    };
    let mut c = connect_v5("c");
    c.keep_alive_s = 60; // = the Server Keep Alive cap of cfg()
    let ack = Pair::new(defaults).connect(c);
    assert_eq!(ack.properties, ConnAckProperties::default());
    assert_eq!(
        encoded_len(&Packet::ConnAck(Box::new(ack)), Protocol::V5),
        5
    );
}

#[test]
fn connack_fits_a_small_maximum_packet_size() {
    // cfg(): Receive Maximum 16, Maximum Packet Size 1 MiB, Topic Alias
    // Maximum 10 and a Server Keep Alive (client asks 30, cap 60: not sent).
    let c = with_max(connect_v5("c"), 16);
    assert_eq!(Connection::check_connack_fits(&c, &cfg(), None), Ok(()));
    let ack = Pair::new(cfg()).connect(c);
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(
        encoded_len(&Packet::ConnAck(Box::new(ack)), Protocol::V5),
        16
    );
}

fn with_max(mut c: Connect, max: u32) -> Connect {
    c.properties.maximum_packet_size = Some(max);
    c
}

#[test]
fn connack_that_cannot_fit_is_refused() {
    let cfg = cfg();
    // One byte short of the 16-byte CONNACK: a 5-byte refusal fits.
    let refusal = Connection::check_connack_fits(&with_max(connect_v5("c"), 15), &cfg, None)
        .expect_err("too small")
        .expect("the reason code alone fits");
    assert_eq!(
        refusal.reason_code,
        ReasonCode::IMPLEMENTATION_SPECIFIC_ERROR
    );
    let len = encoded_len(&Packet::ConnAck(Box::new(refusal)), Protocol::V5);
    assert_eq!(len, 5, "reason string dropped to fit");
    // Its Reason String goes out when there is room.
    let big = with_max(connect_v5(""), 60);
    let assigned = ByteStr::from("assigned-".repeat(9));
    let refusal = Connection::check_connack_fits(&big, &cfg, Some(&assigned))
        .expect_err("the assigned id does not fit")
        .expect("fits");
    assert!(refusal.properties.reason_string.is_some());
    // Below 5 bytes nothing can be sent.
    for max in 1..5 {
        let c = with_max(connect_v5("c"), max);
        assert_eq!(Connection::check_connack_fits(&c, &cfg, None), Err(None));
    }
    // 3.1.1 has no Maximum Packet Size.
    let v3 = with_max(connect_v3("c"), 3);
    assert_eq!(Connection::check_connack_fits(&v3, &cfg, None), Ok(()));
}

#[test]
fn refusals_lose_optional_properties_to_fit() {
    let redirect = ConnAck {
        session_present: false,
        reason_code: ReasonCode::USE_ANOTHER_SERVER,
        properties: ConnAckProperties {
            server_reference: Some(ByteStr::from("far-away.example.net:1883")),
            reason_string: Some(ByteStr::from("full")),
            ..ConnAckProperties::default()
        },
    };
    let roomy = with_max(connect_v5("c"), 100);
    assert_eq!(
        Connection::fit_refusal(redirect.clone(), &roomy),
        Some(redirect.clone())
    );
    let fitted = Connection::fit_refusal(redirect.clone(), &with_max(connect_v5("c"), 35))
        .expect("fits without the reason string");
    assert!(fitted.properties.reason_string.is_none());
    assert!(fitted.properties.server_reference.is_some());
    let bare = Connection::fit_refusal(redirect.clone(), &with_max(connect_v5("c"), 5))
        .expect("the reason code alone");
    assert_eq!(bare.properties, ConnAckProperties::default());
    assert_eq!(bare.reason_code, ReasonCode::USE_ANOTHER_SERVER);
    assert_eq!(
        Connection::fit_refusal(redirect, &with_max(connect_v5("c"), 4)),
        None
    );
}

#[test]
fn connack_too_large_at_accept_closes_without_sending() {
    // Accepted without `check_connack_fits` (which would have refused it):
    // no DISCONNECT before the CONNACK, no will.
    let mut c = with_max(connect_v5("c"), 8);
    c.will = Some(Will {
        topic: ByteStr::from("w"),
        payload: Bytes::from_static(b"x"),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    let mut p = Pair::new(cfg());
    let now = p.now;
    p.conn = Some(Connection::accept(
        c,
        ByteStr::from("c"),
        false,
        None,
        &Arc::new(cfg()),
        now,
    ));
    p.pump();
    assert!(p.sent.is_empty(), "{:?}", p.sent);
    assert_eq!(closes(&p), [(ReasonCode::PACKET_TOO_LARGE, false)]);
    assert!(p.wills.is_empty());
}

#[test]
fn mqtt31_connack_has_no_session_present() {
    let ack = ConnAck {
        session_present: true,
        ..ConnAck::default()
    };
    let mut out = BytesMut::new();
    let packet = Packet::ConnAck(Box::new(ack));
    encode(&packet, Protocol::V31, &mut out).unwrap();
    assert_eq!(&out[..], b"\x20\x02\x00\x00");
    out.clear();
    encode(&packet, Protocol::V311, &mut out).unwrap();
    assert_eq!(&out[..], b"\x20\x02\x01\x00");
}

#[test]
fn connack_carries_a_server_reference_when_it_fits() {
    let accept = |c: Connect| {
        let now = Instant::now();
        Connection::accept(c, ByteStr::from("c"), false, None, &Arc::new(cfg()), now)
    };
    let refs = "127.0.0.1:1883 127.0.0.2:1883";
    let mut p = Pair::new(cfg());
    let mut conn = accept(connect_v5("c"));
    assert!(conn.set_connack_server_reference(ByteStr::from(refs)));
    p.conn = Some(conn);
    p.pump();
    let Some(Packet::ConnAck(ack)) = p.sent.first() else {
        panic!("{:?}", p.sent)
    };
    assert_eq!(ack.reason_code, ReasonCode::SUCCESS);
    assert_eq!(ack.properties.server_reference.as_deref(), Some(refs));
    // 3.1.1 has no properties; a client's small Maximum Packet Size keeps
    // the CONNACK without it.
    let mut v3 = connect_v5("c");
    v3.protocol = Protocol::V311;
    assert!(!accept(v3).set_connack_server_reference(ByteStr::from(refs)));
    assert!(
        !accept(with_max(connect_v5("c"), 20)).set_connack_server_reference(ByteStr::from(refs))
    );
}
