use bytes::Bytes;

use super::*;
use crate::cluster::logic::proto::MessageId;
use crate::session::snapshot::MessageSnapshot;

fn forward(seq: u64, qos: u8) -> Forward {
    Forward {
        id: MessageId {
            node: 1,
            shard: 0,
            seq,
        },
        stream_seq: 0,
        message: MessageSnapshot {
            topic: "t".into(),
            payload: Bytes::new(),
            qos,
            retain: false,
            payload_format_indicator: None,
            message_expiry_interval_s: None,
            response_topic: None,
            correlation_data: None,
            user_properties: vec![],
            content_type: None,
            origin: None,
            expires_at_unix_ms: None,
        },
        shared: None,
    }
}

fn events(out: &mut ForwardOut) -> Vec<ForwardEvent> {
    std::iter::from_fn(|| out.poll_event()).collect()
}

/// Every frame `poll_transmit` gives, as `(stream, [stream_seq...])`.
fn frames(out: &mut ForwardOut) -> Vec<(ShardId, Vec<u64>)> {
    std::iter::from_fn(|| out.poll_transmit())
        .map(|(shard, m)| {
            let Message::ForwardBatch(b) = m else {
                panic!("a data frame is a batch")
            };
            (shard, b.forwards.iter().map(|f| f.stream_seq).collect())
        })
        .collect()
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
    while let Some((shard, Message::ForwardBatch(b))) = out.poll_transmit() {
        sent.push((
            shard,
            b.forwards.iter().map(|f| f.stream_seq).collect::<Vec<_>>(),
        ));
        for f in &b.forwards {
            assert_eq!(inn.handle_forward(NodeId(1), shard, f), Ok(true));
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
    let mut big = forward(0, 0);
    big.message.payload = Bytes::from(vec![0u8; FORWARD_BATCH_BYTES_MAX]);
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
    out.handle_ack(&ForwardAck { shard: 0, up_to: 2 });
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
    out.handle_ack(&ForwardAck {
        shard: 0,
        up_to: FORWARD_WINDOW_OVERSHOOT_MAX as u64,
    });
    assert!(
        !events(&mut out).contains(&ForwardEvent::Resume { shard: 0 }),
        "not yet half"
    );
    out.handle_ack(&ForwardAck {
        shard: 0,
        up_to: (FORWARD_WINDOW_OVERSHOOT_MAX + FORWARD_WINDOW_MESSAGES_MAX / 2) as u64,
    });
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
    assert_eq!(inn.handle_forward(NodeId(2), 0, &f), Ok(true));
    assert_eq!(inn.handle_forward(NodeId(2), 0, &f), Ok(false));
    f.stream_seq = 3;
    assert_eq!(
        inn.handle_forward(NodeId(2), 0, &f),
        Err(StreamGap {
            from: NodeId(2),
            shard: 0,
            expected: 2,
            got: 3
        })
    );
    inn.handle_link_down(NodeId(2));
    f.stream_seq = 1;
    assert_eq!(
        inn.handle_forward(NodeId(2), 0, &f),
        Ok(true),
        "a new link numbers from 1"
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
