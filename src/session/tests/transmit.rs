//! What `poll_transmit` applies to each packet as it is written: message
//! expiry, outbound topic aliases, the client's Maximum Packet Size.

use std::time::{Duration, Instant};

use super::*;
use crate::codec::*;

// ---- message expiry ----

fn expiring(topic: &str, qos: QoS, payload: &str, at: Instant) -> Delivery {
    let mut m = Message::clone_for_test(&message(topic, qos, payload));
    m.expires_at = Some(at);
    Delivery {
        message: Arc::new(m),
        qos,
        retain: false,
        subscription_ids: Default::default(),
        shared: None,
    }
}

#[test]
fn expired_delivery_is_dropped() {
    let mut p = pair_v5();
    let now = p.now;
    p.deliver(expiring("t", QoS::AtLeastOnce, "x", now));
    assert!(p.sent.is_empty());
    assert_eq!(p.conn().drop_counts().expired, 1);
}

#[test]
fn message_expires_while_queued() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.lose();
    let now = p.now;
    p.deliver(expiring(
        "t",
        QoS::AtLeastOnce,
        "short",
        now + Duration::from_secs(5),
    ));
    p.deliver(expiring(
        "t",
        QoS::AtLeastOnce,
        "long",
        now + Duration::from_secs(60),
    ));
    p.now += Duration::from_millis(5500);
    p.connect(persistent_v5("c1"));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 1);
    assert_eq!(pubs[0].payload, "long");
    assert_eq!(pubs[0].properties().message_expiry_interval_s, Some(55));
    assert_eq!(p.conn().drop_counts().expired, 1);
}

#[test]
fn inflight_expiry_untransmitted_dropped_transmitted_resent() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    let now = p.now;
    let at = now + Duration::from_secs(5);
    p.deliver(expiring("t", QoS::ExactlyOnce, "sent", at));
    assert_eq!(p.publishes().len(), 1);
    // Admitted to the window but not yet written when the connection drops.
    p.conn()
        .handle_delivery(expiring("t", QoS::ExactlyOnce, "unsent", at), now);
    p.lose();
    assert_eq!(p.parked.as_ref().unwrap().inflight_len(), 2);
    p.now += Duration::from_secs(6);
    p.connect(persistent_v5("c1"));
    // Onward delivery of "sent" had started: resent; "unsent" expired.
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 1);
    assert_eq!(
        (pubs[0].payload.as_ref(), pubs[0].dup),
        (&b"sent"[..], true)
    );
    assert_eq!(pubs[0].properties().message_expiry_interval_s, Some(1));
    assert_eq!(p.conn().drop_counts().expired, 1);
    assert_eq!(p.conn().session().inflight_len(), 1);
}

// ---- outbound topic aliases ----

#[test]
fn outbound_topic_aliases() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.topic_alias_maximum = Some(1)
    }));
    for (t, q) in [
        ("a", QoS::AtMostOnce),
        ("a", QoS::AtLeastOnce),
        ("b", QoS::ExactlyOnce),
        ("a", QoS::AtMostOnce),
    ] {
        p.deliver(delivery(t, q, "x"));
    }
    let got: Vec<_> = p
        .publishes()
        .iter()
        .map(|x| (x.topic.to_string(), x.properties().topic_alias))
        .collect();
    assert_eq!(
        got,
        [
            ("a".into(), Some(1)),
            ("".into(), Some(1)),
            ("b".into(), None),
            ("".into(), Some(1))
        ]
    );
}

#[test]
fn outbound_topic_aliases_off_and_reset() {
    // Client allows none.
    let mut p = pair_v5();
    p.deliver(delivery("a", QoS::AtMostOnce, "x"));
    p.deliver(delivery("a", QoS::AtMostOnce, "x"));
    assert!(p
        .publishes()
        .iter()
        .all(|x| x.properties().topic_alias.is_none() && x.topic == "a"));
    // Reset per connection.
    let mut p = Pair::new(cfg());
    let c = with_props(persistent_v5("c1"), |p| p.topic_alias_maximum = Some(5));
    p.connect(c.clone());
    p.deliver(delivery("a", QoS::AtMostOnce, "x"));
    p.lose();
    p.connect(c);
    p.deliver(delivery("a", QoS::AtMostOnce, "x"));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 2);
    assert_eq!(
        (pubs[1].topic.as_str(), pubs[1].properties().topic_alias),
        ("a", Some(1))
    );
}

#[test]
fn resend_after_resume_reestablishes_alias() {
    let mut p = Pair::new(cfg());
    let c = with_props(persistent_v5("c1"), |p| p.topic_alias_maximum = Some(5));
    p.connect(c.clone());
    p.deliver(delivery("a", QoS::AtLeastOnce, "1"));
    p.deliver(delivery("a", QoS::AtLeastOnce, "2"));
    let pubs = p.publishes();
    assert_eq!(pubs[1].topic, "");
    p.lose();
    p.connect(c);
    let pubs = p.publishes();
    assert_eq!(
        (pubs[0].topic.as_str(), pubs[0].properties().topic_alias),
        ("a", Some(1))
    );
    assert_eq!(
        (pubs[1].topic.as_str(), pubs[1].properties().topic_alias),
        ("", Some(1))
    );
}

// ---- client Maximum Packet Size ----

#[test]
fn too_large_publish_dropped_and_completed() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.maximum_packet_size = Some(64);
        p.receive_maximum = Some(1);
    }));
    let big = "x".repeat(100);
    p.deliver(delivery("t", QoS::AtLeastOnce, &big));
    p.deliver(delivery("t", QoS::AtLeastOnce, "small"));
    p.deliver(delivery("t", QoS::AtMostOnce, &big));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 1);
    assert_eq!(pubs[0].payload, "small");
    assert_eq!(p.conn().drop_counts().too_large, 2);
    assert_eq!(p.conn().dropped_messages(), 2);
}

#[test]
fn too_large_on_resend_completes_qos1_and_releases_qos2() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    let big = "x".repeat(100);
    p.deliver(delivery("t", QoS::AtLeastOnce, &big));
    p.deliver(delivery("t", QoS::ExactlyOnce, &big));
    let first = p.publishes();
    assert_eq!(first.len(), 2);
    p.lose();
    // The new connection accepts only small packets.
    p.connect(with_props(persistent_v5("c1"), |p| {
        p.maximum_packet_size = Some(64)
    }));
    // QoS 1 completes silently; QoS 2 moves on to PUBREL so the client frees
    // the id it may hold. Both were transmitted once: not counted as dropped.
    assert_eq!(p.take_sent(), vec![Packet::PubRel(ack(first[1].packet_id))]);
    assert_eq!(p.conn().session().inflight_len(), 1);
    assert_eq!(p.conn().dropped_messages(), 0);
    p.send(Packet::PubComp(ack(first[1].packet_id)));
    assert_eq!(p.conn().session().inflight_len(), 0);
}

#[test]
fn too_large_alias_setting_publish_does_not_commit_alias() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.maximum_packet_size = Some(40);
        p.topic_alias_maximum = Some(2);
    }));
    p.deliver(delivery("t", QoS::AtMostOnce, &"x".repeat(40)));
    p.deliver(delivery("t", QoS::AtMostOnce, "s"));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 1);
    assert_eq!(
        (pubs[0].topic.as_str(), pubs[0].properties().topic_alias),
        ("t", Some(1))
    );
}

#[test]
fn disconnect_reason_string_stripped_when_too_large() {
    // 24 bytes: the CONNACK fits exactly, the DISCONNECT with its Reason
    // String ("session expiry raised from 0", 35 bytes) does not.
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.maximum_packet_size = Some(24)
    }));
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval_s = Some(10);
    p.send(Packet::Disconnect(Box::new(d)));
    let d = disconnect_sent(&p.sent).unwrap();
    assert_eq!(d.reason_code, ReasonCode::PROTOCOL_ERROR);
    assert_eq!(d.properties.reason_string, None);
}

#[test]
fn oversized_suback_closes_with_0x95() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.maximum_packet_size = Some(24)
    }));
    // A SUBACK of 30 reason codes is 35 bytes.
    let filters = (0..30)
        .map(|i| sub(&format!("f{i}"), QoS::AtMostOnce))
        .collect();
    p.send(subscribe(1, filters));
    assert!(!p.sent.iter().any(|x| matches!(x, Packet::SubAck(_))));
    assert_eq!(
        disconnect_sent(&p.sent).unwrap().reason_code,
        ReasonCode::PACKET_TOO_LARGE
    );
}
