//! The store bounds of durable sessions (`session::store_quota`): a
//! delivery past `max_session_size` or the shard's share of
//! `max_store_size` is dropped and counted; an online subscriber that keeps
//! reading is congested at half its bound first; the bytes leave the
//! shard's total with the deliveries and with the session.

use super::*;
use crate::session::journal::take_notes;
use crate::session::store_quota::{self, delivery_bytes, Quota};

/// 64 + 1 (topic "t") + 100 (payload): one delivery's store bytes.
const ONE: u64 = 165;

fn payload(i: usize) -> String {
    format!("{i:0>100}")
}

/// A durable v5 subscriber with a window of one message.
fn durable_subscriber(c: SessionConfig) -> Pair {
    let mut p = Pair::new(c);
    p.connect(with_props(persistent_v5("d"), |p| {
        p.receive_maximum = Some(1)
    }));
    p.conn().session_mut().make_durable(7);
    p.take_sent();
    take_notes();
    p
}

/// The bounds and totals are the thread's: each test gets a fresh thread
/// (the test harness may run tests one after another on one thread).
fn on_a_thread_of_its_own(f: impl FnOnce() + Send + 'static) {
    std::thread::spawn(f).join().expect("the test passed");
}

fn deliver_n(p: &mut Pair, n: usize) {
    for i in 0..n {
        p.deliver(delivery("t", QoS::AtLeastOnce, &payload(i)));
    }
}

#[test]
fn a_delivery_costs_its_topic_payload_and_a_record() {
    assert_eq!(
        delivery_bytes(&delivery("t", QoS::AtLeastOnce, &payload(0))),
        ONE
    );
    assert_eq!(
        delivery_bytes(&delivery("t", QoS::AtMostOnce, &payload(0))),
        0
    );
}

#[test]
fn past_its_session_bound_a_durable_session_drops_and_counts() {
    on_a_thread_of_its_own(|| {
        store_quota::configure(Quota {
            session_max_bytes: 3 * ONE,
            shard_max_bytes: u64::MAX,
        });
        let mut p = durable_subscriber(cfg());
        deliver_n(&mut p, 5);
        let s = p.conn().session();
        assert_eq!(s.stored_bytes(), 3 * ONE, "one inflight, two queued");
        assert_eq!(s.drop_counts().queue_full, 2);
        assert_eq!(store_quota::usage().stored_bytes, 3 * ONE);
        assert_eq!(store_quota::usage().refused_session, 2);
        // An acknowledgement frees one delivery's bytes: the next one fits.
        let first = p.publishes();
        p.send(Packet::PubAck(ack(first[0].packet_id)));
        assert_eq!(p.conn().session().stored_bytes(), 2 * ONE);
        p.deliver(delivery("t", QoS::AtLeastOnce, &payload(9)));
        assert_eq!(p.conn().session().stored_bytes(), 3 * ONE);
        assert_eq!(p.conn().session().drop_counts().queue_full, 2);
        // QoS 0 is never stored: the bound does not apply to it.
        p.deliver(delivery("t", QoS::AtMostOnce, &payload(10)));
        assert_eq!(p.conn().session().drop_counts().queue_full, 2);
    });
}

#[test]
fn the_shards_share_bounds_every_durable_session_of_the_shard() {
    on_a_thread_of_its_own(|| {
        store_quota::configure(Quota {
            session_max_bytes: u64::MAX,
            shard_max_bytes: 2 * ONE,
        });
        let mut p = durable_subscriber(cfg());
        deliver_n(&mut p, 4);
        assert_eq!(p.conn().session().stored_bytes(), 2 * ONE);
        assert_eq!(store_quota::usage().refused_shard, 2);
        assert_eq!(store_quota::usage().refused_session, 0);
    });
}

#[test]
fn a_session_that_is_not_durable_is_not_bounded_by_the_store() {
    on_a_thread_of_its_own(|| {
        store_quota::configure(Quota {
            session_max_bytes: ONE,
            shard_max_bytes: ONE,
        });
        let mut p = Pair::new(cfg());
        p.connect(persistent_v5("n"));
        p.take_sent();
        deliver_n(&mut p, 5);
        assert_eq!(p.conn().session().drop_counts().queue_full, 0);
        assert_eq!(store_quota::usage().stored_bytes, 0);
    });
}

#[test]
fn a_reading_subscriber_is_congested_at_half_its_session_bound() {
    on_a_thread_of_its_own(|| {
        store_quota::configure(Quota {
            session_max_bytes: 8 * ONE,
            shard_max_bytes: u64::MAX,
        });
        let mut p = durable_subscriber(SessionConfig {
            max_publisher_hold_ms: 1000,
            ..cfg()
        });
        // One inflight, three queued: half the bound (4 x ONE), not past it.
        deliver_n(&mut p, 4);
        assert!(!p.conn().is_congested());
        // The fifth passes half: congested (its publishers pause), still queued.
        deliver_n(&mut p, 1);
        assert!(p.conn().is_congested());
        assert_eq!(p.conn().session().drop_counts().queue_full, 0);
        assert_eq!(p.conn().session().stored_bytes(), 5 * ONE);
        // Draining to a quarter of the bound relieves it.
        let mut relieved = false;
        for _ in 0..5 {
            for x in p.publishes() {
                p.send(Packet::PubAck(ack(x.packet_id)));
            }
            relieved |= p.conn().poll_relieved();
        }
        assert!(relieved);
        assert_eq!(p.conn().session().stored_bytes(), 0);
    });
}

#[test]
fn the_bytes_leave_the_shards_total_with_the_session() {
    on_a_thread_of_its_own(|| {
        store_quota::configure(Quota::UNBOUNDED);
        let mut p = durable_subscriber(cfg());
        deliver_n(&mut p, 3);
        assert_eq!(store_quota::usage().stored_bytes, 3 * ONE);
        // A new epoch (the session written whole again) counts it once.
        p.conn().session_mut().make_durable(8);
        assert_eq!(store_quota::usage().stored_bytes, 3 * ONE);
        p.conn().session_mut().forget_durable();
        assert_eq!(store_quota::usage().stored_bytes, 0);
        p.conn().session_mut().make_durable(9);
        assert_eq!(store_quota::usage().stored_bytes, 3 * ONE);
        drop(p);
        assert_eq!(store_quota::usage().stored_bytes, 0);
    });
}
