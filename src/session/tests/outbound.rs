//! Messages to the client: QoS 1/2 flows, packet ids, properties passed
//! through, the inflight window and the queue policy.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::codec::*;

// ---- outbound QoS ----

#[test]
fn outbound_qos1_flow() {
    let mut p = pair_v5();
    p.deliver(delivery("t", QoS::AtLeastOnce, "m1"));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 1);
    assert_eq!(pubs[0].qos, QoS::AtLeastOnce);
    assert!(!pubs[0].dup);
    assert_ne!(pubs[0].packet_id, 0);
    assert_eq!(p.conn().session().inflight_len(), 1);
    p.send(Packet::PubAck(ack(pubs[0].packet_id + 100))); // unknown: ignored
    assert!(p.sent.is_empty());
    assert_eq!(p.conn().session().inflight_len(), 1);
    p.send(Packet::PubAck(ack(pubs[0].packet_id)));
    assert_eq!(p.conn().session().inflight_len(), 0);
}

#[test]
fn outbound_qos2_flow() {
    let mut p = pair_v5();
    p.deliver(delivery("t", QoS::ExactlyOnce, "m1"));
    let id = p.publishes()[0].packet_id;
    p.send(Packet::PubRec(ack(id)));
    assert_eq!(p.take_sent(), vec![Packet::PubRel(ack(id))]);
    p.send(Packet::PubRec(ack(id))); // repeated: PUBREL again
    assert_eq!(p.take_sent(), vec![Packet::PubRel(ack(id))]);
    p.send(Packet::PubComp(ack(id)));
    assert_eq!(p.conn().session().inflight_len(), 0);
    // Unknown PUBREC: PUBREL 0x92 (v5).
    p.send(Packet::PubRec(ack(77)));
    let rel = PubAck {
        reason_code: ReasonCode::PACKET_IDENTIFIER_NOT_FOUND,
        ..ack(77)
    };
    assert_eq!(p.take_sent(), vec![Packet::PubRel(rel)]);
}

#[test]
fn outbound_pubrec_error_ends_flow() {
    let mut p = pair_v5();
    p.deliver(delivery("t", QoS::ExactlyOnce, "m1"));
    let id = p.publishes()[0].packet_id;
    p.send(Packet::PubRec(PubAck {
        reason_code: ReasonCode::QUOTA_EXCEEDED,
        ..ack(id)
    }));
    assert!(p.sent.is_empty(), "no PUBREL after an error PUBREC");
    assert_eq!(p.conn().session().inflight_len(), 0);
}

#[test]
fn outbound_unknown_pubrec_ignored_v3() {
    let mut p = pair_v3();
    p.send(Packet::PubRec(ack(77)));
    assert!(p.sent.is_empty());
}

#[test]
fn outbound_qos0_has_no_packet_id() {
    let mut p = pair_v5();
    p.deliver(delivery("t", QoS::AtMostOnce, "m"));
    let pubs = p.publishes();
    assert_eq!((pubs[0].qos, pubs[0].packet_id), (QoS::AtMostOnce, 0));
    assert_eq!(p.conn().session().inflight_len(), 0);
}

#[test]
fn packet_ids_skip_zero_and_ids_in_flight() {
    let mut p = pair_v5();
    p.deliver(delivery("t", QoS::AtLeastOnce, "a"));
    let first = p.publishes()[0].packet_id;
    // Force the allocator to wrap around onto ids in use.
    p.conn().session.next_packet_id = u16::MAX;
    for i in 0..3 {
        p.deliver(delivery("t", QoS::AtLeastOnce, &format!("{i}")));
    }
    let ids: Vec<u16> = p.publishes().iter().map(|x| x.packet_id).collect();
    assert_eq!(first, 1);
    assert_eq!(ids, [u16::MAX, 2, 3], "0 and the in-flight 1 are skipped");
}

#[test]
fn outbound_properties_passed_through_v5() {
    let mut p = pair_v5();
    let m = Arc::new(Message {
        topic: ByteStr::from("t"),
        payload: Bytes::from_static(b"p"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval_s: Some(999), // recomputed from expires_at
            content_type: Some(ByteStr::from("ct")),
            response_topic: Some(ByteStr::from("rt")),
            correlation_data: Some(Bytes::from_static(b"cd")),
            user_properties: vec![
                (ByteStr::from("a"), ByteStr::from("1")),
                (ByteStr::from("b"), ByteStr::from("2")),
            ],
            ..PublishProperties::default()
        }
        .boxed(),
        origin: Some(crate::session::Origin::new(&ByteStr::from("other"))),
        id: None,
        expires_at: Some(p.now + Duration::from_millis(4500)),
    });
    p.deliver(Delivery {
        message: m.clone(),
        qos: QoS::AtLeastOnce,
        retain: false,
        subscription_ids: [4, 9].into_iter().collect(),
        shared: None,
    });
    let out = p.publishes().remove(0);
    assert_eq!(out.qos, QoS::AtLeastOnce);
    assert!(!out.retain);
    assert_eq!(out.topic, "t");
    let pr = out.properties();
    assert_eq!(pr.payload_format_indicator, Some(1));
    assert_eq!(pr.message_expiry_interval_s, Some(5));
    assert_eq!(pr.content_type.as_deref(), Some("ct"));
    assert_eq!(pr.response_topic.as_deref(), Some("rt"));
    assert_eq!(pr.correlation_data.as_deref(), Some(&b"cd"[..]));
    assert_eq!(pr.user_properties, m.properties().user_properties);
    assert_eq!(pr.subscription_identifiers.as_slice(), &[4, 9]);

    // 3.1.1: no properties at all.
    let mut p = pair_v3();
    p.deliver(Delivery {
        message: m,
        qos: QoS::AtLeastOnce,
        retain: true,
        subscription_ids: [4].into_iter().collect(),
        shared: None,
    });
    let out = p.publishes().remove(0);
    assert!(out.retain);
    assert!(out.properties.is_none());
}

// ---- flow control and queue ----

#[test]
fn outbound_window_is_client_receive_maximum() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.receive_maximum = Some(2)
    }));
    for i in 0..4 {
        p.deliver(delivery("t", QoS::AtLeastOnce, &format!("{i}")));
    }
    p.deliver(delivery("t", QoS::AtMostOnce, "q0"));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 2, "window of 2");
    assert_eq!(
        p.conn().session().queued_len(),
        3,
        "QoS 0 waits behind the others (order)"
    );
    p.send(Packet::PubAck(ack(pubs[0].packet_id)));
    let more = p.publishes();
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].payload, "2");
    p.send(Packet::PubAck(ack(pubs[1].packet_id)));
    p.send(Packet::PubAck(ack(more[0].packet_id)));
    let rest: Vec<_> = p.publishes().iter().map(|x| x.payload.clone()).collect();
    assert_eq!(rest, ["3", "q0"]);
}

#[test]
fn outbound_window_capped_by_config() {
    let mut p = Pair::new(SessionConfig {
        max_inflight: 3,
        ..cfg()
    });
    p.connect(connect_v5("c1"));
    for i in 0..5 {
        p.deliver(delivery("t", QoS::ExactlyOnce, &format!("{i}")));
    }
    assert_eq!(p.publishes().len(), 3);
    // QoS 0 does not use the window, but waits behind queued messages.
    assert_eq!(p.conn().session().queued_len(), 2);
}

#[test]
fn qos0_bypasses_full_window_when_queue_empty() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.receive_maximum = Some(1)
    }));
    p.deliver(delivery("t", QoS::AtLeastOnce, "a"));
    p.deliver(delivery("t", QoS::AtMostOnce, "b"));
    assert_eq!(p.publishes().len(), 2);
}

fn fill_queue(p: &mut Pair, qos: &[QoS]) {
    for (i, q) in qos.iter().enumerate() {
        p.deliver(delivery("t", *q, &format!("{i}")));
    }
}

#[test]
fn queue_policy_drops_oldest_qos0_first() {
    let mut p = Pair::new(SessionConfig {
        max_mqueue_len: 3,
        ..cfg()
    });
    p.connect(persistent_v5("c1"));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    use QoS::*;
    fill_queue(&mut p, &[AtLeastOnce, AtMostOnce, AtMostOnce]);
    p.deliver(delivery("t", ExactlyOnce, "new"));
    let s = p.parked.as_ref().unwrap();
    assert_eq!(queued_payloads(s), ["0", "2", "new"]);
    assert_eq!(s.dropped_messages(), 1);
    assert_eq!(s.drop_counts().queue_full, 1);
}

#[test]
fn queue_policy_drops_new_when_no_qos0() {
    use QoS::*;
    for new_qos in [AtMostOnce, AtLeastOnce, ExactlyOnce] {
        let mut p = Pair::new(SessionConfig {
            max_mqueue_len: 2,
            ..cfg()
        });
        p.connect(persistent_v5("c1"));
        p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
        fill_queue(&mut p, &[AtLeastOnce, ExactlyOnce]);
        p.deliver(delivery("t", new_qos, "new"));
        let s = p.parked.as_ref().unwrap();
        assert_eq!(queued_payloads(s), ["0", "1"], "{new_qos:?}");
        assert_eq!(s.dropped_messages(), 1);
    }
}

#[test]
fn queue_policy_online_behind_full_window() {
    let mut p = Pair::new(SessionConfig {
        max_mqueue_len: 1,
        ..cfg()
    });
    p.connect(with_props(connect_v5("c1"), |p| {
        p.receive_maximum = Some(1)
    }));
    fill_queue(
        &mut p,
        &[QoS::AtLeastOnce, QoS::AtLeastOnce, QoS::AtLeastOnce],
    );
    assert_eq!(p.publishes().len(), 1);
    assert_eq!(p.conn().session().queued_len(), 1);
    assert_eq!(p.conn().dropped_messages(), 1);
}

#[test]
fn offline_qos0_is_queued_and_delivered_on_resume() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    assert!(p.parked.is_some());
    fill_queue(
        &mut p,
        &[QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce],
    );
    let ack = p.connect(persistent_v5("c1"));
    assert!(ack.session_present);
    let pubs = p.publishes();
    let got: Vec<_> = pubs
        .iter()
        .map(|x| (x.payload.clone(), x.qos, x.dup))
        .collect();
    assert_eq!(
        got,
        [
            (Bytes::from("0"), QoS::AtMostOnce, false),
            (Bytes::from("1"), QoS::AtLeastOnce, false),
            (Bytes::from("2"), QoS::ExactlyOnce, false)
        ]
    );
}

#[test]
fn qos0_transmit_queue_is_bounded() {
    let mut p = Pair::new(SessionConfig {
        max_mqueue_len: 10,
        ..cfg()
    });
    p.connect(connect_v5("c1"));
    let now = p.now;
    // The shard does not poll (socket backed up).
    for i in 0..TX_QOS0_MAX + 20 {
        p.conn()
            .handle_delivery(delivery("t", QoS::AtMostOnce, &format!("{i}")), now);
    }
    assert_eq!(p.conn().session().queued_len(), 10);
    assert_eq!(p.conn().dropped_messages(), 10);
    p.pump();
    let pubs = p.publishes();
    assert_eq!(pubs.len(), TX_QOS0_MAX + 10);
    // Order kept: the transmit queue first, then the queue (newest 10 kept,
    // since each overflow dropped the oldest queued QoS 0).
    assert_eq!(
        pubs[TX_QOS0_MAX - 1].payload,
        format!("{}", TX_QOS0_MAX - 1)
    );
    assert_eq!(pubs[TX_QOS0_MAX].payload, format!("{}", TX_QOS0_MAX + 10));
}
