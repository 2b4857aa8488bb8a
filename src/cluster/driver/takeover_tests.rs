//! Two nodes' takeover glue wired together by hand: the claims, the jobs
//! the shards get, and what reaches the new owner.

use bytes::Bytes;
use tokio::sync::oneshot;

use super::*;
use crate::limits::TAKEOVER_LINGER_MS;
use crate::session::snapshot::MessageSnapshot;

const A: NodeId = NodeId(1);
const B: NodeId = NodeId(2);
const T0: u64 = 1_000_000;

struct Pair {
    a: TakeoverGlue,
    b: TakeoverGlue,
    now_ms: u64,
}

impl Pair {
    fn new() -> Pair {
        let mut a = TakeoverGlue::new(A, Role::Core);
        let mut b = TakeoverGlue::new(B, Role::Core);
        a.handle_member_up(B, Role::Core, T0);
        b.handle_member_up(A, Role::Core, T0);
        let mut p = Pair { a, b, now_ms: T0 };
        p.run();
        p
    }

    fn node(&mut self, n: NodeId) -> &mut TakeoverGlue {
        if n == A {
            &mut self.a
        } else {
            &mut self.b
        }
    }

    /// Delivers frames both ways until none is left.
    fn run(&mut self) {
        loop {
            let mut moved = false;
            for from in [A, B] {
                while let Some((to, m)) = self.node(from).poll_transmit() {
                    moved = true;
                    assert_ne!(to, from, "a frame to itself left the glue");
                    let now = self.now_ms;
                    assert!(self.node(to).handle_message(from, m, now).is_none());
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        let now = self.now_ms;
        self.a.handle_timeout(now);
        self.b.handle_timeout(now);
        self.run();
    }

    fn claim(&mut self, n: NodeId, shard: u16) -> oneshot::Receiver<ClaimOutcome> {
        let (tx, rx) = oneshot::channel();
        let now = self.now_ms;
        self.node(n)
            .handle_claim("c".into(), Location::new(n, shard), tx, now);
        self.run();
        rx
    }
}

fn delivery(payload: &'static [u8]) -> DeliverySnapshot {
    DeliverySnapshot {
        message: MessageSnapshot {
            topic: "t".into(),
            payload: Bytes::from_static(payload),
            qos: 1,
            retain: false,
            payload_format_indicator: None,
            message_expiry_interval_s: None,
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
            content_type: None,
            origin: None,
            expires_at_unix_ms: None,
        },
        qos: 1,
        retain: false,
        subscription_ids: Vec::new(),
        id: None,
    }
}

/// The session starts on A (shard 0), then its id connects on B (shard 1).
/// Returns B's claim, answered `Import`, and A's export job done.
fn move_to_b(p: &mut Pair) -> oneshot::Receiver<Vec<DeliverySnapshot>> {
    let mut first = p.claim(A, 0);
    assert!(matches!(first.try_recv(), Ok(ClaimOutcome::Local)));
    let mut second = p.claim(B, 1);
    assert!(second.try_recv().is_err(), "answered before A exported");
    match p.a.poll_job() {
        Some(ShardJob::Export {
            client_id,
            shard: 0,
            to,
        }) if client_id == "c" => assert_eq!(to, Location::new(B, 1)),
        other => panic!("A's shard was not asked to export: {other:?}"),
    }
    let snapshot = Some(Bytes::from_static(b"snapshot"));
    let now = p.now_ms;
    p.a.handle_job_done(
        JobDone::Exported {
            client_id: "c".into(),
            snapshot: snapshot.clone(),
        },
        now,
    );
    p.run();
    match second.try_recv() {
        Ok(ClaimOutcome::Import { snapshot: s }) => assert_eq!(s, snapshot),
        other => panic!("B did not import: {other:?}"),
    }
    let (held, held_rx) = oneshot::channel();
    p.b.handle_imported("c".into(), held, now);
    p.run();
    held_rx
}

#[test]
fn a_session_moves_with_what_the_previous_owner_held_in_order() {
    let mut p = Pair::new();
    let mut held_rx = move_to_b(&mut p);
    // A lingers: nothing is handed over before the linger ends.
    assert!(p.a.poll_job().is_none());
    p.advance(TAKEOVER_LINGER_MS);
    let Some(ShardJob::EndExport {
        client_id,
        shard: 0,
        send_to: Some((to, epoch)),
    }) = p.a.poll_job()
    else {
        panic!("A's shard was not told to end the export");
    };
    assert_eq!(to, B);
    assert!(
        held_rx.try_recv().is_err(),
        "B went online before A's held deliveries"
    );
    let held: Vec<DeliverySnapshot> = (0..600).map(|_| delivery(b"x")).collect();
    let mut held = held;
    held[0] = delivery(b"first");
    held[599] = delivery(b"last");
    let now = p.now_ms;
    p.a.handle_job_done(
        JobDone::Held {
            client_id,
            to,
            epoch,
            held,
        },
        now,
    );
    p.run();
    // Three frames of held deliveries, one list in the order A held them.
    let got = held_rx.try_recv().expect("B got what A held");
    assert_eq!(got.len(), 600);
    assert_eq!(&got[0].message.payload[..], b"first");
    assert_eq!(&got[599].message.payload[..], b"last");
    // B owns the id now: a connect back on A takes it from B's shard 1.
    let _back = p.claim(A, 0);
    match p.b.poll_job() {
        Some(ShardJob::Export { shard: 1, to, .. }) => assert_eq!(to, Location::new(A, 0)),
        other => panic!("B's shard was not asked to export: {other:?}"),
    }
}

#[test]
fn a_connect_behind_a_move_of_its_id_waits_for_the_move() {
    let mut p = Pair::new();
    let _held = move_to_b(&mut p);
    // A still holds for the moved session: a new connect of the id on A
    // waits instead of claiming beside the move.
    let mut again = p.claim(A, 0);
    assert!(again.try_recv().is_err());
    assert!(p.b.poll_job().is_none());
    p.advance(TAKEOVER_LINGER_MS);
    let Some(ShardJob::EndExport {
        client_id,
        send_to: Some((to, epoch)),
        ..
    }) = p.a.poll_job()
    else {
        panic!("no end of export");
    };
    let now = p.now_ms;
    p.a.handle_job_done(
        JobDone::Held {
            client_id,
            to,
            epoch,
            held: Vec::new(),
        },
        now,
    );
    p.run();
    // The move ended: the waiting connect claimed, and B is kicked.
    assert!(matches!(p.b.poll_job(), Some(ShardJob::Export { .. })));
}

#[test]
fn a_previous_owner_declared_down_gives_a_fresh_start() {
    let mut p = Pair::new();
    let mut first = p.claim(A, 0);
    assert!(matches!(first.try_recv(), Ok(ClaimOutcome::Local)));
    let now = p.now_ms;
    p.b.handle_member_down(A, now);
    let mut second = p.claim(B, 0);
    // B is every id's home now, and A's sessions died with it.
    assert!(matches!(second.try_recv(), Ok(ClaimOutcome::Local)));
    assert!(p.b.poll_job().is_none());
}

#[test]
fn a_session_that_ended_is_not_exported() {
    let mut p = Pair::new();
    let _first = p.claim(A, 0);
    p.run();
    assert_eq!(p.a.home_ids() + p.b.home_ids(), 1, "the home records A");
    p.a.handle_session_ended("c", Location::new(A, 0), T0);
    p.run();
    assert_eq!(
        p.a.home_ids() + p.b.home_ids(),
        0,
        "the home forgot the ended session"
    );
    let mut second = p.claim(B, 0);
    assert!(p.a.poll_job().is_none(), "an ended session was exported");
    // The home knows no owner: a fresh session, no round trip to A.
    assert!(matches!(second.try_recv(), Ok(ClaimOutcome::Local)));
}

#[test]
fn a_claim_lost_with_its_link_is_sent_again_on_the_new_one() {
    let mut p = Pair::new();
    let id = (0..)
        .map(|i| format!("lost{i}"))
        .find(|id| p.a.homes.home_of(id) == Some(B))
        .expect("some id lives at B");
    let (tx, mut rx) = oneshot::channel();
    p.a.handle_claim(id, Location::new(A, 0), tx, T0);
    // The claim dies with the link.
    while p.a.poll_transmit().is_some() {}
    p.run();
    assert!(rx.try_recv().is_err(), "no answer without the claim");
    p.a.handle_link_renewed(B, T0);
    p.run();
    assert!(matches!(rx.try_recv(), Ok(ClaimOutcome::Local)));
}
