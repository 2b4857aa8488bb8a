//! Held acknowledgements of PUBLISHes forwarded to other nodes
//! (`connection::held`): order kept, nothing before the release, a failure
//! closes without them, the bound and the DISCONNECT gate.

use super::*;
use crate::codec::*;
use crate::limits::PUBLISH_ACKS_HELD_MAX;

/// The PUBLISH is handled and its ack held before anything is written, as
/// the shard does for a message forwarded to other nodes.
fn send_held(p: &mut Pair, qos: QoS, packet_id: u16) -> u16 {
    let now = p.now;
    p.conn()
        .handle_packet(publish("a/b", qos, packet_id, "x"), now);
    let held = p.conn().hold_last_ack().expect("an ack to hold");
    p.pump();
    held
}

fn acks(sent: Vec<Packet>) -> Vec<(u8, u16)> {
    sent.into_iter()
        .map(|p| match p {
            Packet::PubAck(a) => (1, a.packet_id),
            Packet::PubRec(a) => (2, a.packet_id),
            other => panic!("expected an ack, got {other:?}"),
        })
        .collect()
}

#[test]
fn held_acks_go_out_in_publish_order_once_released() {
    let mut p = pair_v5();
    assert_eq!(send_held(&mut p, QoS::AtLeastOnce, 1), 1);
    assert_eq!(send_held(&mut p, QoS::ExactlyOnce, 2), 2);
    // A PUBLISH with no other node (not held) queues behind the held ones.
    p.send(publish("a/b", QoS::AtLeastOnce, 3, "x"));
    assert!(p.take_sent().is_empty(), "nothing before the release");
    assert_eq!(p.conn().held_acks(), 2);
    // The second one's nodes answer first: still nothing (order kept).
    assert!(p.conn().release_held_ack(2));
    p.pump();
    assert!(p.take_sent().is_empty());
    assert!(p.conn().release_held_ack(1));
    p.pump();
    assert_eq!(acks(p.take_sent()), vec![(1, 1), (2, 2), (1, 3)]);
    assert_eq!(p.conn().held_acks(), 0);
    assert!(!p.conn().release_held_ack(1), "released once");
}

#[test]
fn deliveries_wait_behind_a_held_ack() {
    let mut p = pair_v5();
    send_held(&mut p, QoS::AtLeastOnce, 4);
    p.deliver(delivery("a/b", QoS::AtMostOnce, "y"));
    assert!(p.take_sent().is_empty());
    p.conn().release_held_ack(4);
    p.pump();
    let sent = p.take_sent();
    assert_eq!(sent.len(), 2);
    assert!(matches!(sent[0], Packet::PubAck(ref a) if a.packet_id == 4));
    assert!(matches!(sent[1], Packet::Publish(_)));
}

#[test]
fn a_failed_forward_closes_without_the_held_acks() {
    let mut p = pair_v5();
    send_held(&mut p, QoS::AtLeastOnce, 1);
    send_held(&mut p, QoS::ExactlyOnce, 2);
    p.conn().fail_held_acks();
    p.pump();
    let sent = p.take_sent();
    assert!(
        !sent
            .iter()
            .any(|s| matches!(s, Packet::PubAck(_) | Packet::PubRec(_))),
        "no ack of a message some node did not get: {sent:?}"
    );
    let d = disconnect_sent(&sent).expect("DISCONNECT");
    assert_eq!(d.reason_code, ReasonCode::UNSPECIFIED_ERROR);
    assert!(p
        .take_actions()
        .iter()
        .any(|a| matches!(a, Action::Close { .. })));
}

#[test]
fn a_failed_qos2_publish_is_routed_again_when_resent() {
    let mut p = Pair::new(cfg());
    p.connect(persistent_v5("c1"));
    send_held(&mut p, QoS::ExactlyOnce, 3);
    p.take_actions();
    p.conn().fail_held_acks();
    p.pump();
    p.take_sent();
    p.take_actions();
    p.connect(persistent_v5("c1"));
    p.send(publish("a/b", QoS::ExactlyOnce, 3, "x"));
    let routed = p
        .take_actions()
        .into_iter()
        .filter(|a| matches!(a, Action::Publish(_)))
        .count();
    assert_eq!(routed, 1, "the resend is a new message, not a duplicate");
}

#[test]
fn the_gate_closes_at_the_bound() {
    let mut p = pair_v5();
    for id in 1..PUBLISH_ACKS_HELD_MAX as u16 {
        send_held(&mut p, QoS::AtLeastOnce, id);
        assert_eq!(p.conn().acks_gate(), 0);
    }
    send_held(&mut p, QoS::AtLeastOnce, PUBLISH_ACKS_HELD_MAX as u16);
    assert_eq!(p.conn().acks_gate(), 1, "at the bound: stop reading");
    p.conn().release_held_ack(1);
    assert_eq!(p.conn().acks_gate(), 0);
    for id in 2..=PUBLISH_ACKS_HELD_MAX as u16 {
        p.conn().release_held_ack(id);
    }
    assert_eq!(p.conn().held_acks(), 0);
    p.pump();
    assert_eq!(p.take_sent().len(), PUBLISH_ACKS_HELD_MAX);
}

#[test]
fn nothing_to_hold_for_qos0_or_a_refused_publish() {
    let mut p = pair_v5();
    let now = p.now;
    p.conn()
        .handle_packet(publish("a/b", QoS::AtMostOnce, 0, "x"), now);
    assert_eq!(p.conn().hold_last_ack(), None);
    p.pump();
    // A closed connection holds nothing either.
    p.send(Packet::Disconnect(Box::default()));
    assert!(p.conn.is_none() || p.conn().hold_last_ack().is_none());
}
