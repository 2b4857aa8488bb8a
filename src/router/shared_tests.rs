use std::collections::BTreeMap;

use super::SharedStrategy;
use crate::codec::{ByteStr, QoS, SubscriptionOptions};
use crate::router::{InterestChange, Location, NodeId, Route, Router, SharedKey};

const HERE: NodeId = NodeId(1);

fn b(s: &str) -> ByteStr {
    ByteStr::from(s)
}

fn key() -> SharedKey {
    SharedKey {
        group: b("g"),
        filter: b("t/#"),
    }
}

fn members(n: u32) -> InterestChange {
    InterestChange {
        filter: b("t/#"),
        group: Some(b("g")),
        members: n,
    }
}

fn opts() -> SubscriptionOptions {
    SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    }
}

/// Shard 0 of this node (2 shards) with `strategy`.
fn router(strategy: SharedStrategy) -> Router {
    let mut r = Router::new(Location::new(HERE, 0), 2);
    r.set_shared_strategy(strategy, 42);
    r
}

/// The locations `n` publishes to `t/1` pick, counted.
fn picks(r: &mut Router, n: usize) -> BTreeMap<Location, usize> {
    let mut route = Route::default();
    let mut out = BTreeMap::new();
    for _ in 0..n {
        r.route("t/1", None, &mut route, &mut Vec::new());
        assert_eq!(route.shared.len(), 1, "one pick per matching group");
        *out.entry(route.shared[0].0).or_default() += 1;
    }
    out
}

#[test]
fn strategy_names_round_trip() {
    for s in SharedStrategy::ALL {
        assert_eq!(SharedStrategy::parse(s.as_str()), Some(s));
    }
    assert_eq!(
        SharedStrategy::parse(" Round_Robin "),
        Some(SharedStrategy::RoundRobin)
    );
    assert_eq!(SharedStrategy::parse("sticky"), None);
    assert_eq!(SharedStrategy::default(), SharedStrategy::RoundRobin);
}

#[test]
fn round_robin_gives_every_member_cluster_wide_its_share() {
    // One member on this node's shard 1, one on node 2, one on node 3.
    let mut r = router(SharedStrategy::RoundRobin);
    r.apply_interest(1, &members(1));
    let (n2, n3) = (Location::new(NodeId(2), 0), Location::new(NodeId(3), 0));
    r.apply_remote_interest(n2, &members(1));
    r.apply_remote_interest(n3, &members(1));
    let got = picks(&mut r, 300);
    assert_eq!(got.len(), 3, "{got:?}");
    assert!(got.values().all(|&n| n == 100), "{got:?}");

    // Weighted by members: node 2 now has 2 members, so half the picks.
    r.apply_remote_interest(n2, &members(2));
    let got = picks(&mut r, 400);
    assert_eq!(got[&n2], 200, "{got:?}");
    assert_eq!(got[&n3], 100, "{got:?}");
}

#[test]
fn random_spreads_by_members_and_differs_from_round_robin() {
    let mut r = router(SharedStrategy::Random);
    r.apply_interest(1, &members(1));
    let (n2, n3) = (Location::new(NodeId(2), 0), Location::new(NodeId(3), 0));
    r.apply_remote_interest(n2, &members(2));
    r.apply_remote_interest(n3, &members(1));
    let got = picks(&mut r, 4000);
    // Expected 1000 / 2000 / 1000; a fair source stays well within 15 %.
    let near = |n: usize, want: usize| n.abs_diff(want) < want * 15 / 100;
    assert!(near(got[&Location::new(HERE, 1)], 1000), "{got:?}");
    assert!(near(got[&n2], 2000), "{got:?}");
    assert!(near(got[&n3], 1000), "{got:?}");
    // Not a cycle: round robin would repeat the same 4-pick pattern.
    let mut route = Route::default();
    let seq: Vec<Location> = (0..40)
        .map(|_| {
            r.route("t/1", None, &mut route, &mut Vec::new());
            route.shared[0].0
        })
        .collect();
    assert!(seq.chunks(4).any(|c| c != &seq[..4]), "{seq:?}");
}

#[test]
fn local_prefers_this_nodes_members_while_any() {
    let mut r = router(SharedStrategy::Local);
    let (n2, n3) = (Location::new(NodeId(2), 0), Location::new(NodeId(3), 0));
    r.apply_remote_interest(n2, &members(5));
    r.apply_remote_interest(n3, &members(1));
    // None here: the other nodes' members in turn, weighted.
    let got = picks(&mut r, 60);
    assert_eq!((got[&n2], got[&n3]), (50, 10), "{got:?}");
    // Members on both shards of this node: only they are picked.
    r.apply_interest(1, &members(1));
    let o = r.subscribe(&b("m0"), &b("$share/g/t/#"), opts(), None);
    assert!(o.interest.is_some());
    let got = picks(&mut r, 100);
    assert_eq!(
        got,
        BTreeMap::from([(Location::new(HERE, 0), 50), (Location::new(HERE, 1), 50)])
    );
    // The local members leave: the other nodes again.
    r.apply_interest(1, &members(0));
    r.unsubscribe(&b("m0"), "$share/g/t/#");
    let got = picks(&mut r, 6);
    assert!(got.keys().all(|at| !at.is_on(HERE)), "{got:?}");
}

#[test]
fn a_pick_for_this_node_stays_on_this_node() {
    for strategy in SharedStrategy::ALL {
        let mut r = router(strategy);
        r.apply_remote_interest(Location::new(NodeId(2), 0), &members(3));
        assert_eq!(r.pick_shared_on_node(&key()), None, "{strategy:?}");
        r.apply_interest(1, &members(1));
        r.subscribe(&b("m0"), &b("$share/g/t/#"), opts(), None);
        let mut shards = BTreeMap::<u16, usize>::new();
        for _ in 0..200 {
            let s = r.pick_shared_on_node(&key()).expect("members here");
            *shards.entry(s).or_default() += 1;
        }
        assert_eq!(shards.len(), 2, "{strategy:?}: {shards:?}");
        assert!(
            shards.values().all(|&n| n >= 60),
            "{strategy:?}: {shards:?}"
        );
        assert_eq!(
            r.pick_shared_on_node(&SharedKey {
                group: b("other"),
                filter: b("t/#")
            }),
            None
        );
    }
}

#[test]
fn local_members_are_picked_by_the_strategy() {
    for strategy in SharedStrategy::ALL {
        let mut r = router(strategy);
        for c in ["a", "b", "c"] {
            r.subscribe(&b(c), &b("$share/g/t/#"), opts(), None);
        }
        let mut got = BTreeMap::<String, usize>::new();
        for _ in 0..300 {
            let pick = r.pick_shared_member(&key()).unwrap();
            *got.entry(pick.recipient.client.to_string()).or_default() += 1;
        }
        assert_eq!(got.len(), 3, "{strategy:?}: {got:?}");
        if strategy == SharedStrategy::Random {
            assert!(got.values().all(|&n| (70..=130).contains(&n)), "{got:?}");
            assert!(
                got.values().any(|&n| n != 100),
                "random, not a cycle: {got:?}"
            );
        } else {
            assert!(got.values().all(|&n| n == 100), "{strategy:?}: {got:?}");
        }
    }
}
