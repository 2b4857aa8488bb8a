//! The end of a connection: the will and its delay, takeover, the one
//! Close, and deliveries that reach a session while it changes hands.

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::*;
use crate::codec::*;

// ---- will ----

fn will_connect(delay_s: Option<u32>, expiry_s: u32) -> Connect {
    let mut c = with_props(connect_v5("c1"), |p| {
        p.session_expiry_interval_s = Some(expiry_s)
    });
    c.will = Some(Will {
        topic: ByteStr::from("will/t"),
        payload: Bytes::from_static(b"bye"),
        qos: QoS::ExactlyOnce,
        retain: true,
        properties: WillProperties {
            will_delay_interval_s: delay_s,
            payload_format_indicator: Some(1),
            message_expiry_interval_s: Some(100),
            content_type: Some(ByteStr::from("ct")),
            response_topic: Some(ByteStr::from("rt")),
            correlation_data: Some(Bytes::from_static(b"cd")),
            user_properties: vec![
                (ByteStr::from("a"), ByteStr::from("2")),
                (ByteStr::from("c"), ByteStr::from("3")),
            ],
        },
    });
    c
}

#[test]
fn will_on_connection_lost_carries_properties() {
    let mut p = Pair::new(cfg());
    p.connect(will_connect(Some(5), 60));
    p.advance(Duration::from_secs(2));
    p.lose();
    assert!(close_of(&p.actions).1);
    let (m, delay) = p.wills.remove(0);
    assert_eq!(delay, Duration::from_secs(5));
    assert_eq!(m.topic, "will/t");
    assert_eq!(m.payload, "bye");
    assert_eq!(m.qos, QoS::ExactlyOnce);
    assert!(m.retain);
    assert_eq!(m.origin.as_deref(), Some("c1"));
    let pr = m.properties();
    assert_eq!(pr.payload_format_indicator, Some(1));
    assert_eq!(pr.content_type.as_deref(), Some("ct"));
    assert_eq!(pr.response_topic.as_deref(), Some("rt"));
    assert_eq!(pr.correlation_data.as_deref(), Some(&b"cd"[..]));
    assert_eq!(pr.user_properties.len(), 2);
    assert_eq!(pr.message_expiry_interval_s, Some(100));
    assert_eq!(m.expires_at, Some(p.now + Duration::from_secs(105)));
}

#[test]
fn will_delay_capped_by_session_expiry() {
    for (delay, expiry, expect) in [
        (Some(5), 2, 2),
        (Some(5), 0, 0),
        (None, 60, 0),
        (Some(3), 5, 3),
    ] {
        let mut p = Pair::new(cfg());
        p.connect(will_connect(delay, expiry));
        p.lose();
        assert_eq!(
            p.wills.remove(0).1,
            Duration::from_secs(expect),
            "{delay:?} {expiry}"
        );
    }
}

#[test]
fn will_not_published_on_normal_disconnect() {
    let mut p = Pair::new(cfg());
    p.connect(will_connect(None, 0));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    assert_eq!(
        close_of(&p.actions),
        (ReasonCode::NORMAL_DISCONNECTION, false)
    );
    assert!(p.wills.is_empty());
    assert!(p.sent.is_empty(), "no DISCONNECT back to the client");
}

#[test]
fn will_published_on_disconnect_with_will() {
    let mut p = Pair::new(cfg());
    p.connect(will_connect(None, 0));
    p.send(disconnect(ReasonCode::DISCONNECT_WITH_WILL_MESSAGE));
    assert_eq!(
        close_of(&p.actions),
        (ReasonCode::DISCONNECT_WITH_WILL_MESSAGE, true)
    );
    assert_eq!(p.wills.len(), 1);
}

#[test]
fn will_published_on_protocol_error_and_kick() {
    let mut p = Pair::new(cfg());
    p.connect(will_connect(None, 0));
    p.send(Packet::Auth(Box::default()));
    assert_eq!(p.wills.len(), 1);

    let mut p = Pair::new(cfg());
    p.connect(will_connect(None, 0));
    p.conn().kick(ReasonCode::SERVER_SHUTTING_DOWN);
    p.pump();
    assert_eq!(
        disconnect_sent(&p.sent).unwrap().reason_code,
        ReasonCode::SERVER_SHUTTING_DOWN
    );
    assert_eq!(
        close_of(&p.actions),
        (ReasonCode::SERVER_SHUTTING_DOWN, true)
    );
    assert_eq!(p.wills.len(), 1);
}

#[test]
fn will_on_takeover() {
    // (will delay, session expiry, new connection clean start) -> delay published, if any
    for (delay, expiry, clean, expect) in [
        (Some(10), 60, false, None),   // resumed before the delay: cancelled
        (Some(10), 60, true, Some(0)), // session ends: now
        (None, 60, false, Some(0)),    // no delay: now
        (Some(10), 0, false, Some(0)), // session ends with the connection
    ] {
        let mut p = Pair::new(cfg());
        p.connect(will_connect(delay, expiry));
        p.conn().takeover(clean);
        p.pump();
        assert_eq!(
            disconnect_sent(&p.sent).unwrap().reason_code,
            ReasonCode::SESSION_TAKEN_OVER
        );
        assert_eq!(
            close_of(&p.actions),
            (ReasonCode::SESSION_TAKEN_OVER, expect.is_some())
        );
        let got = p.wills.first().map(|w| w.1.as_secs());
        assert_eq!(got, expect, "{delay:?} {expiry} {clean}");
    }
}

#[test]
fn takeover_v3_sends_nothing() {
    let mut p = pair_v3();
    p.conn().takeover(false);
    p.pump();
    assert!(p.sent.is_empty());
    assert_eq!(close_of(&p.actions).0, ReasonCode::SESSION_TAKEN_OVER);
}

#[test]
fn close_happens_once() {
    let mut p = pair_v5();
    let now = p.now;
    let c = p.conn();
    c.kick(ReasonCode::ADMINISTRATIVE_ACTION);
    c.handle_connection_lost(now);
    c.handle_packet(Packet::PingReq, now);
    c.kick(ReasonCode::SERVER_SHUTTING_DOWN);
    assert!(c.is_closed());
    p.pump();
    assert_eq!(close_of(&p.actions).0, ReasonCode::ADMINISTRATIVE_ACTION);
    assert_eq!(p.sent.len(), 1, "only the DISCONNECT: {:?}", p.sent);
}

#[test]
fn delivery_after_close_goes_to_session() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    let now = p.now;
    p.conn().kick(ReasonCode::SERVER_SHUTTING_DOWN);
    p.conn()
        .handle_delivery(delivery("t", QoS::AtLeastOnce, "late"), now);
    p.pump();
    assert!(matches!(p.sent.last(), Some(Packet::Disconnect(_))));
    assert_eq!(p.parked.as_ref().unwrap().queued_len(), 1);
}

#[test]
fn untransmitted_qos0_counted_on_close() {
    let mut p = pair_v5();
    let now = p.now;
    p.conn()
        .handle_delivery(delivery("t", QoS::AtMostOnce, "x"), now);
    p.conn()
        .handle_delivery(delivery("t", QoS::AtLeastOnce, "y"), now);
    let c = p.conn.take().unwrap();
    let mut c = c;
    c.handle_connection_lost(now);
    assert_eq!(c.drop_counts().closed, 1);
    assert!(transmit(&mut c, now).is_none(), "no PUBLISH after close");
}

#[test]
fn session_is_send() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Session>();
    assert_send::<Delivery>();
    assert_send::<Action>();
}

/// Issue 11 item 7: between the takeover's kick and the moment the shard
/// takes the session out of the closed connection, deliveries still reach
/// the connection; they must stay in the session for the new connection.
#[test]
fn delivery_after_takeover_stays_in_the_session() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    p.deliver(delivery("t", QoS::AtLeastOnce, "sent"));
    let first = p.publishes();
    assert_eq!(first.len(), 1);
    p.conn().takeover(false);
    let now = p.now;
    // The shard has not yet seen the Close: the connection is still where
    // deliveries are routed.
    for payload in ["late-1", "late-2"] {
        p.conn()
            .handle_delivery(delivery("t", QoS::AtLeastOnce, payload), now);
    }
    p.pump();
    assert!(p.conn.is_none(), "closed and parked");
    assert_eq!(
        disconnect_sent(&p.take_sent()).unwrap().reason_code,
        ReasonCode::SESSION_TAKEN_OVER
    );
    assert_eq!(
        queued_payloads(p.parked.as_ref().unwrap()),
        ["late-1", "late-2"]
    );
    assert!(p.connect(persistent_v5("c1")).session_present);
    let got: Vec<_> = p
        .publishes()
        .iter()
        .map(|x| (x.payload.clone(), x.dup))
        .collect();
    assert_eq!(
        got,
        [
            (Bytes::from("sent"), true),
            (Bytes::from("late-1"), false),
            (Bytes::from("late-2"), false)
        ]
    );
}

/// A session moved between shards gets what the old shard's subscriptions
/// delivered after it left, then what the new shard's delivered, and a
/// message both delivered (the same routed `Arc`) once.
#[test]
fn deliver_moved_queues_each_message_once_old_shard_first() {
    let mut s = Session::new(ByteStr::from("c1"), 60, 100);
    let both = delivery("t", QoS::AtLeastOnce, "both");
    let twin = Delivery {
        message: both.message.clone(),
        ..both.clone()
    };
    // Equal content, another message: not a duplicate.
    let lookalike = delivery("t", QoS::AtLeastOnce, "both");
    let old_shard = vec![
        delivery("t", QoS::AtLeastOnce, "old-1"),
        both,
        delivery("t", QoS::AtMostOnce, "old-2"),
    ];
    let here = vec![twin, lookalike, delivery("t", QoS::AtLeastOnce, "new")];
    s.deliver_moved(old_shard, here, Instant::now());
    assert_eq!(
        queued_payloads(&s),
        ["old-1", "old-2", "both", "both", "new"]
    );
}
