//! Forwarding under load and link flaps: windows that pause their shard,
//! batches, and a link `net` reports lost or replaced (`LinkDown`,
//! `LinkUp`).

use super::*;
use crate::limits::{FORWARD_BATCH_MESSAGES_MAX, FORWARD_WINDOW_MESSAGES_MAX};

fn release_held(c: &mut Cluster, at: u32) {
    let held = std::mem::take(&mut c.node(at).held);
    let now = c.now_ms;
    for d in &held {
        queued(&mut c.node(at).core, d, now);
    }
    c.settle();
}

#[test]
fn a_full_window_pauses_the_publishing_shard_until_it_drains() {
    let mut c = Cluster::new(&[1, 2], 2);
    c.connect_all();
    c.node(2).hold_queued = true;
    for i in 0..=FORWARD_WINDOW_MESSAGES_MAX {
        drop(c.publish(1, 1, &[2], &format!("w/{i}"), QoS::AtMostOnce));
    }
    assert_eq!(c.node(1).core.poll_paused(), Some((1, true)));
    assert_eq!(c.node(1).core.poll_paused(), None, "told once");
    c.settle();
    // Nothing was dropped: every message is delivered once acknowledged.
    release_held(&mut c, 2);
    // Frames sent before the first acknowledgement carry one message
    // each; the rest went in full batches.
    assert_eq!(c.node(1).core.poll_paused(), Some((1, false)));
    let delivered = c.node(2).delivered[1].len();
    assert!(delivered > FORWARD_BATCH_MESSAGES_MAX);
    while !c.node(2).held.is_empty() {
        release_held(&mut c, 2);
    }
    assert_eq!(
        c.node(2).delivered[1].len(),
        FORWARD_WINDOW_MESSAGES_MAX + 1
    );
    let drops = c.node(1).core.forward_drops();
    assert_eq!(drops.0, [[0; 3]; 2], "back-pressure, not drops");
}

#[test]
fn a_lost_link_keeps_what_was_in_flight_and_sends_it_again_on_the_new_one() {
    let mut c = Cluster::new(&[1, 2], 1);
    c.connect_all();
    drop(c.subscribe(2, 0, "f/#"));
    c.settle();
    assert!(c.has_route(1, 0, 2, "f/#"));
    c.node(2).hold_queued = true;
    let mut in_flight = c
        .publish(1, 0, &[2], "f/1", QoS::AtLeastOnce)
        .expect("qos 1");
    c.settle();
    assert_eq!(c.node(2).delivered[0].len(), 1);
    // The link breaks (both sides hear it from net) before node 2's
    // shard reported the message queued.
    c.node(1).core.handle_link_down(NodeId(2));
    c.node(2).core.handle_link_down(NodeId(1));
    c.settle();
    assert_eq!(answered(&mut in_flight), None, "kept, not failed");
    // Published while the link is down: kept in the window, not sent.
    let mut waiting = c
        .publish(1, 0, &[2], "f/2", QoS::AtLeastOnce)
        .expect("qos 1");
    c.settle();
    assert_eq!(
        c.node(2).delivered[0].len(),
        1,
        "nothing sent without a link"
    );
    assert_eq!(answered(&mut waiting), None);
    let frames_before = c.node(2).core.stats().frames_in;
    let now = c.now_ms;
    c.node(1).core.handle_link_up(NodeId(2), now);
    c.node(2).core.handle_link_up(NodeId(1), now);
    c.settle();
    while !c.node(2).held.is_empty() {
        release_held(&mut c, 2);
    }
    let delivered: Vec<(u64, String)> = c.node(2).delivered[0]
        .iter()
        .map(|d| (d.2, d.3.clone()))
        .collect();
    assert_eq!(
        delivered,
        [(1, "f/1".to_string()), (2, "f/2".to_string())],
        "f/1 sent again is a repeat; numbering goes on; each delivered once"
    );
    assert_eq!(answered(&mut in_flight), Some(true));
    assert_eq!(answered(&mut waiting), Some(true));
    assert_eq!(c.node(2).core.stats().stream_gaps, 0);
    let drops = c.node(1).core.forward_drops();
    assert_eq!(drops.0, [[0; 3]; 2], "nothing dropped");
    // Routes were resynchronised at once: node 1 sent its snapshot and
    // still routes to node 2.
    assert!(c.node(2).core.stats().frames_in > frames_before);
    assert!(c.has_route(1, 0, 2, "f/#"));
    let mut released = c.subscribe(1, 0, "g");
    c.settle();
    assert_eq!(
        answered(&mut released),
        Some(()),
        "acks flow on the new link"
    );
}

#[test]
fn a_restarted_peer_gets_a_new_window_numbered_from_1() {
    let mut c = Cluster::new(&[1, 2], 1);
    c.connect_all();
    drop(c.subscribe(2, 0, "r/#"));
    c.settle();
    drop(c.publish(1, 0, &[2], "r/1", QoS::AtMostOnce));
    c.settle();
    // Node 1 restarts: node 2 hears it down, then up with a new epoch;
    // node 1 is a new core that has never forwarded.
    let now = c.now_ms;
    c.node(2).core.handle_member_down(NodeId(1), now);
    c.node(1).core = Core::new(NodeId(1), 100, 1, now);
    c.node(1).core.handle_member_up(NodeId(2), 2, now);
    c.node(2).core.handle_member_up(NodeId(1), 100, now);
    c.settle();
    assert!(
        c.has_route(1, 0, 2, "r/#"),
        "the new node 1 got node 2's routes"
    );
    drop(c.publish(1, 0, &[2], "r/2", QoS::AtMostOnce));
    c.settle();
    let topics: Vec<String> = c.node(2).delivered[0].iter().map(|d| d.3.clone()).collect();
    assert_eq!(topics, ["r/1", "r/2"]);
}

#[test]
fn a_batch_with_a_gap_or_two_streams_is_refused_whole() {
    use crate::cluster::logic::proto::{Forward, ForwardBatch, MessageId, WindowId};
    use crate::session::snapshot::MessageSnapshot;
    let mut core = Core::new(NodeId(1), 1, 1, T0);
    core.handle_member_up(NodeId(2), 2, T0);
    let now = clock(T0);
    let forward = |shard, stream_seq| Forward {
        id: MessageId {
            node: 2,
            shard,
            seq: stream_seq,
        },
        stream_seq,
        message: MessageSnapshot::of(&message("b", QoS::AtMostOnce), &now),
        shared: None,
    };
    for forwards in [
        vec![forward(0, 1), forward(0, 3)],
        vec![forward(0, 1), forward(1, 2)],
        vec![],
    ] {
        let body = Message::ForwardBatch(ForwardBatch {
            window: WindowId::default(),
            forwards,
        })
        .encode()
        .expect("encodes");
        core.handle_frame(
            NodeId(2),
            StreamId::Data { shard: 0 },
            crate::cluster::logic::proto::kind::ForwardBatch,
            &Bytes::from(body),
            &now,
        );
    }
    assert_eq!(core.stats().frames_malformed, 3);
    assert!(
        core.poll_delivery().is_none(),
        "no message of them delivered"
    );
}

/// A publisher's window (`PUBLISH_ACKS_HELD_MAX`): several QoS 1 messages
/// of one shard in flight at once, each answered only once the receiver
/// queued it; a broken link keeps them (sent again on the next link); a
/// peer declared down answers every one still unanswered as incomplete.
#[test]
fn a_publishers_window_is_answered_once_queued_and_failed_by_a_link_break() {
    let mut c = Cluster::new(&[1, 2], 1);
    c.connect_all();
    c.node(2).hold_queued = true;
    let mut first: Vec<_> = (0..8)
        .map(|i| c.publish(1, 0, &[2], &format!("q/{i}"), QoS::AtLeastOnce))
        .map(|a| a.expect("qos 1"))
        .collect();
    c.settle();
    assert_eq!(c.node(2).delivered[0].len(), 8, "all eight in flight");
    assert!(first.iter_mut().all(|a| answered(a).is_none()));
    release_held(&mut c, 2);
    assert!(first.iter_mut().all(|a| answered(a) == Some(true)));
    let mut second: Vec<_> = (0..8)
        .map(|i| c.publish(1, 0, &[2], &format!("r/{i}"), QoS::AtLeastOnce))
        .map(|a| a.expect("qos 1"))
        .collect();
    c.settle();
    assert!(second.iter_mut().all(|a| answered(a).is_none()));
    // A broken link keeps the window: sent again on the next link, each
    // answered once queued.
    c.node(1).core.handle_link_down(NodeId(2));
    c.node(2).core.handle_link_down(NodeId(1));
    c.settle();
    assert!(second.iter_mut().all(|a| answered(a).is_none()));
    let now = c.now_ms;
    c.node(1).core.handle_link_up(NodeId(2), now);
    c.node(2).core.handle_link_up(NodeId(1), now);
    c.settle();
    while !c.node(2).held.is_empty() {
        release_held(&mut c, 2);
    }
    assert!(second.iter_mut().all(|a| answered(a) == Some(true)));
    assert_eq!(c.node(2).delivered[0].len(), 16, "each delivered once");
    // The peer declared down answers every one still unanswered at once
    // as incomplete (`false`): none is left waiting.
    let mut third: Vec<_> = (0..8)
        .map(|i| c.publish(1, 0, &[2], &format!("s/{i}"), QoS::AtLeastOnce))
        .map(|a| a.expect("qos 1"))
        .collect();
    c.settle();
    let now = c.now_ms;
    c.node(1).core.handle_member_down(NodeId(2), now);
    c.settle();
    assert!(
        third.iter_mut().all(|a| answered(a) == Some(false)),
        "a peer declared down fails the whole window"
    );
}
