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

#[test]
fn messages_are_numbered_per_stream_and_acked_cumulatively() {
    let mut out = ForwardOut::new();
    let mut inn = ForwardIn::new();
    for i in 0..3 {
        out.push(0, forward(i, 1), Some(i));
    }
    out.push(1, forward(9, 1), Some(9));
    let mut sent = Vec::new();
    while let Some((shard, Message::Forward(f))) = out.poll_transmit() {
        sent.push((shard, f.stream_seq));
        assert_eq!(inn.handle_forward(NodeId(1), shard, &f), Ok(true));
        inn.handle_queued(NodeId(1), shard, f.stream_seq);
    }
    assert_eq!(
        sent,
        [(0, 1), (1, 1), (0, 2), (0, 3)],
        "streams are served in turn"
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
fn a_full_window_drops_qos0_and_pauses_qos1() {
    let mut out = ForwardOut::new();
    for i in 0..FORWARD_WINDOW_MESSAGES_MAX as u64 {
        assert!(matches!(
            out.push(0, forward(i, 0), None),
            PushOutcome::Queued { pause: false, .. }
        ));
    }
    assert_eq!(
        out.push(0, forward(0, 0), None),
        PushOutcome::Dropped(DropReason::WindowFull)
    );
    assert_eq!(out.drops().get(DropReason::WindowFull, 0), 1);
    assert!(matches!(
        out.push(0, forward(1, 1), Some(1)),
        PushOutcome::Queued { pause: true, .. }
    ));
    for i in 1..FORWARD_WINDOW_OVERSHOOT_MAX as u64 {
        out.push(0, forward(i, 2), Some(100 + i));
    }
    assert_eq!(
        out.push(0, forward(0, 2), Some(7)),
        PushOutcome::Dropped(DropReason::WindowFull),
        "past the overshoot even QoS 2 is dropped"
    );
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
