use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::cluster::logic::proto::MessageId;
use crate::cluster::logic::records::{self, OutForward, RecordsFrame};
use crate::codec::{ByteStr, QoS};

fn forward_with(seq: u64, qos: u8, payload: Bytes) -> OutForward {
    OutForward {
        id: MessageId {
            node: 1,
            shard: 0,
            seq,
        },
        stream_seq: 0,
        message: Arc::new(crate::session::Message {
            topic: ByteStr::from("t"),
            payload,
            qos: QoS::from_u8(qos).unwrap(),
            retain: false,
            properties: None,
            origin: None,
            expires_at: None,
            id: None,
        }),
        expires_at_unix_ms: None,
        shared: None,
    }
}

fn forward(seq: u64, qos: u8) -> OutForward {
    forward_with(seq, qos, Bytes::new())
}

fn events(out: &mut ForwardOut) -> Vec<ForwardEvent> {
    std::iter::from_fn(|| out.poll_event()).collect()
}

fn batch(body: &Bytes) -> RecordsFrame {
    records::decode(body).expect("a data frame is a records frame")
}

/// The next frame `poll_transmit` gives, decoded.
fn next_batch(out: &mut ForwardOut) -> Option<(ShardId, RecordsFrame)> {
    out.poll_transmit()
        .map(|(shard, body)| (shard, batch(&body)))
}

/// Every frame `poll_transmit` gives, as `(stream, [stream_seq...])`.
fn frames(out: &mut ForwardOut) -> Vec<(ShardId, Vec<u64>)> {
    std::iter::from_fn(|| next_batch(out))
        .map(|(shard, b)| (shard, b.forwards.iter().map(|f| f.stream_seq).collect()))
        .collect()
}

fn ack(shard: ShardId, up_to: u64) -> ForwardAck {
    ForwardAck {
        window: WindowId::default(),
        shard,
        up_to,
    }
}

#[test]
fn messages_are_numbered_per_stream_batched_and_acked_cumulatively() {
    let mut out = ForwardOut::new();
    let mut inn = ForwardIn::new();
    for i in 0..3 {
        out.push(0, forward(i, 1), Some(i));
    }
    out.push(1, forward(9, 1), Some(9));
    let mut sent = Vec::new();
    while let Some((shard, b)) = next_batch(&mut out) {
        sent.push((
            shard,
            b.forwards.iter().map(|f| f.stream_seq).collect::<Vec<_>>(),
        ));
        for f in &b.forwards {
            assert_eq!(inn.handle_forward(NodeId(1), shard, f.stream_seq), Ok(true));
            inn.handle_queued(NodeId(1), shard, f.stream_seq);
        }
    }
    assert_eq!(
        sent,
        [(0, vec![1, 2, 3]), (1, vec![1])],
        "one frame per stream carries everything waiting"
    );
    let acks: Vec<_> = std::iter::from_fn(|| inn.poll_transmit()).collect();
    assert_eq!(acks.len(), 2, "one cumulative ack per stream");
    for (_, m) in acks {
        let Message::ForwardAck(a) = m else { panic!() };
        out.handle_ack(&a);
    }
    let acked: Vec<_> = events(&mut out);
    assert_eq!(
        acked,
        [0, 1, 2, 9].map(|token| ForwardEvent::Acked { token })
    );
    assert_eq!(out.depth(), 0);
}

#[test]
fn streams_take_turns_and_batches_respect_their_limits() {
    let mut out = ForwardOut::new();
    let n = FORWARD_BATCH_MESSAGES_MAX as u64 + 1;
    for i in 0..n {
        out.push(0, forward(i, 0), None);
        out.push(1, forward(i, 0), None);
    }
    let sent = frames(&mut out);
    let first: Vec<u64> = (1..n).collect();
    assert_eq!(
        sent,
        [(0, first.clone()), (1, first), (0, vec![n]), (1, vec![n])],
        "at most FORWARD_BATCH_MESSAGES_MAX per frame, streams in turn"
    );
    let big = forward_with(0, 0, Bytes::from(vec![0u8; FORWARD_BATCH_BYTES_MAX]));
    out.push(2, forward(1, 0), None);
    out.push(2, big, None);
    out.push(2, forward(2, 0), None);
    assert_eq!(
        frames(&mut out),
        [(2, vec![1]), (2, vec![2]), (2, vec![3])],
        "a message over the byte limit goes alone"
    );
}

#[test]
fn a_stream_with_its_frames_in_flight_waits_for_an_ack_then_sends_the_rest_at_once() {
    let mut out = ForwardOut::new();
    for i in 0..FORWARD_FRAMES_IN_FLIGHT_MAX as u64 {
        out.push(0, forward(i, 0), None);
        assert_eq!(frames(&mut out).len(), 1, "idle: one message per frame");
    }
    for i in 0..10 {
        out.push(0, forward(i, 0), None);
    }
    assert!(frames(&mut out).is_empty(), "every frame slot is in flight");
    out.handle_ack(&ack(0, 2));
    let top = FORWARD_FRAMES_IN_FLIGHT_MAX as u64;
    assert_eq!(
        frames(&mut out),
        [(0, (top + 1..=top + 10).collect::<Vec<_>>())],
        "the first ack frees two slots; the ten waiting go in one frame"
    );
}

#[test]
fn a_full_window_pauses_every_qos_and_drops_past_the_overshoot() {
    let mut out = ForwardOut::new();
    for i in 0..FORWARD_WINDOW_MESSAGES_MAX as u64 {
        assert!(matches!(
            out.push(0, forward(i, 0), None),
            PushOutcome::Queued { pause: false, .. }
        ));
    }
    assert!(!out.is_paused(0));
    assert!(matches!(
        out.push(0, forward(0, 0), None),
        PushOutcome::Queued { pause: true, .. }
    ));
    assert!(out.is_paused(0), "QoS 0 pauses its publisher too");
    assert!(matches!(
        out.push(0, forward(1, 1), Some(1)),
        PushOutcome::Queued { pause: true, .. }
    ));
    for i in 2..FORWARD_WINDOW_OVERSHOOT_MAX as u64 {
        out.push(0, forward(i, 2), Some(100 + i));
    }
    assert_eq!(
        out.push(0, forward(0, 0), None),
        PushOutcome::Dropped(DropReason::WindowFull),
        "past the overshoot QoS 0 is dropped"
    );
    assert_eq!(
        out.push(0, forward(0, 2), Some(7)),
        PushOutcome::Dropped(DropReason::WindowFull),
        "past the overshoot even QoS 2 is dropped"
    );
    assert_eq!(out.drops().get(DropReason::WindowFull, 0), 1);
    assert_eq!(out.drops().get(DropReason::WindowFull, 2), 1);
    out.handle_ack(&ack(0, FORWARD_WINDOW_OVERSHOOT_MAX as u64));
    assert!(
        !events(&mut out).contains(&ForwardEvent::Resume { shard: 0 }),
        "not yet half"
    );
    out.handle_ack(&ack(
        0,
        (FORWARD_WINDOW_OVERSHOOT_MAX + FORWARD_WINDOW_MESSAGES_MAX / 2) as u64,
    ));
    assert!(events(&mut out).contains(&ForwardEvent::Resume { shard: 0 }));
    assert!(!out.is_paused(0));
}

#[test]
fn a_broken_link_fails_what_is_unacked_and_restarts_numbering() {
    let mut out = ForwardOut::new();
    out.push(0, forward(1, 1), Some(1));
    out.push(0, forward(2, 0), None);
    out.handle_link_down();
    assert_eq!(events(&mut out), [ForwardEvent::Failed { token: 1 }]);
    assert_eq!(out.drops().get(DropReason::LinkDown, 1), 1);
    assert_eq!(out.drops().get(DropReason::LinkDown, 0), 1);
    assert!(out.poll_transmit().is_none(), "nothing in flight survives");
    assert!(matches!(
        out.push(0, forward(3, 1), None),
        PushOutcome::Queued { stream_seq: 1, .. }
    ));
}

#[test]
fn the_receiver_refuses_a_gap_and_ignores_repeats() {
    let mut inn = ForwardIn::new();
    let mut f = forward(1, 1);
    f.stream_seq = 1;
    assert_eq!(inn.handle_forward(NodeId(2), 0, f.stream_seq), Ok(true));
    assert_eq!(inn.handle_forward(NodeId(2), 0, f.stream_seq), Ok(false));
    f.stream_seq = 3;
    assert_eq!(
        inn.handle_forward(NodeId(2), 0, f.stream_seq),
        Err(StreamGap {
            from: NodeId(2),
            shard: 0,
            expected: 2,
            got: 3
        })
    );
    f.stream_seq = 2;
    assert_eq!(
        inn.handle_forward(NodeId(2), 0, f.stream_seq),
        Ok(true),
        "the gap took nothing: 2 is still expected"
    );
    inn.handle_link_down(NodeId(2));
    f.stream_seq = 1;
    assert_eq!(
        inn.handle_forward(NodeId(2), 0, f.stream_seq),
        Ok(true),
        "a peer gone and back numbers from 1"
    );
}

/// Delivers every frame of `out` to `inn` as the driver does (window,
/// then messages until a gap), queues what is fresh, and returns the
/// message seqs delivered.
fn deliver(out: &mut ForwardOut, inn: &mut ForwardIn, frames: Vec<(ShardId, Bytes)>) -> Vec<u64> {
    let mut delivered = Vec::new();
    for (shard, body) in frames {
        let b = batch(&body);
        if !inn.handle_window(NodeId(1), shard, b.window) {
            continue;
        }
        for f in &b.forwards {
            match inn.handle_forward(NodeId(1), shard, f.stream_seq) {
                Ok(true) => {
                    delivered.push(f.id.seq);
                    inn.handle_queued(NodeId(1), shard, f.stream_seq);
                }
                Ok(false) => {}
                Err(_) => break,
            }
        }
    }
    while let Some((_, m)) = inn.poll_transmit() {
        let Message::ForwardAck(a) = m else { panic!() };
        out.handle_ack(&a);
    }
    delivered
}

fn all_frames(out: &mut ForwardOut) -> Vec<(ShardId, Bytes)> {
    std::iter::from_fn(|| out.poll_transmit()).collect()
}

#[test]
fn a_lost_link_sends_the_unacknowledged_frames_again_and_the_receiver_drops_repeats() {
    let mut out = ForwardOut::with_window(WindowId {
        epoch: 7,
        opened: 1,
    });
    let mut inn = ForwardIn::new();
    for i in 1..=2 {
        out.push(0, forward(i, 1), Some(i));
        let first = all_frames(&mut out);
        assert_eq!(first.len(), 1);
        if i == 1 {
            // Arrives, but its acknowledgement dies with the link.
            let b = batch(&first[0].1);
            assert!(inn.handle_window(NodeId(1), 0, b.window));
            assert_eq!(
                inn.handle_forward(NodeId(1), 0, b.forwards[0].stream_seq),
                Ok(true)
            );
            inn.handle_queued(NodeId(1), 0, 1);
            assert!(inn.poll_transmit().is_some());
        } // 2 is lost with the link
    }
    out.handle_link_lost();
    assert!(events(&mut out).is_empty(), "nothing fails on a lost link");
    out.push(0, forward(3, 1), Some(3));
    let again = all_frames(&mut out);
    assert_eq!(again.len(), 3, "frames 1 and 2 again, then 3");
    assert_eq!(out.resent_frames(), 2);
    // The new frame overtakes the resent ones (sent on the new link before
    // the sender heard of the old one's loss): refused as a gap.
    let (resent, new) = again.split_at(2);
    assert!(deliver(&mut out, &mut inn, new.to_vec()).is_empty());
    assert_eq!(deliver(&mut out, &mut inn, resent.to_vec()), [2]);
    // Frame 3 comes again after the resend check (no acknowledgement).
    out.handle_resend_check();
    out.handle_resend_check();
    let last = all_frames(&mut out);
    assert_eq!(deliver(&mut out, &mut inn, last), [3]);
    assert_eq!(
        events(&mut out),
        [1, 2, 3].map(|token| ForwardEvent::Acked { token }),
        "each delivered once, each acknowledged"
    );
    assert_eq!(out.depth(), 0);
}

#[test]
fn the_resend_check_waits_for_two_checks_without_progress() {
    let mut out = ForwardOut::new();
    out.push(0, forward(1, 0), None);
    assert_eq!(all_frames(&mut out).len(), 1);
    out.handle_resend_check();
    assert!(out.poll_transmit().is_none(), "first check: just noted");
    out.handle_resend_check();
    assert_eq!(frames(&mut out), [(0, vec![1])], "second: sent again");
    out.handle_ack(&ack(0, 1));
    assert!(!out.in_flight());
    out.handle_resend_check();
    out.handle_resend_check();
    assert!(out.poll_transmit().is_none());
}

#[test]
fn windows_are_told_apart_by_their_id() {
    let old = WindowId {
        epoch: 5,
        opened: 1,
    };
    let new = WindowId {
        epoch: 5,
        opened: 2,
    };
    let mut out = ForwardOut::with_window(new);
    out.push(0, forward(1, 1), Some(1));
    assert_eq!(all_frames(&mut out).len(), 1);
    out.handle_ack(&ForwardAck {
        window: old,
        shard: 0,
        up_to: 10,
    });
    assert!(
        events(&mut out).is_empty(),
        "an old window's ack acks nothing"
    );
    let mut inn = ForwardIn::new();
    let mut f = forward(1, 0);
    f.stream_seq = 1;
    assert!(inn.handle_window(NodeId(1), 0, old));
    assert_eq!(inn.handle_forward(NodeId(1), 0, f.stream_seq), Ok(true));
    assert!(
        inn.handle_window(NodeId(1), 0, new),
        "a newer window restarts"
    );
    assert_eq!(
        inn.handle_forward(NodeId(1), 0, f.stream_seq),
        Ok(true),
        "from 1"
    );
    assert!(
        !inn.handle_window(NodeId(1), 0, old),
        "late frames of the old one"
    );
}

#[test]
fn the_publisher_is_acked_when_every_node_queued_the_message() {
    let mut acks = PublishAcks::new();
    acks.begin(1, [NodeId(2), NodeId(3)]);
    acks.begin(2, []);
    assert_eq!(
        acks.poll_release(),
        Some((2, true)),
        "no remote node: at once"
    );
    acks.handle_node(1, NodeId(2), true);
    assert_eq!(acks.poll_release(), None);
    acks.handle_node(1, NodeId(3), true);
    assert_eq!(acks.poll_release(), Some((1, true)));
    acks.begin(3, [NodeId(2), NodeId(3)]);
    acks.handle_node(3, NodeId(2), true);
    acks.handle_member_down(NodeId(3));
    assert_eq!(acks.poll_release(), Some((3, false)));
    assert_eq!(acks.waiting(), 0);
}
