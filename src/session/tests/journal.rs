//! What a durable session notes for its store (`session::journal`), in
//! order: the seq each QoS 1/2 delivery gets when it enters and keeps in
//! the window, each state change, the removal at the end of its flow, and
//! meta changes; nothing for a session that is not durable.

use super::*;
use crate::session::journal::{take_notes, AwaitingKind, InflightState, NotedChange};

/// A compact view of the notes: ("put", seq, payload, state) / ("remove", seq) / ("meta").
fn notes() -> Vec<String> {
    take_notes()
        .into_iter()
        .map(|n| match n.change {
            NotedChange::Put {
                seq,
                delivery,
                inflight,
                ..
            } => {
                let payload = String::from_utf8(delivery.message.payload.to_vec()).unwrap();
                match inflight {
                    None => format!("put {seq} {payload} queued"),
                    Some(InflightState {
                        packet_id,
                        awaiting,
                        transmitted,
                    }) => format!(
                        "put {seq} {payload} id={packet_id} {awaiting:?}{}",
                        if transmitted { " sent" } else { "" }
                    ),
                }
            }
            NotedChange::Remove { seq } => format!("remove {seq}"),
            NotedChange::State { seq, inflight } => format!(
                "state {seq} id={} {:?}{}",
                inflight.packet_id,
                inflight.awaiting,
                if inflight.transmitted { " sent" } else { "" }
            ),
            NotedChange::Meta(m) => format!(
                "meta subs={} qos2={:?} next_seq={}",
                m.subscriptions.len(),
                m.incoming_qos2,
                m.next_seq
            ),
        })
        .collect()
}

fn durable_pair(window: u16) -> Pair {
    let mut c = cfg();
    c.max_inflight = window;
    let mut p = Pair::new(c);
    p.connect(persistent_v5("d"));
    p.conn().session_mut().make_durable(7);
    p.take_sent();
    take_notes();
    p
}

#[test]
fn a_delivery_keeps_the_seq_it_entered_with_through_its_whole_flow() {
    let mut p = durable_pair(1);
    p.deliver(delivery("t", QoS::AtLeastOnce, "a"));
    p.deliver(delivery("t", QoS::AtLeastOnce, "b"));
    assert_eq!(
        notes(),
        [
            "put 0 a id=1 PubAck",
            "put 0 a id=1 PubAck sent",
            "put 1 b queued",
        ]
    );
    p.send(Packet::PubAck(ack(1)));
    // b enters the window with the seq it was queued under.
    assert_eq!(
        notes(),
        [
            "remove 0",
            "put 1 b id=2 PubAck",
            "put 1 b id=2 PubAck sent"
        ]
    );
    // a, then b once a's slot was free.
    assert_eq!(p.publishes().len(), 2);
}

/// With a store that takes states (the log engine), every change after
/// a delivery's entering put is a state note without the message: the
/// same flow as above. Fails if a state change carried the whole delivery
/// again, or the entering put of a delivery that went straight to the
/// window were a state (its message would never be stored).
#[test]
fn with_a_store_that_takes_states_a_delivery_changes_by_state_notes() {
    let mut p = durable_pair(1);
    crate::session::journal::note_states(true);
    p.deliver(delivery("t", QoS::AtLeastOnce, "a"));
    p.deliver(delivery("t", QoS::ExactlyOnce, "b"));
    let first = notes();
    p.send(Packet::PubAck(ack(1)));
    let second = notes();
    p.send(Packet::PubRec(ack(2)));
    let third = notes();
    crate::session::journal::note_states(false);
    assert_eq!(
        first,
        [
            "put 0 a id=1 PubAck",
            "state 0 id=1 PubAck sent",
            "put 1 b queued"
        ]
    );
    assert_eq!(
        second,
        [
            "remove 0",
            "state 1 id=2 PubRec",
            "state 1 id=2 PubRec sent"
        ]
    );
    assert_eq!(third, ["state 1 id=2 PubComp sent"]);
}

#[test]
fn qos2_notes_pubrec_then_removes_at_pubcomp() {
    let mut p = durable_pair(10);
    p.deliver(delivery("t", QoS::ExactlyOnce, "x"));
    p.take_sent();
    take_notes();
    p.send(Packet::PubRec(ack(1)));
    assert_eq!(notes(), ["put 0 x id=1 PubComp sent"]);
    p.send(Packet::PubComp(ack(1)));
    assert_eq!(notes(), ["remove 0"]);
}

#[test]
fn qos0_deliveries_are_never_noted() {
    let mut p = durable_pair(10);
    p.deliver(delivery("t", QoS::AtMostOnce, "z"));
    assert_eq!(notes(), Vec::<String>::new());
}

#[test]
fn subscriptions_and_inbound_qos2_ids_rewrite_the_meta() {
    let mut p = durable_pair(10);
    p.send(subscribe(1, vec![sub("a/#", QoS::AtLeastOnce)]));
    assert_eq!(notes(), ["meta subs=1 qos2=[] next_seq=0"]);
    p.send(publish("a/b", QoS::ExactlyOnce, 5, "q"));
    assert_eq!(notes(), ["meta subs=1 qos2=[5] next_seq=0"]);
    p.send(Packet::PubRel(ack(5)));
    assert_eq!(notes(), ["meta subs=1 qos2=[] next_seq=0"]);
    p.send(Packet::Unsubscribe(crate::codec::Unsubscribe {
        packet_id: 2,
        filters: vec![ByteStr::from("a/#")],
        properties: Default::default(),
    }));
    assert_eq!(notes(), ["meta subs=0 qos2=[] next_seq=0"]);
}

#[test]
fn an_offline_session_notes_what_it_queues_and_what_expires() {
    let mut p = durable_pair(10);
    p.send(disconnect(ReasonCode::SUCCESS));
    assert!(p.parked.is_some());
    take_notes();
    let mut expiring = delivery("t", QoS::AtLeastOnce, "old");
    Arc::get_mut(&mut expiring.message).unwrap().expires_at = Some(p.now + Duration::from_secs(1));
    p.deliver(expiring);
    p.deliver(delivery("t", QoS::AtLeastOnce, "new"));
    assert_eq!(notes(), ["put 0 old queued", "put 1 new queued"]);
    p.advance(Duration::from_secs(2));
    p.connect(persistent_v5("d"));
    // The expired one is removed; the other enters the window under seq 1.
    assert_eq!(
        notes(),
        [
            "remove 0",
            "put 1 new id=1 PubAck",
            "put 1 new id=1 PubAck sent"
        ]
    );
}

#[test]
fn a_session_that_is_not_durable_notes_nothing() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("n"));
    p.send(subscribe(1, vec![sub("a/#", QoS::AtLeastOnce)]));
    p.deliver(delivery("t", QoS::AtLeastOnce, "a"));
    p.send(Packet::PubAck(ack(1)));
    assert!(take_notes().is_empty());
}

#[test]
fn a_snapshot_keeps_the_seq_of_each_queued_delivery() {
    let mut p = durable_pair(1);
    // "a" fills the window of 1, "b" waits; a QoS 0 message is queued only
    // behind a waiting one (else it goes out at once), and carries no seq.
    p.deliver(delivery("t", QoS::AtLeastOnce, "a"));
    p.deliver(delivery("t", QoS::AtLeastOnce, "b"));
    p.deliver(delivery("t", QoS::AtMostOnce, "zero"));
    let clock = WallClock::now();
    let snapshot = SessionSnapshot::of(p.conn().session(), None, None, &clock);
    let seqs: Vec<(u64, u8)> = snapshot
        .queue
        .iter()
        .map(|q| (q.seq, q.delivery.qos))
        .collect();
    assert_eq!(seqs, [(1, 1), (0, 0)]);
    assert_eq!(snapshot.inflight[0].seq, 0);
    assert_eq!(snapshot.next_seq, 2);
    let (session, _, _) = snapshot.clone().into_session(&clock).unwrap();
    assert_eq!(SessionSnapshot::of(&session, None, None, &clock), snapshot);
    let _ = AwaitingKind::PubAck;
}

/// Only the note that brings a delivery into the session is `fresh` (the
/// store cancels it with a removal in the same batch); a queued delivery
/// entering the window, being sent or PUBREC'd is not. Fails if
/// `insert_inflight` from the queue or `note_outbound` said fresh.
#[test]
fn only_the_note_that_enters_a_delivery_is_fresh() {
    let mut p = durable_pair(1);
    p.deliver(delivery("t", QoS::ExactlyOnce, "a"));
    p.deliver(delivery("t", QoS::ExactlyOnce, "b"));
    p.send(Packet::PubRec(ack(1)));
    p.send(Packet::PubComp(ack(1)));
    let fresh: Vec<String> = take_notes()
        .into_iter()
        .filter_map(|n| match n.change {
            NotedChange::Put {
                seq,
                inflight,
                fresh,
                ..
            } => Some(format!(
                "{seq} {} {fresh}",
                inflight.map_or("queued".into(), |i| format!("{:?}", i.awaiting))
            )),
            _ => None,
        })
        .collect();
    assert_eq!(
        fresh,
        [
            "0 PubRec true",
            "0 PubRec false",
            "1 queued true",
            "0 PubComp false",
            "1 PubRec false",
            "1 PubRec false",
        ]
    );
}
