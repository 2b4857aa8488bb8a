//! Router micro-benchmarks on a large, realistic subscription set.
//!
//! The set (`filters()`, 100,000 filters, one client each) models a fleet of
//! devices `site/{s}/device/{d}/sensor/{k}`: mostly exact filters (devices
//! and dashboards on one sensor), with `+` and `#` filters at the levels
//! where applications usually put them. A topic like
//! `site/3/device/17/sensor/5` matches six of them.
//!
//! - `route`: the publishing shard's interest walk (which shards get it).
//! - `local_recipients`: the receiving shard's walk plus the per-client merge.
//! - `retained_for_each_match`: a SUBSCRIBE's lookup in 100,000 retained topics.
//! - `trie_churn` / `router_churn`: one subscribe plus one unsubscribe of a
//!   filter not in the set, on the full set.
//!
//! Run: `cargo bench --bench router`; docs/microbenchmarks.md has results.

use std::hint::black_box;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringmq::codec::{ByteStr, QoS, SubscriptionOptions};
use ringmq::router::{
    InterestChange, Location, NodeId, Recipient, RetainedStore, Route, Router, TopicTrie,
};
use ringmq::session::Message;

const SITES: u32 = 40;
const DEVICES_PER_SITE: u32 = 200;
const SENSORS_PER_DEVICE: u32 = 10;
const SUBSCRIPTIONS: usize = 100_000;

/// 100,000 distinct filters:
/// - 80,000 exact `site/{s}/device/{d}/sensor/{k}`;
/// - 8,000 `site/{s}/device/{d}/sensor/+` (all sensors of a device);
/// - 2,000 `site/+/device/{d}/sensor/{k}` (one sensor across sites);
/// - 400 `site/{s}/device/+/sensor/{k}` (one sensor across a site);
/// - 8,000 `site/{s}/device/{d}/#` (everything of a device);
/// - 40 `site/{s}/#` (a site's dashboard);
/// - the rest exact `fleet/{n}/status`, to reach 100,000.
fn filters() -> Vec<String> {
    let mut out = Vec::with_capacity(SUBSCRIPTIONS);
    for s in 0..SITES {
        for d in 0..DEVICES_PER_SITE {
            for k in 0..SENSORS_PER_DEVICE {
                out.push(format!("site/{s}/device/{d}/sensor/{k}"));
            }
            out.push(format!("site/{s}/device/{d}/sensor/+"));
            out.push(format!("site/{s}/device/{d}/#"));
        }
        for k in 0..SENSORS_PER_DEVICE {
            out.push(format!("site/{s}/device/+/sensor/{k}"));
        }
        out.push(format!("site/{s}/#"));
    }
    for d in 0..DEVICES_PER_SITE {
        for k in 0..SENSORS_PER_DEVICE {
            out.push(format!("site/+/device/{d}/sensor/{k}"));
        }
    }
    let mut n = 0;
    while out.len() < SUBSCRIPTIONS {
        out.push(format!("fleet/{n}/status"));
        n += 1;
    }
    out
}

/// Topics to publish to, with how many of `filters()` each matches.
const TOPICS: [(&str, &str, usize); 4] = [
    ("sensor_6_filters", "site/3/device/17/sensor/5", 6),
    ("log_2_filters", "site/3/device/17/log/raw", 2),
    ("fleet_exact_1_filter", "fleet/123/status", 1),
    ("no_match", "plant/3/line/17/sensor/5", 0),
];

/// Shard 0 of 2, holding every subscription locally (one client per filter).
/// Shard 1 announced interest in every other filter, so `route` reports
/// both shards for most topics, as on a real two-shard node.
fn router() -> Router {
    let mut router = Router::new(Location::new(NodeId::from_name("bench@127.0.0.1"), 0), 2);
    let options = SubscriptionOptions {
        qos: QoS::AtLeastOnce,
        ..SubscriptionOptions::default()
    };
    for (i, filter) in filters().into_iter().enumerate() {
        let filter = ByteStr::from(filter);
        let client = ByteStr::from(format!("client-{i}"));
        router.subscribe(&client, &filter, options, None);
        if i % 2 == 0 {
            router.apply_interest(
                1,
                &InterestChange {
                    filter,
                    group: None,
                    members: 1,
                },
            );
        }
    }
    router
}

fn bench_route(c: &mut Criterion) {
    let mut router = router();
    let mut group = c.benchmark_group("route_100k");
    let mut route = Route::default();
    let mut local = Vec::new();
    for (name, topic, _) in TOPICS {
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                router.route(black_box(topic), None, &mut route, &mut local);
                route.shards.len()
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("local_recipients_100k");
    let mut recipients: Vec<Recipient> = Vec::new();
    for (name, topic, matches) in TOPICS {
        router.local_recipients(topic, None, &mut recipients);
        assert_eq!(recipients.len(), matches, "{topic}");
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                router.local_recipients(black_box(topic), None, &mut recipients);
                recipients.len()
            })
        });
    }
    group.finish();
}

fn message(topic: &str) -> Arc<Message> {
    Arc::new(Message {
        topic: ByteStr::from(topic),
        payload: Bytes::from_static(&[0x5a; 64]),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: None,
        origin: None,
        expires_at: None,
        id: None,
    })
}

/// 100,000 retained topics `site/{s}/device/{d}/sensor/{k}`, s < 50.
fn retained() -> RetainedStore<Arc<Message>> {
    let mut store = RetainedStore::new(SUBSCRIPTIONS);
    for s in 0..50 {
        for d in 0..DEVICES_PER_SITE {
            for k in 0..SENSORS_PER_DEVICE {
                let topic = format!("site/{s}/device/{d}/sensor/{k}");
                let m = message(&topic);
                store.set(&m.topic, Some(m.clone())).expect("below cap");
            }
        }
    }
    assert_eq!(store.len(), SUBSCRIPTIONS);
    store
}

fn bench_retained(c: &mut Criterion) {
    let store = retained();
    let mut group = c.benchmark_group("retained_for_each_match_100k");
    let cases = [
        ("exact", "site/7/device/42/sensor/3", 1),
        ("plus_device", "site/7/device/+/sensor/3", 200),
        ("plus_site_and_sensor", "site/+/device/42/sensor/+", 500),
        ("hash_site", "site/7/#", 2_000),
        ("no_match", "plant/#", 0),
    ];
    for (name, filter, matches) in cases {
        let mut found = 0;
        store.for_each_match(filter, |_, _| found += 1);
        assert_eq!(found, matches, "{filter}");
        // Elements: retained messages handed out per second.
        group.throughput(Throughput::Elements(matches.max(1) as u64));
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| {
                let mut found = Vec::with_capacity(matches);
                store.for_each_match(black_box(filter), |_, m| found.push(m.clone()));
                found
            })
        });
    }
    group.finish();
}

/// Filters not in `filters()`, cycled through by the churn benchmarks.
fn churn_filters(wildcard: bool) -> Vec<String> {
    (0..1_000)
        .map(|i| {
            if wildcard {
                format!("site/{}/device/+/actuator/{i}", i % SITES)
            } else {
                format!("site/{}/device/{i}/actuator/valve", i % SITES)
            }
        })
        .collect()
}

fn bench_churn(c: &mut Criterion) {
    let mut trie: TopicTrie<u32> = TopicTrie::new();
    for (i, filter) in filters().iter().enumerate() {
        *trie.entry(filter) = i as u32;
    }
    let mut group = c.benchmark_group("trie_churn_100k");
    for (name, wildcard) in [("exact", false), ("wildcard", true)] {
        let extra = churn_filters(wildcard);
        let mut next = extra.iter().cycle();
        group.bench_function(BenchmarkId::new("insert_remove", name), |b| {
            b.iter(|| {
                let filter = next.next().expect("cycle");
                *trie.entry(filter) = 1;
                trie.remove(filter)
            })
        });
    }
    assert_eq!(trie.len(), SUBSCRIPTIONS);
    group.finish();

    let mut router = router();
    let options = SubscriptionOptions::default();
    let client = ByteStr::from_static("churn-client");
    let mut group = c.benchmark_group("router_churn_100k");
    for (name, wildcard) in [("exact", false), ("wildcard", true)] {
        let extra: Vec<ByteStr> = churn_filters(wildcard)
            .into_iter()
            .map(ByteStr::from)
            .collect();
        let mut next = extra.iter().cycle();
        group.bench_function(BenchmarkId::new("subscribe_unsubscribe", name), |b| {
            b.iter(|| {
                let filter = next.next().expect("cycle");
                let added = router.subscribe(&client, filter, options, None);
                let removed = router.unsubscribe(&client, filter);
                (added.interest.is_some(), removed.interest.is_some())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_route, bench_retained, bench_churn);
criterion_main!(benches);
