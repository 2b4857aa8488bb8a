use super::*;

fn ask(to: &[u32]) -> (ClientsAsk, oneshot::Receiver<PeerReplies>) {
    let (reply, rx) = oneshot::channel();
    let ask = ClientsAsk {
        to: to.iter().map(|&n| NodeId(n)).collect(),
        question: ClientsQuestion::Count,
        reply,
    };
    (ask, rx)
}

fn request_of(m: &Message) -> u64 {
    match m {
        Message::ClientsQuery(q) => q.request,
        other => panic!("not a query: {other:?}"),
    }
}

fn count(request: u64, n: u64) -> ClientsAnswer {
    ClientsAnswer::new(request, ClientsReply::Count(n))
}

#[test]
fn answers_once_every_peer_answered() {
    let mut a = Asking::default();
    let (q, mut rx) = ask(&[2, 3]);
    let frames = a.begin(q, |_| true, 1_000);
    assert_eq!(frames.len(), 2);
    let (r2, r3) = (request_of(&frames[0].1), request_of(&frames[1].1));
    // An answer from the wrong peer, or to an unknown request, is ignored.
    a.handle_answer(NodeId(3), count(r2, 9));
    a.handle_answer(NodeId(2), count(999, 9));
    a.handle_answer(NodeId(2), count(r2, 4));
    assert!(rx.try_recv().is_err(), "node 3 has not answered");
    a.handle_answer(NodeId(3), count(r3, 5));
    let replies = rx.try_recv().expect("answered");
    assert_eq!(
        replies,
        vec![
            (NodeId(2), Some(ClientsReply::Count(4))),
            (NodeId(3), Some(ClientsReply::Count(5)))
        ]
    );
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn a_silent_peer_is_left_out_after_the_timeout() {
    let mut a = Asking::default();
    let (q, mut rx) = ask(&[2, 3]);
    let frames = a.begin(q, |_| true, 1_000);
    a.handle_answer(NodeId(2), count(request_of(&frames[0].1), 1));
    assert_eq!(a.poll_timeout(), Some(1_000 + CLUSTER_CLIENTS_TIMEOUT_MS));
    a.handle_timeout(1_000 + CLUSTER_CLIENTS_TIMEOUT_MS - 1);
    assert!(rx.try_recv().is_err());
    a.handle_timeout(1_000 + CLUSTER_CLIENTS_TIMEOUT_MS);
    let replies = rx.try_recv().expect("answered at the deadline");
    assert_eq!(replies[0].1, Some(ClientsReply::Count(1)));
    assert_eq!(replies[1], (NodeId(3), None));
    // A late answer finds nothing to fill.
    a.handle_answer(NodeId(3), count(request_of(&frames[1].1), 1));
    assert_eq!(a.poll_timeout(), None);
}

#[test]
fn a_peer_down_or_not_running_answers_nothing_at_once() {
    let mut a = Asking::default();
    let (q, mut rx) = ask(&[2, 3]);
    let frames = a.begin(q, |n| n == NodeId(2), 1_000);
    assert_eq!(frames.len(), 1, "node 3 is not running: not asked");
    a.handle_member_down(NodeId(2));
    let replies = rx.try_recv().expect("nobody left to wait for");
    assert_eq!(replies, vec![(NodeId(2), None), (NodeId(3), None)]);

    let (q, mut rx) = ask(&[]);
    assert!(a.begin(q, |_| true, 1_000).is_empty());
    assert_eq!(rx.try_recv().expect("no peer: at once"), vec![]);
}

#[test]
fn a_listing_answer_is_bounded_in_bytes() {
    let info = |id: String| ClientInfo {
        client_id: id,
        shard: 0,
        connected: true,
        username: None,
        proto_ver: 5,
        peer: Some("127.0.0.1:1234".parse().unwrap()),
        keepalive_s: 60,
        clean_start: Some(true),
        expiry_interval_s: 0,
        subscriptions: 0,
        mqueue_len: 0,
        mqueue_max: 10,
        mqueue_dropped: 0,
        inflight_cnt: 0,
        connected_at_ms: None,
        disconnected_at_ms: None,
    };
    let big: Vec<ClientInfo> = (0..40).map(|i| info(format!("{i:0>65000}"))).collect();
    let out = bounded(big);
    assert!(!out.is_empty() && out.len() < 40, "{}", out.len());
    let bytes: usize = out.iter().map(|c| c.client_id.len()).sum();
    assert!(bytes <= CLUSTER_CLIENTS_ANSWER_MAX_BYTES);
    // Fits a frame.
    let answer = Message::ClientsAnswer(ClientsAnswer::new(1, ClientsReply::Clients(out.clone())));
    assert!(answer.encode().is_ok());
    // And round-trips a record.
    let one = info("c".into());
    assert_eq!(from_wire(to_wire(one.clone())), one);
}
