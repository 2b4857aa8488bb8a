//! PUBLISH from the client: QoS 0/1/2 receive flows, properties and
//! expiry, retain and subscription-identifier errors, inbound topic aliases.

use std::time::Duration;

use super::*;
use crate::codec::*;

// ---- inbound PUBLISH ----

fn routed(actions: &[Action]) -> Vec<Arc<Message>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Publish(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn inbound_qos0_routes_without_ack() {
    let mut p = pair_v5();
    p.send(publish("a/b", QoS::AtMostOnce, 0, "x"));
    assert!(p.sent.is_empty());
    let m = routed(&p.take_actions());
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].topic, "a/b");
    assert_eq!(m[0].origin.as_deref(), Some("c1"));
}

#[test]
fn inbound_qos1_routes_and_acks() {
    let mut p = pair_v5();
    p.send(publish("a/b", QoS::AtLeastOnce, 7, "x"));
    assert_eq!(p.take_sent(), vec![Packet::PubAck(ack(7))]);
    assert_eq!(routed(&p.take_actions()).len(), 1);
}

#[test]
fn inbound_qos2_exactly_once() {
    let mut p = pair_v5();
    p.send(publish("a/b", QoS::ExactlyOnce, 9, "x"));
    assert_eq!(p.take_sent(), vec![Packet::PubRec(ack(9))]);
    assert_eq!(routed(&p.take_actions()).len(), 1);
    // A resend before PUBREL: acknowledged again, not routed again.
    let Packet::Publish(mut dup) = publish("a/b", QoS::ExactlyOnce, 9, "x") else {
        unreachable!()
    };
    dup.dup = true;
    p.send(Packet::Publish(dup));
    assert_eq!(p.take_sent(), vec![Packet::PubRec(ack(9))]);
    assert!(routed(&p.take_actions()).is_empty());
    p.send(Packet::PubRel(ack(9)));
    assert_eq!(p.take_sent(), vec![Packet::PubComp(ack(9))]);
    // Unknown PUBREL: 0x92 on v5.
    p.send(Packet::PubRel(ack(9)));
    let comp = PubAck {
        reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        ..ack(9)
    };
    assert_eq!(p.take_sent(), vec![Packet::PubComp(comp)]);
    // After PUBREL the id is free: the same id is a new message.
    p.send(publish("a/b", QoS::ExactlyOnce, 9, "y"));
    assert_eq!(routed(&p.take_actions()).len(), 1);
}

#[test]
fn inbound_qos2_unknown_pubrel_v3() {
    let mut p = pair_v3();
    p.send(Packet::PubRel(ack(5)));
    assert_eq!(p.take_sent(), vec![Packet::PubComp(ack(5))]);
}

#[test]
fn inbound_qos2_state_survives_resume() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.send(publish("a", QoS::ExactlyOnce, 3, "x"));
    assert_eq!(routed(&p.take_actions()).len(), 1);
    p.lose();
    p.take_sent();
    p.take_actions();
    p.connect(persistent_v5("c1"));
    p.send(publish("a", QoS::ExactlyOnce, 3, "x"));
    assert!(
        routed(&p.take_actions()).is_empty(),
        "duplicate after resume is not routed"
    );
    p.send(Packet::PubRel(ack(3)));
    assert_eq!(p.take_sent().last(), Some(&Packet::PubComp(ack(3))));
}

#[test]
fn inbound_receive_maximum_exceeded() {
    let mut p = Pair::new(SessionConfig {
        max_inflight: 2,
        ..cfg()
    });
    p.connect(connect_v5("c1"));
    p.send(publish("a", QoS::ExactlyOnce, 1, "x"));
    p.send(publish("a", QoS::ExactlyOnce, 2, "x"));
    assert!(p
        .take_actions()
        .iter()
        .all(|a| matches!(a, Action::Publish(_))));
    p.send(publish("a", QoS::ExactlyOnce, 3, "x"));
    assert_eq!(
        disconnect_sent(&p.sent).unwrap().reason_code,
        ReasonCode::RECEIVE_MAXIMUM_EXCEEDED
    );
    let actions = p.take_actions();
    assert_eq!(routed(&actions).len(), 0);
    assert_eq!(
        close_of(&actions),
        (ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, false)
    );
}

#[test]
fn inbound_qos2_v311_not_limited_by_receive_maximum() {
    // A v3.1.1 client was never told a Receive Maximum: it may keep more
    // QoS 2 messages unreleased than max_inflight without being disconnected.
    let mut p = Pair::new(SessionConfig {
        max_inflight: 2,
        ..cfg()
    });
    p.connect(connect_v3("c1"));
    for id in 1..=10 {
        p.send(publish("a", QoS::ExactlyOnce, id, "x"));
    }
    assert_eq!(routed(&p.take_actions()).len(), 10);
    assert!(disconnect_sent(&p.sent).is_none());
    p.send(Packet::PubRel(ack(7)));
    assert_eq!(p.take_sent().last(), Some(&Packet::PubComp(ack(7))));
}

#[test]
fn inbound_message_properties_and_expiry() {
    let mut p = pair_v5();
    let Packet::Publish(mut publ) = publish("a", QoS::AtMostOnce, 0, "x") else {
        unreachable!()
    };
    publ.retain = true;
    publ.properties
        .get_or_insert_default()
        .message_expiry_interval_s = Some(10);
    publ.properties.get_or_insert_default().content_type = Some(ByteStr::from("text/plain"));
    publ.properties.get_or_insert_default().user_properties =
        vec![(ByteStr::from("k"), ByteStr::from("v"))];
    publ.properties.get_or_insert_default().topic_alias = Some(1);
    p.send(Packet::Publish(publ));
    let m = routed(&p.take_actions()).remove(0);
    assert!(m.retain);
    assert_eq!(m.expires_at, Some(p.now + Duration::from_secs(10)));
    assert_eq!(m.properties().content_type.as_deref(), Some("text/plain"));
    assert_eq!(m.properties().topic_alias, None);
    assert_eq!(m.properties().user_properties.len(), 1);
}

#[test]
fn inbound_retain_when_unavailable() {
    let mut p = Pair::new(SessionConfig {
        retain_available: false,
        ..cfg()
    });
    p.connect(connect_v5("c1"));
    let Packet::Publish(mut publ) = publish("a", QoS::AtMostOnce, 0, "x") else {
        unreachable!()
    };
    publ.retain = true;
    p.send(Packet::Publish(publ));
    assert_eq!(
        disconnect_sent(&p.sent).unwrap().reason_code,
        ReasonCode::RETAIN_NOT_SUPPORTED
    );
}

#[test]
fn inbound_subscription_identifier_is_protocol_error() {
    let mut p = pair_v5();
    let Packet::Publish(mut publ) = publish("a", QoS::AtMostOnce, 0, "x") else {
        unreachable!()
    };
    publ.properties
        .get_or_insert_default()
        .subscription_identifiers
        .push(3);
    p.send(Packet::Publish(publ));
    assert_eq!(close_of(&p.take_actions()).0, ReasonCode::PROTOCOL_ERROR);
}

// ---- inbound topic aliases ----

fn aliased(topic: &str, alias: u16) -> Packet {
    let Packet::Publish(mut publ) = publish(topic, QoS::AtMostOnce, 0, "x") else {
        unreachable!()
    };
    publ.properties.get_or_insert_default().topic_alias = Some(alias);
    Packet::Publish(publ)
}

#[test]
fn inbound_topic_alias_set_use_replace() {
    let mut p = pair_v5();
    p.send(aliased("a/b", 1));
    p.send(aliased("", 1));
    p.send(aliased("c/d", 1));
    p.send(aliased("", 1));
    p.send(aliased("e", 10));
    p.send(aliased("", 10));
    let topics: Vec<_> = routed(&p.take_actions())
        .iter()
        .map(|m| m.topic.to_string())
        .collect();
    assert_eq!(topics, ["a/b", "a/b", "c/d", "c/d", "e", "e"]);
}

#[test]
fn inbound_topic_alias_errors() {
    for (packet, code) in [
        (aliased("a", 0), ReasonCode::TOPIC_ALIAS_INVALID),
        (aliased("a", 11), ReasonCode::TOPIC_ALIAS_INVALID),
        (aliased("", 2), ReasonCode::PROTOCOL_ERROR),
        (
            publish("", QoS::AtMostOnce, 0, "x"),
            ReasonCode::PROTOCOL_ERROR,
        ),
        // A wildcard in a topic name never gets here: the decoder refuses it
        // with 0x90 (codec/tests/publish.rs).
    ] {
        let mut p = pair_v5();
        p.send(packet.clone());
        assert_eq!(
            disconnect_sent(&p.sent).map(|d| d.reason_code),
            Some(code),
            "{packet:?}"
        );
        assert_eq!(close_of(&p.actions).0, code);
    }
    // No aliases announced: any alias is invalid.
    let mut p = Pair::new(SessionConfig {
        max_topic_alias: 0,
        ..cfg()
    });
    p.connect(connect_v5("c1"));
    p.send(aliased("a", 1));
    assert_eq!(close_of(&p.actions).0, ReasonCode::TOPIC_ALIAS_INVALID);
}

#[test]
fn inbound_topic_aliases_reset_per_connection() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.send(aliased("a", 1));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    p.take_actions();
    p.connect(persistent_v5("c1"));
    p.send(aliased("", 1));
    assert_eq!(close_of(&p.actions).0, ReasonCode::PROTOCOL_ERROR);
}
