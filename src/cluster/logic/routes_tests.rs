use super::*;

const A: NodeId = NodeId(1);
const B: NodeId = NodeId(2);
const C: NodeId = NodeId(3);

fn change(filter: &str, group: Option<&str>, members: u32) -> InterestChange {
    InterestChange {
        filter: filter.into(),
        group: group.map(ByteStr::from),
        members,
    }
}

fn events(r: &mut RouteRelay) -> Vec<RouteEvent> {
    std::iter::from_fn(|| r.poll_event()).collect()
}

fn transmits(r: &mut RouteRelay) -> Vec<(NodeId, Message)> {
    std::iter::from_fn(|| r.poll_transmit()).collect()
}

fn released(events: &[RouteEvent]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            RouteEvent::Released { token, .. } => Some(*token),
            _ => None,
        })
        .collect()
}

/// Delivers every frame between the relays (applying every event at once)
/// until none is left; returns the events that were not Apply/Replace.
fn settle(relays: &mut [(NodeId, &mut RouteRelay)]) -> Vec<(NodeId, RouteEvent)> {
    let mut other = Vec::new();
    loop {
        let mut moved = false;
        for i in 0..relays.len() {
            let from = relays[i].0;
            while let Some(e) = relays[i].1.poll_event() {
                match e {
                    RouteEvent::Apply {
                        from: origin,
                        epoch,
                        seq,
                        ..
                    }
                    | RouteEvent::Replace {
                        from: origin,
                        epoch,
                        seq,
                        ..
                    } => relays[i].1.handle_applied(origin, epoch, seq),
                    e => other.push((from, e)),
                }
                moved = true;
            }
            while let Some((to, m)) = relays[i].1.poll_transmit() {
                moved = true;
                let Some(j) = relays.iter().position(|(n, _)| *n == to) else {
                    continue;
                };
                let r = &mut *relays[j].1;
                match m {
                    Message::RouteChange(c) => r.handle_route_change(from, c),
                    Message::RouteAck(a) => r.handle_route_ack(from, &a),
                    Message::RouteSnapshot(s) => r.handle_route_snapshot(from, s),
                    Message::RouteSnapshotRequest(q) => r.handle_snapshot_request(from, &q),
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        if !moved {
            return other;
        }
    }
}

fn pair() -> (RouteRelay, RouteRelay) {
    let mut a = RouteRelay::new(A, 100, 2);
    let mut b = RouteRelay::new(B, 200, 2);
    a.handle_member_up(B);
    b.handle_member_up(A);
    settle(&mut [(A, &mut a), (B, &mut b)]);
    assert!(a.routes_complete() && b.routes_complete());
    (a, b)
}

#[test]
fn ordinary_filters_are_advertised_on_node_level_crossings_only() {
    let mut a = RouteRelay::new(A, 1, 2);
    a.handle_member_up(B);
    transmits(&mut a);
    a.handle_interest(0, &change("x/#", None, 1), 1, 0);
    a.handle_interest(1, &change("x/#", None, 3), 2, 0);
    a.handle_interest(0, &change("x/#", None, 0), 3, 0);
    assert_eq!(
        a.issued(),
        1,
        "the second shard and the first leaving are not crossings"
    );
    a.handle_interest(1, &change("x/#", None, 0), 4, 0);
    assert_eq!(a.issued(), 2);
    let sent: Vec<_> = transmits(&mut a)
        .into_iter()
        .map(|(_, m)| match m {
            Message::RouteChange(c) => (c.seq, c.entry.members),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(sent, [(1, 1), (2, 0)]);
    assert_eq!(a.advertised().count(), 0);
}

#[test]
fn shared_groups_advertise_the_node_member_sum() {
    let mut a = RouteRelay::new(A, 1, 2);
    a.handle_interest(0, &change("x", Some("g"), 1), 1, 0);
    a.handle_interest(1, &change("x", Some("g"), 2), 2, 0);
    let adv: Vec<_> = a.advertised().collect();
    assert_eq!(adv.len(), 1);
    assert_eq!(adv[0].members, 3);
    assert_eq!(a.issued(), 2);
    // No peers: every token is released at once.
    assert_eq!(released(&events(&mut a)), [1, 2]);
}

#[test]
fn suback_waits_for_every_peer_to_apply_the_change() {
    let (mut a, mut b) = pair();
    let mut c = RouteRelay::new(C, 300, 1);
    a.handle_member_up(C);
    c.handle_member_up(A);
    settle(&mut [(A, &mut a), (C, &mut c)]);
    a.handle_interest(0, &change("t", None, 1), 7, 10);
    assert!(released(&events(&mut a)).is_empty());
    // Only B answers: still waiting for C.
    for (to, m) in transmits(&mut a) {
        if let (true, Message::RouteChange(ch)) = (to == B, m) {
            b.handle_route_change(A, ch);
        }
    }
    let applied = events(&mut b);
    assert!(matches!(&applied[..], [RouteEvent::Apply { seq: 1, .. }]));
    b.handle_applied(A, 100, 1);
    for (_, m) in transmits(&mut b) {
        if let Message::RouteAck(ack) = m {
            a.handle_route_ack(B, &ack);
        }
    }
    assert!(released(&events(&mut a)).is_empty(), "C has not acked");
    a.handle_member_down(C);
    let ev = events(&mut a);
    assert!(ev.contains(&RouteEvent::Forget { node: C }));
    assert_eq!(released(&ev), [7], "a dead peer is not waited for");
}

#[test]
fn a_silent_peer_is_marked_out_of_sync_and_resynchronised() {
    let (mut a, mut b) = pair();
    a.handle_interest(0, &change("t", None, 1), 7, 1_000);
    let lost = transmits(&mut a); // the change is lost on the way
    assert_eq!(lost.len(), 1);
    assert_eq!(a.poll_timeout(), Some(1_000 + ROUTE_ACK_TIMEOUT_MS));
    a.handle_timeout(1_000 + ROUTE_ACK_TIMEOUT_MS - 1);
    assert!(released(&events(&mut a)).is_empty());
    a.handle_timeout(1_000 + ROUTE_ACK_TIMEOUT_MS);
    assert_eq!(
        events(&mut a),
        [RouteEvent::Released {
            token: 7,
            out_of_sync: vec![B]
        }]
    );
    assert_eq!(a.stats().ack_timeouts, 1);
    // B is not waited for until it acknowledges the snapshot...
    a.handle_interest(1, &change("u", None, 1), 8, 1_500);
    assert_eq!(released(&events(&mut a)), [8]);
    // ...which replaces its view of A's routes with both filters.
    let rest = settle(&mut [(A, &mut a), (B, &mut b)]);
    assert!(rest.is_empty(), "{rest:?}");
    a.handle_interest(0, &change("v", None, 1), 9, 1_600);
    assert!(
        released(&events(&mut a)).is_empty(),
        "B is waited for again"
    );
    let rest = settle(&mut [(A, &mut a), (B, &mut b)]);
    assert_eq!(
        rest,
        [(
            A,
            RouteEvent::Released {
                token: 9,
                out_of_sync: vec![]
            }
        )]
    );
}

#[test]
fn a_gap_asks_for_a_snapshot_that_replaces_the_peers_routes() {
    let (mut a, mut b) = pair();
    a.handle_interest(0, &change("t", None, 1), 1, 0);
    a.handle_interest(0, &change("u", None, 1), 2, 0);
    let mut sent = transmits(&mut a);
    sent.remove(0); // seq 1 lost: 2 arrives first
    for (_, m) in sent {
        let Message::RouteChange(c) = m else { panic!() };
        b.handle_route_change(A, c);
    }
    assert!(events(&mut b).is_empty(), "nothing applied past a gap");
    assert_eq!(b.stats().gaps, 1);
    let req = transmits(&mut b);
    assert!(matches!(&req[..], [(A, Message::RouteSnapshotRequest(_))]));
    let Message::RouteSnapshotRequest(q) = &req[0].1 else {
        panic!()
    };
    a.handle_snapshot_request(B, q);
    for (_, m) in transmits(&mut a) {
        let Message::RouteSnapshot(s) = m else {
            panic!()
        };
        b.handle_route_snapshot(A, s);
    }
    match &events(&mut b)[..] {
        [RouteEvent::Replace {
            from, seq, changes, ..
        }] => {
            assert_eq!((*from, *seq), (A, 2));
            let filters: Vec<&str> = changes.iter().map(|c| &*c.filter).collect();
            assert_eq!(filters, ["t", "u"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_restarted_peer_is_resynchronised_by_its_new_epoch() {
    let (mut a, mut b) = pair();
    a.handle_interest(0, &change("t", None, 1), 1, 0);
    settle(&mut [(A, &mut a), (B, &mut b)]);
    // A restarts (new epoch) without B noticing a member down.
    let mut a2 = RouteRelay::new(A, 101, 2);
    a2.handle_member_up(B);
    b.handle_member_up(A);
    a2.handle_interest(0, &change("w", None, 1), 1, 5);
    let rest = settle(&mut [(A, &mut a2), (B, &mut b)]);
    assert_eq!(
        released(&rest.into_iter().map(|(_, e)| e).collect::<Vec<_>>()),
        [1]
    );
    assert!(b.routes_complete());
}

#[test]
fn large_snapshots_come_in_parts() {
    let mut a = RouteRelay::new(A, 1, 1);
    for i in 0..(ROUTE_SNAPSHOT_CHUNK_ENTRIES_MAX + 5) {
        a.handle_interest(0, &change(&format!("f/{i}"), None, 1), i as u64, 0);
    }
    a.handle_member_up(B);
    let parts: Vec<_> = transmits(&mut a)
        .into_iter()
        .filter(|(_, m)| matches!(m, Message::RouteSnapshot(_)))
        .collect();
    assert_eq!(parts.len(), 2);
    let mut b = RouteRelay::new(B, 2, 1);
    b.handle_member_up(A);
    for (_, m) in parts {
        let Message::RouteSnapshot(s) = m else {
            panic!()
        };
        b.handle_route_snapshot(A, s);
    }
    match &events(&mut b)[..] {
        [RouteEvent::Replace { changes, .. }] => {
            assert_eq!(changes.len(), ROUTE_SNAPSHOT_CHUNK_ENTRIES_MAX + 5)
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_snapshot_that_came_before_the_member_up_is_asked_for_again() {
    let mut a = RouteRelay::new(A, 1, 1);
    let mut b = RouteRelay::new(B, 2, 1);
    a.handle_interest(0, &change("t", None, 1), 1, 0);
    // A learns of B first; its snapshot reaches B before B learns of A.
    a.handle_member_up(B);
    for (_, m) in transmits(&mut a) {
        if let Message::RouteSnapshot(s) = m {
            b.handle_route_snapshot(A, s);
        }
    }
    assert!(
        events(&mut b).is_empty(),
        "ignored: A is not a running peer yet"
    );
    b.handle_member_up(A);
    settle(&mut [(A, &mut a), (B, &mut b)]);
    assert!(b.routes_complete() && a.routes_complete());
}

proptest::proptest! {
    /// Whatever the order of shard changes, a peer that applied every
    /// frame holds exactly the filters some shard of the node holds.
    #[test]
    fn the_peer_view_follows_the_union_of_the_shards(
        ops in proptest::collection::vec((0u16..2, 0usize..4, 0u32..3), 1..60),
    ) {
        let filters = ["a", "b/+", "c/#", "d"];
        let (mut a, mut b) = pair();
        let mut shards = [[0u32; 4]; 2];
        let mut view: std::collections::BTreeSet<String> = Default::default();
        for (token, &(shard, f, members)) in ops.iter().enumerate() {
            shards[usize::from(shard)][f] = members;
            a.handle_interest(shard, &change(filters[f], None, members), token as u64, token as u64);
            // Apply B's route events as a shard would.
            loop {
                settle_once(&mut a, &mut b, &mut view);
                if a.poll_transmit_is_empty() { break; }
            }
        }
        let expected: std::collections::BTreeSet<String> = (0..4)
            .filter(|&f| shards.iter().any(|s| s[f] > 0))
            .map(|f| filters[f].to_string())
            .collect();
        proptest::prop_assert_eq!(view, expected);
        let released = std::iter::from_fn(|| a.poll_event())
            .filter(|e| matches!(e, RouteEvent::Released { .. }))
            .count();
        proptest::prop_assert_eq!(released, ops.len(), "one release per call");
    }
}

/// One round of frames A -> B -> A, B's events applied to `view`.
fn settle_once(
    a: &mut RouteRelay,
    b: &mut RouteRelay,
    view: &mut std::collections::BTreeSet<String>,
) {
    while let Some((_, m)) = a.transmits.pop_front() {
        match m {
            Message::RouteChange(c) => b.handle_route_change(A, c),
            Message::RouteSnapshot(s) => b.handle_route_snapshot(A, s),
            Message::RouteSnapshotRequest(q) => b.handle_snapshot_request(A, &q),
            other => panic!("{other:?}"),
        }
    }
    while let Some(e) = b.poll_event() {
        match e {
            RouteEvent::Apply {
                from,
                epoch,
                seq,
                change,
            } => {
                if change.members > 0 {
                    view.insert(change.filter.to_string());
                } else {
                    view.remove(&*change.filter);
                }
                b.handle_applied(from, epoch, seq);
            }
            RouteEvent::Replace {
                from,
                epoch,
                seq,
                changes,
            } => {
                *view = changes.iter().map(|c| c.filter.to_string()).collect();
                b.handle_applied(from, epoch, seq);
            }
            other => panic!("{other:?}"),
        }
    }
    while let Some((_, m)) = b.transmits.pop_front() {
        match m {
            Message::RouteAck(ack) => a.handle_route_ack(B, &ack),
            other => panic!("{other:?}"),
        }
    }
}

impl RouteRelay {
    fn poll_transmit_is_empty(&self) -> bool {
        self.transmits.is_empty()
    }
}
