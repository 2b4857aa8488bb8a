//! Tests of `Router` (`routing.rs`).

use super::*;
use crate::codec::QoS;

fn opts(qos: QoS) -> SubscriptionOptions {
    SubscriptionOptions {
        qos,
        ..Default::default()
    }
}

fn b(s: &str) -> ByteStr {
    s.into()
}

fn recipients(router: &Router, topic: &str, origin: Option<&str>) -> Vec<Recipient> {
    let mut out = Vec::new();
    router.local_recipients(topic, origin, &mut out);
    out.sort_by(|a, b| a.client.cmp(&b.client));
    out
}

/// Shard `shard` of the node these tests run on.
fn at(shard: ShardId) -> Location {
    Location::new(NodeId(1), shard)
}

#[test]
fn interest_changes_only_on_zero_crossings() {
    let mut r = Router::new(at(0), 2);
    let out = r.subscribe(&b("c1"), &b("a/+"), opts(QoS::AtMostOnce), None);
    assert_eq!(
        out,
        SubscribeOutcome {
            existed: false,
            interest: Some(InterestChange {
                filter: b("a/+"),
                group: None,
                members: 1
            })
        }
    );
    let out = r.subscribe(&b("c2"), &b("a/+"), opts(QoS::AtMostOnce), None);
    assert_eq!(
        out,
        SubscribeOutcome {
            existed: false,
            interest: None
        }
    );
    let out = r.subscribe(&b("c2"), &b("a/+"), opts(QoS::ExactlyOnce), None);
    assert_eq!(
        out,
        SubscribeOutcome {
            existed: true,
            interest: None
        }
    );
    assert_eq!(
        r.unsubscribe(&b("c1"), "a/+"),
        UnsubscribeOutcome {
            existed: true,
            interest: None
        }
    );
    assert_eq!(
        r.unsubscribe(&b("c1"), "a/+"),
        UnsubscribeOutcome {
            existed: false,
            interest: None
        }
    );
    assert_eq!(
        r.unsubscribe(&b("c2"), "a/+").interest,
        Some(InterestChange {
            filter: b("a/+"),
            group: None,
            members: 0
        })
    );
    assert_eq!(r.local_filters, 0);
    assert!(r.filters.is_empty());
}

#[test]
fn shared_interest_reports_every_count() {
    let mut r = Router::new(at(1), 2);
    let f = b("$share/g/a/#");
    let change = |members| {
        Some(InterestChange {
            filter: b("a/#"),
            group: Some(b("g")),
            members,
        })
    };
    assert_eq!(
        r.subscribe(&b("c1"), &f, opts(QoS::AtLeastOnce), None)
            .interest,
        change(1)
    );
    assert_eq!(
        r.subscribe(&b("c2"), &f, opts(QoS::AtLeastOnce), None)
            .interest,
        change(2)
    );
    assert!(
        r.subscribe(&b("c2"), &f, opts(QoS::AtMostOnce), None)
            .existed
    );
    assert_eq!(r.unsubscribe(&b("c1"), &f).interest, change(1));
    let mut out = Vec::new();
    r.remove_client(&b("c2"), [f.clone(), b("x")], &mut out);
    assert_eq!(out, vec![change(0).unwrap()]);
    assert!(r.local_shared.is_empty());
    assert!(r.filters.is_empty());
}

#[test]
fn local_recipients_merge_per_client() {
    let mut r = Router::new(at(0), 1);
    let no_local = SubscriptionOptions {
        no_local: true,
        ..opts(QoS::ExactlyOnce)
    };
    let rap = SubscriptionOptions {
        retain_as_published: true,
        ..opts(QoS::AtMostOnce)
    };
    r.subscribe(&b("c1"), &b("a/b"), opts(QoS::AtMostOnce), Some(1));
    r.subscribe(&b("c1"), &b("a/+"), opts(QoS::AtLeastOnce), Some(2));
    r.subscribe(&b("c1"), &b("#"), no_local, Some(3));
    r.subscribe(&b("c2"), &b("a/#"), rap, None);
    r.subscribe(&b("c3"), &b("x"), opts(QoS::AtMostOnce), None);

    let got = recipients(&r, "a/b", Some("c1"));
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].client, "c1");
    assert_eq!(
        got[0].qos,
        QoS::AtLeastOnce,
        "no-local subscription skipped"
    );
    let mut ids = got[0].subscription_ids.to_vec();
    ids.sort();
    assert_eq!(ids, [1, 2]);
    assert!(!got[0].retain_as_published);
    assert_eq!(got[1].client, "c2");
    assert!(got[1].retain_as_published);

    let got = recipients(&r, "a/b", Some("c2"));
    assert_eq!(got[0].qos, QoS::ExactlyOnce);
    assert_eq!(got[0].subscription_ids.to_vec().len(), 3);
    assert_eq!(recipients(&r, "$x", None), vec![]);
}

#[test]
fn route_across_shards_and_shared_round_robin() {
    let mut routers: Vec<Router> = (0..3).map(|s| Router::new(at(s), 3)).collect();
    let broadcast = |routers: &mut Vec<Router>, from: usize, change: Option<InterestChange>| {
        for (s, r) in routers.iter_mut().enumerate() {
            if s != from {
                if let Some(change) = &change {
                    r.apply_interest(from as ShardId, change);
                }
            }
        }
    };
    let o = routers[2].subscribe(&b("x"), &b("t/+"), opts(QoS::AtMostOnce), None);
    broadcast(&mut routers, 2, o.interest);
    let o = routers[1].subscribe(&b("y"), &b("t/1"), opts(QoS::AtMostOnce), None);
    broadcast(&mut routers, 1, o.interest);
    for (shard, client) in [(0, "m0"), (1, "m1"), (1, "m2")] {
        let o =
            routers[shard].subscribe(&b(client), &b("$share/g/t/#"), opts(QoS::AtMostOnce), None);
        broadcast(&mut routers, shard, o.interest);
    }

    let mut route = Route::default();
    routers[0].route("t/1", None, &mut route, &mut Vec::new());
    assert_eq!(route.shards.as_slice(), [1, 2]);
    let key = SharedKey {
        group: b("g"),
        filter: b("t/#"),
    };
    let mut got = Vec::new();
    for _ in 0..6 {
        routers[0].route("t/1", None, &mut route, &mut Vec::new());
        assert_eq!(route.shared.len(), 1);
        let (at, k) = route.shared[0].clone();
        assert_eq!(k, key);
        got.push(
            routers[usize::from(at.shard)]
                .pick_shared(&k)
                .unwrap()
                .client
                .to_string(),
        );
    }
    got.sort();
    assert_eq!(got, ["m0", "m0", "m1", "m1", "m2", "m2"]);

    routers[0].route("u", None, &mut route, &mut Vec::new());
    assert_eq!(route, Route::default());
    assert_eq!(
        routers[0].pick_shared(&SharedKey {
            group: b("h"),
            filter: b("t/#")
        }),
        None
    );

    // A late shard learns everything from snapshots.
    let mut late = Router::new(at(0), 3);
    for (s, r) in routers.iter().enumerate().skip(1) {
        for change in r.interest_snapshot() {
            late.apply_interest(s as ShardId, &change);
        }
    }
    late.route("t/1", None, &mut route, &mut Vec::new());
    assert_eq!(route.shards.as_slice(), [1, 2]);
    assert_eq!(route.shared.len(), 1);
    late.forget_shard(1);
    late.route("t/1", None, &mut route, &mut Vec::new());
    assert_eq!(route.shards.as_slice(), [2]);
    assert!(
        route.shared.is_empty(),
        "`late` knew only shard 1's members"
    );
    late.forget_shard(2);
    assert!(late.filters.is_empty());
}

#[test]
fn shared_pick_hands_out_the_groups_one_key_and_member_count() {
    let mut r = Router::new(at(0), 1);
    for client in ["m0", "m1", "m2"] {
        r.subscribe(&b(client), &b("$share/g/t/#"), opts(QoS::AtLeastOnce), None);
    }
    let key = SharedKey {
        group: b("g"),
        filter: b("t/#"),
    };
    let first = r.pick_shared_member(&key).unwrap();
    assert_eq!(*first.key, key);
    assert_eq!(first.members, 3);
    let second = r.pick_shared_member(&key).unwrap();
    // One `Arc` per group: tagging a delivery allocates nothing.
    assert!(std::sync::Arc::ptr_eq(&first.key, &second.key));
    assert_ne!(first.recipient.client, second.recipient.client);
    r.unsubscribe(&b("m1"), "$share/g/t/#");
    assert_eq!(r.pick_shared_member(&key).unwrap().members, 2);
    r.unsubscribe(&b("m0"), "$share/g/t/#");
    r.unsubscribe(&b("m2"), "$share/g/t/#");
    assert_eq!(r.pick_shared_member(&key), None);
}

#[test]
fn many_shards_bitset() {
    let mut r = Router::new(at(0), 200);
    for s in [1u16, 63, 64, 130, 199] {
        r.apply_interest(
            s,
            &InterestChange {
                filter: b("a/#"),
                group: None,
                members: 1,
            },
        );
    }
    r.apply_interest(
        64,
        &InterestChange {
            filter: b("a"),
            group: None,
            members: 1,
        },
    );
    let mut route = Route::default();
    r.route("a", None, &mut route, &mut Vec::new());
    assert_eq!(route.shards.as_slice(), [1, 63, 64, 130, 199]);
    r.apply_interest(
        130,
        &InterestChange {
            filter: b("a/#"),
            group: None,
            members: 0,
        },
    );
    r.route("a", None, &mut route, &mut Vec::new());
    assert_eq!(route.shards.as_slice(), [1, 63, 64, 199]);
}

/// Another node's routes: named per node in `Route::nodes` (once, however
/// many of its filters match), its shared members picked as one location
/// beside this node's shards, and all of it gone when the node is
/// forgotten.
#[test]
fn another_nodes_interest_routes_to_that_node_once() {
    let other = NodeId(2);
    let mut r = Router::new(at(0), 2);
    let there = Location::new(other, 0);
    let ordinary = |filter: &str, members| InterestChange {
        filter: b(filter),
        group: None,
        members,
    };
    r.apply_remote_interest(there, &ordinary("a/+", 1));
    r.apply_remote_interest(there, &ordinary("a/#", 1));
    r.apply_interest(1, &ordinary("a/b", 1));
    let mut route = Route::default();
    r.route("a/b", None, &mut route, &mut Vec::new());
    assert_eq!(route.shards.as_slice(), [1]);
    assert_eq!(route.nodes.as_slice(), [other]);

    // A shared group with one member on shard 1 and two on the other
    // node: picks follow the members, wherever they are.
    let shared = InterestChange {
        filter: b("s"),
        group: Some(b("g")),
        members: 2,
    };
    r.apply_remote_interest(there, &shared);
    r.apply_interest(
        1,
        &InterestChange {
            members: 1,
            ..shared.clone()
        },
    );
    let mut picks = Vec::new();
    for _ in 0..3 {
        r.route("s", None, &mut route, &mut Vec::new());
        picks.push(route.shared[0].0);
    }
    picks.sort();
    assert_eq!(picks, [at(1), there, there]);

    // The ordinary route is removed per node: one filter left matches.
    r.apply_remote_interest(there, &ordinary("a/+", 0));
    r.route("a/b", None, &mut route, &mut Vec::new());
    assert_eq!(route.nodes.as_slice(), [other]);
    r.forget_node(other);
    r.route("a/b", None, &mut route, &mut Vec::new());
    assert!(route.nodes.is_empty());
    r.route("s", None, &mut route, &mut Vec::new());
    assert_eq!(
        route.shared.iter().map(|(l, _)| *l).collect::<Vec<_>>(),
        [at(1)]
    );
}

#[test]
fn cross_shard_types_are_send() {
    fn send<T: Send>() {}
    send::<InterestChange>();
    send::<SharedKey>();
    send::<Route>();
    send::<Recipient>();
    send::<Location>();
}

#[test]
fn subscription_ids_keep_order_and_zero() {
    use super::SubscriptionIds;
    assert!(SubscriptionIds::one(None).is_empty());
    assert_eq!(SubscriptionIds::one(Some(7)).to_vec(), vec![7]);
    let mut ids: SubscriptionIds = [3, 268_435_455, 1].into_iter().collect();
    ids.push(9);
    assert_eq!(ids.to_vec(), vec![3, 268_435_455, 1, 9]);
    // 0 is not a valid identifier, but a list given one keeps it in place.
    let odd: SubscriptionIds = [0, 5].into_iter().collect();
    assert_eq!(odd.to_vec(), vec![0, 5]);
    assert!(!odd.is_empty());
    assert_eq!(std::mem::size_of::<SubscriptionIds>(), 16);
}
