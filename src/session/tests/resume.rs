//! A session resumed by a later connection (resends, DUP, the window),
//! session expiry set by DISCONNECT, and keepalive.

use std::time::Duration;

use bytes::Bytes;

use super::*;
use crate::codec::*;

// ---- resume ----

#[test]
fn resume_resends_in_original_order_with_dup() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.deliver(delivery("t", QoS::AtLeastOnce, "a"));
    p.deliver(delivery("t", QoS::ExactlyOnce, "b"));
    p.deliver(delivery("t", QoS::ExactlyOnce, "c"));
    p.deliver(delivery("t", QoS::AtLeastOnce, "d"));
    let pubs = p.publishes();
    let ids: Vec<u16> = pubs.iter().map(|x| x.packet_id).collect();
    p.send(Packet::PubRec(ack(ids[1]))); // b -> PUBREC'd
    p.take_sent();
    p.send(Packet::PubAck(ack(ids[3]))); // d done
    p.lose();
    p.deliver(delivery("t", QoS::AtLeastOnce, "e")); // offline
    let ack = p.connect(persistent_v5("c1"));
    assert!(ack.session_present);
    let sent = p.take_sent();
    let expect = [
        Packet::Publish(Publish {
            dup: true,
            ..pubs[0].clone()
        }),
        Packet::PubRel(super::ack(ids[1])),
        Packet::Publish(Publish {
            dup: true,
            ..pubs[2].clone()
        }),
    ];
    assert_eq!(sent[..3], expect[..]);
    let Packet::Publish(e) = &sent[3] else {
        panic!("{sent:?}")
    };
    assert_eq!((e.payload.as_ref(), e.dup), (&b"e"[..], false));
    assert!(!ids.contains(&e.packet_id) || e.packet_id == ids[3]);
    assert_eq!(sent.len(), 4);
}

#[test]
fn resume_untransmitted_publish_has_no_dup() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    let now = p.now;
    p.conn()
        .handle_delivery(delivery("t", QoS::AtLeastOnce, "a"), now);
    p.lose(); // before the shard polled it out
    assert_eq!(p.parked.as_ref().unwrap().inflight_len(), 1);
    p.connect(persistent_v5("c1"));
    let pubs = p.publishes();
    assert_eq!(pubs.len(), 1);
    assert!(!pubs[0].dup);
}

#[test]
fn resume_respects_smaller_window() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    for i in 0..4 {
        p.deliver(delivery("t", QoS::AtLeastOnce, &format!("{i}")));
    }
    let first = p.publishes();
    p.lose();
    let mut c = persistent_v5("c1");
    c.properties.receive_maximum = Some(2);
    p.connect(c);
    let resent = p.publishes();
    assert_eq!(resent.len(), 2);
    assert!(resent.iter().all(|x| x.dup));
    p.send(Packet::PubAck(ack(resent[0].packet_id)));
    let next = p.publishes();
    assert_eq!(next.len(), 1);
    assert_eq!((next[0].packet_id, next[0].dup), (first[2].packet_id, true));
}

#[test]
fn clean_start_discards_session() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.send(subscribe(1, vec![sub("a", QoS::AtLeastOnce)]));
    p.deliver(delivery("t", QoS::AtLeastOnce, "a"));
    p.lose();
    p.take_sent();
    let mut c = persistent_v5("c1");
    c.clean_start = true;
    let ack = p.connect(c);
    assert!(!ack.session_present);
    assert!(p.sent.is_empty());
    assert_eq!(p.conn().session().subscriptions().count(), 0);
}

#[test]
fn v3_persistent_session() {
    let mut p = Pair::new(cfg());
    let mut c = connect_v3("c1");
    c.clean_start = false;
    p.connect(c.clone());
    assert_eq!(p.conn().session().expiry_interval_s(), 3600);
    p.send(subscribe(1, vec![sub("a", QoS::AtLeastOnce)]));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    assert!(p.parked.is_some());
    assert!(p.connect(c).session_present);

    // Clean session 1: ends with the connection.
    let mut p = Pair::new(cfg());
    p.connect(connect_v3("c1"));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    assert!(p.parked.is_none());
}

// ---- session expiry on DISCONNECT ----

#[test]
fn disconnect_changes_session_expiry() {
    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.session_expiry_interval_s = Some(1)
    }));
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval_s = Some(0);
    p.send(Packet::Disconnect(Box::new(d)));
    assert!(p.parked.is_none(), "expiry lowered to 0: session ends");

    let mut p = Pair::new(cfg());
    p.connect(with_props(connect_v5("c1"), |p| {
        p.session_expiry_interval_s = Some(1)
    }));
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval_s = Some(99999);
    p.send(Packet::Disconnect(Box::new(d)));
    assert_eq!(
        p.parked.as_ref().unwrap().expiry_interval_s(),
        3600,
        "capped"
    );
}

#[test]
fn disconnect_cannot_raise_expiry_from_zero() {
    let mut p = pair_v5();
    let mut d = Disconnect::default();
    d.properties.session_expiry_interval_s = Some(10);
    p.send(Packet::Disconnect(Box::new(d)));
    assert_eq!(
        disconnect_sent(&p.sent).unwrap().reason_code,
        ReasonCode::PROTOCOL_ERROR
    );
    assert!(p.parked.is_none());
}

// ---- keepalive ----

#[test]
fn keepalive_timeout_closes_with_will() {
    let mut p = Pair::new(cfg());
    let mut c = connect_v5("c1");
    c.keep_alive_s = 10;
    c.will = Some(Will {
        topic: ByteStr::from("will"),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties: WillProperties::default(),
    });
    p.connect(c);
    let start = p.now;
    assert_eq!(
        p.conn().poll_timeout(),
        Some(start + Duration::from_secs(15))
    );
    p.advance(Duration::from_secs(14));
    p.send(Packet::PingReq); // resets the timer
    assert_eq!(
        p.conn().poll_timeout(),
        Some(start + Duration::from_secs(29))
    );
    p.advance(Duration::from_secs(14));
    assert!(p.conn.is_some());
    p.advance(Duration::from_secs(1));
    assert!(p.conn.is_none());
    assert_eq!(
        disconnect_sent(&p.sent).unwrap().reason_code,
        ReasonCode::KEEP_ALIVE_TIMEOUT
    );
    assert_eq!(close_of(&p.actions), (ReasonCode::KEEP_ALIVE_TIMEOUT, true));
    assert_eq!(p.wills.len(), 1);
    assert_eq!(p.wills[0].0.payload, "gone");
}

#[test]
fn keepalive_zero_has_no_timeout() {
    let mut p = Pair::new(SessionConfig {
        server_keepalive_s: None,
        ..cfg()
    });
    let mut c = connect_v5("c1");
    c.keep_alive_s = 0;
    p.connect(c);
    assert_eq!(p.conn().poll_timeout(), None);
    p.advance(Duration::from_secs(100_000));
    assert!(p.conn.is_some());
}
