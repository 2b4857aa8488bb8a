//! A session that ends hands back the shared QoS 1/2 messages it did not
//! deliver (MQTT 5.0 section 4.8.2): which ones, in what order, and when
//! it keeps them instead.

use crate::router::SharedKey;

use super::*;

fn group() -> Arc<SharedKey> {
    Arc::new(SharedKey {
        group: ByteStr::from("g"),
        filter: ByteStr::from("t"),
    })
}

fn shared(qos: QoS, payload: &str, key: &Arc<SharedKey>) -> Delivery {
    Delivery {
        shared: Some(key.clone()),
        ..delivery("t", qos, payload)
    }
}

fn payloads(ds: &[Delivery]) -> Vec<String> {
    ds.iter()
        .map(|d| String::from_utf8(d.message.payload.to_vec()).unwrap())
        .collect()
}

fn window_of(n: u16) -> Pair {
    Pair::new(SessionConfig {
        max_inflight: n,
        ..cfg()
    })
}

#[test]
fn ending_session_yields_unacknowledged_and_queued_shared_qos12() {
    let key = group();
    let mut p = window_of(2);
    p.connect(connect_v5("c1"));
    for s in ["s1", "s2", "s3", "s4"] {
        p.deliver(shared(QoS::AtLeastOnce, s, &key));
    }
    p.deliver(delivery("t", QoS::AtLeastOnce, "ordinary"));
    p.deliver(shared(QoS::AtMostOnce, "qos0", &key));
    let sent = p.publishes();
    assert_eq!(payloads_of(&sent), ["s1", "s2"]);
    // s1 acknowledged: delivered; s3 takes its window slot and is sent.
    p.send(Packet::PubAck(ack(sent[0].packet_id)));
    assert_eq!(payloads_of(&p.publishes()), ["s3"]);

    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    assert!(p.parked.is_none(), "clean session ends");
    // Inflight in the order sent, then the queue; not the ordinary
    // subscription's message, not QoS 0.
    assert_eq!(payloads(&p.redispatched), ["s2", "s3", "s4"]);
    assert!(p
        .redispatched
        .iter()
        .all(|d| d.shared.as_ref().is_some_and(|k| Arc::ptr_eq(k, &key))));
}

#[test]
fn qos2_past_pubrec_is_not_redispatched() {
    let key = group();
    let mut p = window_of(4);
    p.connect(connect_v5("c1"));
    for s in ["a", "b", "c"] {
        p.deliver(shared(QoS::ExactlyOnce, s, &key));
    }
    let sent = p.publishes();
    assert_eq!(payloads_of(&sent), ["a", "b", "c"]);
    // The client has `a` (PUBREC): it must not be delivered twice. `b`
    // has gone the whole way (PUBCOMP). `c` has no answer.
    p.send(Packet::PubRec(ack(sent[0].packet_id)));
    p.send(Packet::PubRec(ack(sent[1].packet_id)));
    p.send(Packet::PubComp(ack(sent[1].packet_id)));
    p.take_sent();
    p.lose();
    assert_eq!(payloads(&p.redispatched), ["c"]);
}

#[test]
fn qos2_without_pubrec_and_queued_are_redispatched() {
    let key = group();
    let mut p = window_of(1);
    p.connect(connect_v5("c1"));
    p.deliver(shared(QoS::ExactlyOnce, "a", &key));
    p.deliver(shared(QoS::ExactlyOnce, "b", &key));
    assert_eq!(payloads_of(&p.publishes()), ["a"]);
    p.lose();
    assert_eq!(payloads(&p.redispatched), ["a", "b"]);
}

#[test]
fn session_that_outlives_the_connection_keeps_them_until_it_ends() {
    let key = group();
    let mut p = window_of(1);
    p.connect(persistent_v5("c1"));
    p.deliver(shared(QoS::AtLeastOnce, "a", &key));
    p.deliver(shared(QoS::AtLeastOnce, "b", &key));
    p.lose();
    assert!(p.redispatched.is_empty(), "the client may come back");
    let mut s = p.parked.take().expect("parked");
    assert_eq!(s.inflight_len() + s.queued_len(), 2);
    // Expiry (or a takeover with clean start) ends it: the shard takes them.
    assert_eq!(payloads(&s.take_shared_undelivered()), ["a", "b"]);
    assert_eq!(s.inflight_len() + s.queued_len(), 0);
    assert_eq!(s.dropped_messages(), 0, "handed back, not dropped");
}

#[test]
fn admin_kick_ends_the_session_and_yields_them() {
    let key = group();
    let mut p = window_of(1);
    p.connect(persistent_v5("c1"));
    p.deliver(shared(QoS::AtLeastOnce, "a", &key));
    p.deliver(shared(QoS::AtLeastOnce, "b", &key));
    p.conn()
        .kick_ending_session(ReasonCode::ADMINISTRATIVE_ACTION);
    p.pump();
    assert!(p.parked.is_none());
    assert_eq!(payloads(&p.redispatched), ["a", "b"]);
}

fn payloads_of(ps: &[Publish]) -> Vec<String> {
    ps.iter()
        .map(|p| String::from_utf8(p.payload.to_vec()).unwrap())
        .collect()
}
