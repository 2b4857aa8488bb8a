//! Back-pressure on the queue side (`session::pressure`): an online
//! subscriber that keeps reading takes QoS 1/2 messages past its queue
//! bound and says it is congested; stalled, or offline, it drops.

use super::*;
use crate::session::pressure::{StallClock, MQUEUE_OVERSHOOT_MAX};

fn backpressure_cfg(queue_len_max: usize) -> SessionConfig {
    SessionConfig {
        max_mqueue_len: queue_len_max,
        max_publisher_hold_ms: 1000,
        ..cfg()
    }
}

/// A v5 subscriber with a window of one message and a queue of `queue_len_max`.
fn subscriber(queue_len_max: usize) -> Pair {
    let mut p = Pair::new(backpressure_cfg(queue_len_max));
    p.connect(with_props(connect_v5("sub"), |p| {
        p.receive_maximum = Some(1)
    }));
    p.take_sent();
    p
}

fn deliver_n(p: &mut Pair, qos: QoS, n: usize) {
    for i in 0..n {
        p.deliver(delivery("t", qos, &format!("{i}")));
    }
}

/// Acknowledges every PUBLISH sent so far (and those it lets out).
fn ack_all(p: &mut Pair) {
    loop {
        let pubs = p.publishes();
        if pubs.is_empty() {
            return;
        }
        for x in pubs {
            p.send(Packet::PubAck(ack(x.packet_id)));
        }
    }
}

#[test]
fn reading_subscriber_queues_past_the_bound_and_is_relieved_at_half() {
    let mut p = subscriber(4);
    // One in the window, four queued: full, not yet congested.
    deliver_n(&mut p, QoS::AtLeastOnce, 5);
    assert!(!p.conn().is_congested());
    deliver_n(&mut p, QoS::ExactlyOnce, 3);
    assert!(p.conn().is_congested());
    assert_eq!(p.conn().session().queued_len(), 7);
    assert_eq!(p.conn().dropped_messages(), 0);
    assert!(!p.conn().poll_relieved(), "7 queued, relieved at 2");
    // Acks drain the queue one message at a time.
    let mut relieved_at = None;
    for _ in 0..6 {
        let sent = p.publishes();
        assert_eq!(sent.len(), 1);
        let progress = p.conn().progress();
        if sent[0].qos == QoS::ExactlyOnce {
            p.send(Packet::PubRec(ack(sent[0].packet_id)));
            p.send(Packet::PubComp(ack(sent[0].packet_id)));
        } else {
            p.send(Packet::PubAck(ack(sent[0].packet_id)));
        }
        assert!(p.conn().progress() > progress, "an ack is progress");
        if p.conn().poll_relieved() {
            relieved_at.get_or_insert(p.conn().session().queued_len());
        }
    }
    assert_eq!(relieved_at, Some(2), "relieved once, at half the bound");
    assert!(!p.conn().is_congested());
    assert!(!p.conn().poll_relieved(), "once");
}

#[test]
fn qos0_keeps_the_plain_policy() {
    let mut p = subscriber(2);
    // One in the window, then a QoS 1 and a QoS 0 queued: full.
    deliver_n(&mut p, QoS::AtLeastOnce, 2);
    deliver_n(&mut p, QoS::AtMostOnce, 1);
    // A QoS 1 newcomer replaces the QoS 0.
    deliver_n(&mut p, QoS::AtLeastOnce, 1);
    assert!(!p.conn().is_congested());
    assert_eq!(p.conn().drop_counts().queue_full, 1);
    // A QoS 0 newcomer to a full queue is dropped, congesting nothing.
    deliver_n(&mut p, QoS::AtMostOnce, 1);
    assert!(!p.conn().is_congested());
    assert_eq!(p.conn().drop_counts().queue_full, 2);
    assert_eq!(p.conn().session().queued_len(), 2);
}

#[test]
fn stalled_subscriber_drops_until_it_drains_to_half() {
    let mut p = subscriber(4);
    deliver_n(&mut p, QoS::AtLeastOnce, 6);
    assert!(p.conn().is_congested());
    p.conn().stall();
    assert!(
        !p.conn().is_congested(),
        "a stalled subscriber holds nobody"
    );
    deliver_n(&mut p, QoS::AtLeastOnce, 3);
    assert_eq!(p.conn().session().queued_len(), 5);
    assert_eq!(p.conn().drop_counts().queue_full, 3);
    // It reads again: at half its bound it is back to normal, and a full
    // queue congests it again.
    ack_all(&mut p);
    assert!(p.conn().poll_relieved());
    deliver_n(&mut p, QoS::AtLeastOnce, 6);
    assert!(p.conn().is_congested());
}

#[test]
fn overshoot_is_bounded() {
    let mut p = subscriber(1);
    deliver_n(&mut p, QoS::AtLeastOnce, 2 + MQUEUE_OVERSHOOT_MAX + 5);
    assert_eq!(
        p.conn().session().queued_len(),
        1 + MQUEUE_OVERSHOOT_MAX,
        "one in the window, the bound and the overshoot queued"
    );
    assert_eq!(p.conn().drop_counts().queue_full, 5);
}

#[test]
fn no_backpressure_when_the_hold_is_zero() {
    let mut p = Pair::new(SessionConfig {
        max_publisher_hold_ms: 0,
        ..backpressure_cfg(2)
    });
    p.connect(with_props(connect_v5("sub"), |p| {
        p.receive_maximum = Some(1)
    }));
    deliver_n(&mut p, QoS::AtLeastOnce, 5);
    assert!(!p.conn().is_congested());
    assert_eq!(p.conn().session().queued_len(), 2);
    assert_eq!(p.conn().drop_counts().queue_full, 2);
}

#[test]
fn offline_session_keeps_the_bound() {
    let mut p = Pair::new(backpressure_cfg(2));
    p.connect(persistent_v5("sub"));
    p.send(disconnect(ReasonCode::NORMAL_DISCONNECTION));
    deliver_n(&mut p, QoS::AtLeastOnce, 5);
    let s = p.parked.as_ref().unwrap();
    assert_eq!(s.queued_len(), 2);
    assert_eq!(s.drop_counts().queue_full, 3);
}

#[test]
fn closed_connection_is_not_congested() {
    let mut p = subscriber(1);
    deliver_n(&mut p, QoS::AtLeastOnce, 4);
    assert!(p.conn().is_congested());
    p.conn().kick(ReasonCode::SERVER_SHUTTING_DOWN);
    assert!(!p.conn().is_congested());
}

/// The shard's tick on a simulated clock: a congested subscriber that
/// acknowledges is never stalled; one that stops is, after the hold.
#[test]
fn stall_clock_follows_acknowledgements() {
    let hold = Duration::from_millis(1000);
    let tick = Duration::from_millis(100);
    let mut p = subscriber(2);
    deliver_n(&mut p, QoS::AtLeastOnce, 40);
    assert!(p.conn().is_congested());
    let mut clock = StallClock::new(p.conn().progress(), p.now);
    // Reading: one ack per 300 ms, slower than the tick, far from idle
    // for the hold.
    for i in 0..30 {
        p.advance(tick);
        if i % 3 == 2 {
            let sent = p.publishes();
            p.send(Packet::PubAck(ack(sent[0].packet_id)));
        }
        let (progress, now) = (p.conn().progress(), p.now);
        assert!(!clock.is_stalled(progress, now, hold), "tick {i}");
    }
    // Stopped: stalled on the tick that completes the hold.
    for i in 1..=10 {
        p.advance(tick);
        let (progress, now) = (p.conn().progress(), p.now);
        assert_eq!(clock.is_stalled(progress, now, hold), i == 10, "tick {i}");
    }
}
