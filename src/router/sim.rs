//! Deterministic simulation: `SHARDS` routers exchanging `InterestChange`s
//! instantly, driven by random subscribes, unsubscribes, client removals,
//! interest resyncs and publishes, checked against a naive model (every
//! client's raw filters, matched with `topic::matches`).
//!
//! Every run is a function of its seed; a failure names it, and
//! `RINGMQ_SIM_SEED=<seed> cargo test --lib router::sim` replays just that one.

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};

use fastrand::Rng;

use super::location::{Location, NodeId};
use super::routing::{InterestChange, Recipient, Route, Router, ShardId, SharedKey};
use super::topic::{matches, parse_shared};
use crate::codec::{ByteStr, QoS, SubscriptionOptions};

const SHARDS: u16 = 3;
/// Client `i` lives on shard `i % SHARDS`.
const CLIENTS: usize = 9;
const STEPS: usize = 400;
const SEEDS: u64 = 200;
const LEVELS: [&str; 5] = ["a", "b", "c", "", "$s"];
const GROUPS: [&str; 2] = ["g1", "g2"];

type Model = Vec<BTreeMap<String, (SubscriptionOptions, Option<u32>)>>;

struct Sim {
    rng: Rng,
    routers: Vec<Router>,
    /// Per client: raw filter -> (options, identifier).
    model: Model,
    clients: Vec<ByteStr>,
    route: Route,
    out: Vec<Recipient>,
}

fn shard_of(client: usize) -> usize {
    client % usize::from(SHARDS)
}

impl Sim {
    fn new(seed: u64) -> Sim {
        Sim {
            rng: Rng::with_seed(seed),
            routers: (0..SHARDS)
                .map(|s| Router::new(Location::new(NodeId(1), s), SHARDS))
                .collect(),
            model: vec![BTreeMap::new(); CLIENTS],
            clients: (0..CLIENTS)
                .map(|i| ByteStr::from(format!("c{i}")))
                .collect(),
            route: Route::default(),
            out: Vec::new(),
        }
    }

    fn topic(&mut self) -> String {
        let n = self.rng.usize(1..=4);
        (0..n)
            .map(|_| LEVELS[self.rng.usize(..LEVELS.len())])
            .collect::<Vec<_>>()
            .join("/")
    }

    fn filter(&mut self) -> String {
        let n = self.rng.usize(1..=3);
        let mut levels: Vec<&str> = (0..n)
            .map(|_| {
                if self.rng.u8(..4) == 0 {
                    "+"
                } else {
                    LEVELS[self.rng.usize(..LEVELS.len())]
                }
            })
            .collect();
        if self.rng.u8(..3) == 0 {
            levels.push("#");
        }
        let mut filter = levels.join("/");
        if filter.is_empty() {
            filter.push('/');
        }
        if self.rng.u8(..3) == 0 {
            format!("$share/{}/{filter}", GROUPS[self.rng.usize(..GROUPS.len())])
        } else {
            filter
        }
    }

    fn broadcast(&mut self, from: usize, change: Option<InterestChange>) {
        let Some(change) = change else { return };
        for (shard, router) in self.routers.iter_mut().enumerate() {
            if shard != from {
                router.apply_interest(from as ShardId, &change);
            }
        }
    }

    fn step(&mut self) {
        match self.rng.u8(..100) {
            0..=29 => self.subscribe(),
            30..=44 => self.unsubscribe(),
            45..=48 => self.remove_client(),
            49..=50 => self.resync(),
            _ => {
                let topic = self.topic();
                let origin = self.rng.usize(..CLIENTS);
                let origin = (self.rng.u8(..4) != 0).then_some(origin);
                let from = match origin {
                    Some(client) => shard_of(client),
                    None => self.rng.usize(..usize::from(SHARDS)),
                };
                self.publish(&topic, from, origin);
            }
        }
    }

    fn subscribe(&mut self) {
        let client = self.rng.usize(..CLIENTS);
        let filter = self.filter();
        let shared = filter.starts_with("$share/");
        let options = SubscriptionOptions {
            qos: QoS::from_u8(self.rng.u8(..3)).unwrap(),
            // No-local on a shared subscription is a protocol error (MQTT-3.8.3-4).
            no_local: !shared && self.rng.bool(),
            retain_as_published: self.rng.bool(),
            retain_handling: 0,
        };
        let identifier = self.rng.bool().then(|| self.rng.u32(1..100));
        let shard = shard_of(client);
        let outcome = self.routers[shard].subscribe(
            &self.clients[client],
            &filter.as_str().into(),
            options,
            identifier,
        );
        let existed = self.model[client]
            .insert(filter.clone(), (options, identifier))
            .is_some();
        assert_eq!(outcome.existed, existed, "subscribe c{client} {filter}");
        self.broadcast(shard, outcome.interest);
    }

    fn unsubscribe(&mut self) {
        let client = self.rng.usize(..CLIENTS);
        let owned: Vec<String> = self.model[client].keys().cloned().collect();
        let filter = if owned.is_empty() || self.rng.u8(..5) == 0 {
            self.filter()
        } else {
            owned[self.rng.usize(..owned.len())].clone()
        };
        let shard = shard_of(client);
        let outcome = self.routers[shard].unsubscribe(&self.clients[client], &filter);
        let existed = self.model[client].remove(&filter).is_some();
        assert_eq!(outcome.existed, existed, "unsubscribe c{client} {filter}");
        self.broadcast(shard, outcome.interest);
    }

    fn remove_client(&mut self) {
        let client = self.rng.usize(..CLIENTS);
        let filters: Vec<ByteStr> = std::mem::take(&mut self.model[client])
            .into_keys()
            .map(ByteStr::from)
            .collect();
        let shard = shard_of(client);
        let mut changes = Vec::new();
        self.routers[shard].remove_client(&self.clients[client], filters, &mut changes);
        for change in changes {
            self.broadcast(shard, Some(change));
        }
    }

    /// One shard forgets another's interest and relearns it from a snapshot,
    /// as after a restart of the link between them.
    fn resync(&mut self) {
        let from = self.rng.usize(..usize::from(SHARDS));
        let to = (from + self.rng.usize(1..usize::from(SHARDS))) % usize::from(SHARDS);
        let snapshot = self.routers[from].interest_snapshot();
        self.routers[to].forget_shard(from as ShardId);
        for change in &snapshot {
            self.routers[to].apply_interest(from as ShardId, change);
        }
    }

    /// Routes one message, delivers it, checks the deliveries against the
    /// model and returns the shared ones as (key, client index).
    fn publish(
        &mut self,
        topic: &str,
        from: usize,
        origin: Option<usize>,
    ) -> Vec<(SharedKey, usize)> {
        let origin_id = origin.map(|c| self.clients[c].to_string());
        let mut routed_here = Vec::new();
        self.routers[from].route(
            topic,
            origin_id.as_deref(),
            &mut self.route,
            &mut routed_here,
        );

        // Ordinary: expected per client, from the model.
        let mut expected: BTreeMap<usize, (QoS, bool, Vec<u32>)> = BTreeMap::new();
        let mut expected_shards: BTreeSet<usize> = BTreeSet::new();
        let mut expected_groups: BTreeSet<(String, String)> = BTreeSet::new();
        for (client, filters) in self.model.iter().enumerate() {
            for (raw, (options, identifier)) in filters {
                match parse_shared(raw).unwrap() {
                    Some(shared) => {
                        if matches(shared.filter, topic) {
                            expected_groups.insert((shared.group.into(), shared.filter.into()));
                        }
                    }
                    None => {
                        if !matches(raw, topic) {
                            continue;
                        }
                        expected_shards.insert(shard_of(client));
                        if options.no_local && origin == Some(client) {
                            continue;
                        }
                        let e =
                            expected
                                .entry(client)
                                .or_insert((QoS::AtMostOnce, false, Vec::new()));
                        e.0 = e.0.max(options.qos);
                        e.1 |= options.retain_as_published;
                        e.2.extend(*identifier);
                    }
                }
            }
        }

        let shards: Vec<usize> = self.route.shards.iter().map(|&s| usize::from(s)).collect();
        assert_eq!(
            shards,
            expected_shards.into_iter().collect::<Vec<_>>(),
            "route.shards for {topic}"
        );
        let mut delivered: BTreeMap<usize, (QoS, bool, Vec<u32>)> = BTreeMap::new();
        for &shard in &shards {
            self.routers[shard].local_recipients(topic, origin_id.as_deref(), &mut self.out);
            if shard == from {
                // The routing shard's own recipients come out of the same
                // walk as the route.
                let key = |r: &Recipient| r.client.clone();
                let mut a = routed_here.clone();
                let mut b = self.out.clone();
                a.sort_by_key(key);
                b.sort_by_key(key);
                assert_eq!(a, b, "route's local recipients for {topic}");
            }
            for r in &self.out {
                let client = self.clients.iter().position(|c| *c == r.client).unwrap();
                assert_eq!(
                    shard_of(client),
                    shard,
                    "{} delivered on the wrong shard",
                    r.client
                );
                let mut ids = r.subscription_ids.to_vec();
                ids.sort();
                let prev = delivered.insert(client, (r.qos, r.retain_as_published, ids));
                assert!(prev.is_none(), "{} got {topic} twice", r.client);
            }
        }
        for e in expected.values_mut() {
            e.2.sort();
        }
        assert_eq!(
            delivered, expected,
            "ordinary deliveries of {topic} (origin {origin:?})"
        );

        // Shared: one delivery per group with a matching member anywhere.
        let mut groups: BTreeSet<(String, String)> = BTreeSet::new();
        let mut picks = Vec::new();
        for (at, key) in self.route.shared.clone() {
            let shard = at.shard;
            let fresh = groups.insert((key.group.to_string(), key.filter.to_string()));
            assert!(fresh, "group {key:?} routed twice for {topic}");
            let r = self.routers[usize::from(shard)]
                .pick_shared(&key)
                .unwrap_or_else(|| panic!("{key:?} routed to shard {shard} without members"));
            let client = self.clients.iter().position(|c| *c == r.client).unwrap();
            assert_eq!(shard_of(client), usize::from(shard));
            let raw = format!("$share/{}/{}", key.group, key.filter);
            let (options, identifier) = self.model[client]
                .get(&raw)
                .unwrap_or_else(|| panic!("{} picked for {raw} it does not hold", r.client));
            assert_eq!(r.qos, options.qos);
            assert_eq!(
                r.subscription_ids.to_vec(),
                identifier.iter().copied().collect::<Vec<_>>()
            );
            picks.push((key, client));
        }
        assert_eq!(groups, expected_groups, "shared groups for {topic}");
        picks
    }

    /// With membership frozen, every member of every group gets some
    /// messages: `SHARDS + 2` rounds of as many publishes as members suffice,
    /// because each origin's picks cycle over all members node-wide and each
    /// shard's picks cycle over its local members.
    fn check_balance(&mut self) {
        let mut members: BTreeMap<(String, String), BTreeSet<usize>> = BTreeMap::new();
        for (client, filters) in self.model.iter().enumerate() {
            for raw in filters.keys() {
                if let Some(shared) = parse_shared(raw).unwrap() {
                    members
                        .entry((shared.group.into(), shared.filter.into()))
                        .or_default()
                        .insert(client);
                }
            }
        }
        for ((group, filter), clients) in members {
            let topic = filter
                .split('/')
                .map(|level| {
                    if level == "+" || level == "#" {
                        "a"
                    } else {
                        level
                    }
                })
                .collect::<Vec<_>>()
                .join("/");
            let mut got: BTreeSet<usize> = BTreeSet::new();
            for _ in 0..(usize::from(SHARDS) + 2) * clients.len() {
                let from = self.rng.usize(..usize::from(SHARDS));
                for (key, client) in self.publish(&topic, from, None) {
                    if key.group == group.as_str() && key.filter == filter.as_str() {
                        got.insert(client);
                    }
                }
            }
            assert_eq!(
                got, clients,
                "members of $share/{group}/{filter} served by {topic}"
            );
        }
    }
}

fn run(seed: u64) {
    let mut sim = Sim::new(seed);
    for _ in 0..STEPS {
        sim.step();
    }
    sim.check_balance();
    // Everyone leaves: every router's view must become empty again.
    for client in 0..CLIENTS {
        let filters: Vec<ByteStr> = std::mem::take(&mut sim.model[client])
            .into_keys()
            .map(ByteStr::from)
            .collect();
        let shard = shard_of(client);
        let mut changes = Vec::new();
        sim.routers[shard].remove_client(&sim.clients[client], filters, &mut changes);
        for change in changes {
            sim.broadcast(shard, Some(change));
        }
    }
    for router in &mut sim.routers {
        assert!(router.interest_snapshot().is_empty());
        router.route("a", None, &mut sim.route, &mut Vec::new());
        assert_eq!(sim.route, Route::default());
    }
}

#[test]
fn routers_deliver_like_the_model() {
    let seeds: Vec<u64> = match std::env::var("RINGMQ_SIM_SEED") {
        Ok(seed) => vec![seed.parse().expect("RINGMQ_SIM_SEED is a u64")],
        Err(_) => (0..SEEDS).collect(),
    };
    for seed in seeds {
        if catch_unwind(AssertUnwindSafe(|| run(seed))).is_err() {
            panic!("simulation failed with seed {seed}; replay: RINGMQ_SIM_SEED={seed} cargo test --lib router::sim");
        }
    }
}
