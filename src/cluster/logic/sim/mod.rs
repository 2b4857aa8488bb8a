//! A seeded, deterministic simulation of N nodes running the cluster logic
//! (issue 13 item 8; TigerBeetle's VOPR and quinn's `Pair` are the models).
//!
//! Each node is the logic of this module's siblings glued as the cluster
//! thread will glue it, over a model of its shards' sessions
//! (`node::SimNode`). The network (`net`) carries encoded frames over
//! per-pair connections with a control and a data queue of their own
//! latencies; membership is an oracle that declares a crashed or cut-off
//! node down after a detection delay, as foca would. Random clients
//! connect (taking sessions over across nodes), subscribe, unsubscribe,
//! publish at QoS 0 and 1 and disconnect; faults crash and restart nodes
//! (new boot epoch), partition the cluster and heal it, and break links
//! (everything in flight is lost). Time, randomness and ordering all come
//! from the seed, so a failure replays exactly (`cluster_sim --seed`).
//!
//! Invariants, checked after every step:
//! * no node keeps a route to a node it has declared down;
//! * at most one owner per client id within a connected component, once
//!   `SETTLE_MS` passed since the last fault (a partition's two sides may
//!   each hold one; after healing, one is evicted);
//! * SUBACK implies delivery: a message published after a SUBACK on a node
//!   that acknowledged the route reaches the subscriber's session (where
//!   it is now, takeovers included) within `DELIVERY_DEADLINE_MS`, unless a
//!   fault happened since `QUIET_MS` before the SUBACK or the QoS 0
//!   message was dropped by a full window (counted) -- this also covers
//!   "no acknowledged QoS 1 message is lost while no node died";
//! * per publisher and subscriber, messages arrive in order (checked on
//!   every delivery), each once.

mod check;
mod faults;
mod net;
mod node;
mod world;

use std::collections::{BTreeMap, BTreeSet};

use crate::limits::{
    CLAIM_TIMEOUT_MS, ROUTE_ACK_TIMEOUT_MS, TAKEOVER_LINGER_MS, TAKEOVER_TIMEOUT_MS,
};
use crate::router::location::NodeId;
use crate::router::topic::matches;
use net::Net;
use node::{Ctx, SimNode};
use world::World;

/// A message published after a SUBACK must be queued for its subscriber
/// within this time (latencies are tens of ms; a takeover lingers).
pub const DELIVERY_DEADLINE_MS: u64 = 2 * TAKEOVER_LINGER_MS + 2_000;

/// The single-owner check waits this long after a fault: a takeover cut
/// by it ends by timeouts, and owners reconcile through their homes.
pub const SETTLE_MS: u64 = CLAIM_TIMEOUT_MS + TAKEOVER_TIMEOUT_MS + TAKEOVER_LINGER_MS + 2_000;

/// Failure detection delay range of the membership oracle (foca: ~4 s).
const DETECT_MS: (u64, u64) = (1_000, 4_000);
const JOIN_MS: (u64, u64) = (20, 300);

/// A SUBACK owes deliveries only this long after the last fault: before,
/// a link may be cut without either side knowing yet (the routes were
/// there, the frames are lost), or views may still be converging.
const QUIET_MS: u64 = DETECT_MS.1 + JOIN_MS.1 + ROUTE_ACK_TIMEOUT_MS;

const TOPICS: [&str; 8] = ["t/0", "t/1", "t/2", "t/3", "t/4", "t/5", "t/6", "t/7"];
/// Mostly exact filters, so a new subscription is often a new route (a
/// broad filter held elsewhere would carry every message to every node).
const FILTERS: [&str; 10] = [
    "t/0", "t/1", "t/2", "t/3", "t/4", "t/5", "t/6", "t/7", "+/1", "t/#",
];

#[derive(Debug, Clone)]
pub struct SimConfig {
    pub seed: u64,
    pub nodes: usize,
    pub shards: u16,
    pub clients: usize,
    pub steps: u64,
    /// Crashes, partitions and link breaks.
    pub faults: bool,
    pub latency_max_ms: u64,
    /// Keep every trace line (else only their hash).
    pub keep_trace: bool,
    /// Break the glue on purpose, to show the checks catch it (tests).
    pub sabotage: Option<Sabotage>,
}

/// Deliberate bugs the invariant checks must catch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sabotage {
    /// SUBACK as soon as the SUBSCRIBE is applied locally, without the
    /// peers' acknowledgements.
    SubackWithoutAcks,
    /// A moving session's deliveries are not held for its new owner.
    NoHolding,
}

impl SimConfig {
    pub fn small(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            nodes: 3 + (seed % 3) as usize,
            shards: 2,
            clients: 8,
            steps: 3_000,
            faults: true,
            latency_max_ms: 30,
            keep_trace: false,
            sabotage: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimReport {
    pub trace_hash: u64,
    pub steps: u64,
    pub sim_time_ms: u64,
    pub publishes: u64,
    pub deliveries: u64,
    pub expectations_met: u64,
    pub faults: u64,
    pub frames_sent: u64,
    pub frames_lost: u64,
    pub trace: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimFailure {
    pub seed: u64,
    pub step: u64,
    pub now_ms: u64,
    pub message: String,
    /// The trace up to the failure (with `keep_trace`).
    pub trace: Vec<String>,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "cluster simulation failed: seed {} step {} (t = {} ms): {}\n  replay: cargo run \
             --release --example cluster_sim -- --seed {} (with the same --nodes/--steps)",
            self.seed, self.step, self.now_ms, self.message, self.seed
        )
    }
}

/// A membership change the oracle will announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Scheduled {
    Down { at: NodeId, peer: NodeId },
    Up { at: NodeId, peer: NodeId },
    Restart { node: NodeId },
}

struct Sim {
    config: SimConfig,
    rng: fastrand::Rng,
    net: Net,
    world: World,
    ids: Vec<NodeId>,
    nodes: BTreeMap<NodeId, Option<SimNode>>,
    /// Partition side of each node (all 0 when healed).
    side: BTreeMap<NodeId, u8>,
    schedule: BTreeSet<(u64, u64, Scheduled)>,
    schedule_seq: u64,
    publishes: u64,
    faults: u64,
}

/// Runs one simulation; `Err` names the seed and step of the first
/// broken invariant.
pub fn run(config: SimConfig) -> Result<SimReport, SimFailure> {
    let mut sim = Sim::new(config);
    let mut step = 0;
    while step < sim.config.steps {
        step += 1;
        sim.step();
        if let Some(message) = sim.check() {
            return Err(SimFailure {
                seed: sim.config.seed,
                step,
                now_ms: sim.world.now_ms,
                message,
                trace: sim.world.trace.lines.take().unwrap_or_default(),
            });
        }
    }
    Ok(SimReport {
        trace_hash: sim.world.trace.hash,
        steps: step,
        sim_time_ms: sim.world.now_ms,
        publishes: sim.publishes,
        deliveries: sim.world.deliveries,
        expectations_met: sim.world.expectations_met,
        faults: sim.faults,
        frames_sent: sim.net.frames_sent,
        frames_lost: sim.net.frames_lost,
        trace: sim.world.trace.lines.take().unwrap_or_default(),
    })
}

impl Sim {
    fn new(config: SimConfig) -> Sim {
        let mut rng = fastrand::Rng::with_seed(config.seed);
        let ids: Vec<NodeId> = (0..config.nodes)
            .map(|i| NodeId::from_name(&format!("ringmq@10.0.{}.{}", i / 256, i % 256)))
            .collect();
        let mut net = Net::default();
        let world = World::new(config.keep_trace);
        let mut nodes = BTreeMap::new();
        for &id in &ids {
            nodes.insert(
                id,
                Some(SimNode::new(id, 1, config.shards, config.sabotage)),
            );
        }
        for (i, &a) in ids.iter().enumerate() {
            for &b in &ids[i + 1..] {
                net.connect(&mut rng, a, b, config.latency_max_ms);
            }
        }
        // Everyone joins at once; announcements arrive as foca spreads them.
        let side = ids.iter().map(|&id| (id, 0)).collect();
        let mut sim = Sim {
            config,
            rng,
            net,
            world,
            ids,
            nodes,
            side,
            schedule: BTreeSet::new(),
            schedule_seq: 0,
            publishes: 0,
            faults: 0,
        };
        for &a in &sim.ids.clone() {
            for &b in &sim.ids.clone() {
                if a != b {
                    let at = sim.rng.u64(JOIN_MS.0..=JOIN_MS.1);
                    sim.at(at, Scheduled::Up { at: a, peer: b });
                }
            }
        }
        sim
    }

    fn at(&mut self, at_ms: u64, what: Scheduled) {
        self.schedule_seq += 1;
        self.schedule.insert((at_ms, self.schedule_seq, what));
    }

    fn alive(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.is_some())
            .map(|(&id, _)| id)
            .collect()
    }

    /// Calls `f` on a live node with a context.
    fn with_node(&mut self, id: NodeId, f: impl FnOnce(&mut SimNode, &mut Ctx<'_>)) {
        if let Some(Some(node)) = self.nodes.get_mut(&id) {
            let mut cx = Ctx {
                net: &mut self.net,
                rng: &mut self.rng,
                world: &mut self.world,
            };
            f(node, &mut cx);
        }
    }

    fn step(&mut self) {
        self.world.now_ms += self.rng.u64(1..=10);
        let now = self.world.now_ms;
        for p in self.net.due(now) {
            let m = p.message();
            self.world.log(format_args!(
                "{} -> {} kind {} {}B",
                p.from,
                p.to,
                p.kind,
                p.body.len()
            ));
            self.with_node(p.to, |n, cx| n.receive(p.from, m, cx));
        }
        while let Some(&(at, seq, what)) = self.schedule.first() {
            if at > now {
                break;
            }
            self.schedule.remove(&(at, seq, what));
            self.world.log(format_args!("membership {what:?}"));
            self.membership(what);
        }
        for id in self.alive() {
            let due = self.nodes[&id].as_ref().and_then(|n| n.next_timeout());
            if due.is_some_and(|t| t <= now) {
                self.with_node(id, |n, cx| n.timeout(cx));
            }
        }
        for (filter, node) in std::mem::take(&mut self.world.fresh_subacks) {
            if self.rng.bool() {
                self.publish_elsewhere(&filter, node);
            }
        }
        let roll = self.rng.u32(0..1000);
        if self.config.faults && roll < 1 && self.schedule.is_empty() {
            self.fault();
        } else if roll < 600 {
            self.client_action();
        }
    }

    /// Where `client` is online and settled: (node, ...).
    fn online_at(&self, client: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|(_, n)| n.as_ref().is_some_and(|n| n.online(client).is_some()))
            .map(|(&id, _)| id)
    }

    fn client_action(&mut self) {
        let client = format!("c{}", self.rng.usize(..self.config.clients));
        let at = self.online_at(&client);
        let roll = self.rng.u32(0..100);
        match (roll, at) {
            (0..=69, Some(node)) => {
                let topic = TOPICS[self.rng.usize(..TOPICS.len())];
                let qos = self.rng.u8(0..=1);
                self.world
                    .log(format_args!("{client} publish {topic} qos {qos} on {node}"));
                let mut id = None;
                self.with_node(node, |n, cx| id = n.publish(&client, topic, qos, cx));
                if let Some(id) = id {
                    self.world.log(format_args!("{client} published {id:?}"));
                    self.publishes += 1;
                    self.expect(id, node);
                }
            }
            (70..=84, Some(node)) => {
                let filter = FILTERS[self.rng.usize(..FILTERS.len())];
                self.world
                    .log(format_args!("{client} subscribe {filter} on {node}"));
                self.with_node(node, |n, cx| n.subscribe(&client, filter, cx));
            }
            (85..=89, Some(node)) => {
                let filter = FILTERS[self.rng.usize(..FILTERS.len())];
                self.world
                    .log(format_args!("{client} unsubscribe {filter} on {node}"));
                self.with_node(node, |n, cx| n.unsubscribe(&client, filter, cx));
            }
            (90..=91, Some(node)) => {
                self.world
                    .log(format_args!("{client} disconnect on {node}"));
                self.with_node(node, |n, _| n.disconnect(&client));
            }
            _ => {
                // A node accepts clients once it has joined: every
                // announced peer known and every peer's routes received.
                let joining: BTreeSet<NodeId> = self
                    .schedule
                    .iter()
                    .filter_map(|(_, _, s)| match s {
                        Scheduled::Up { at, .. } => Some(*at),
                        _ => None,
                    })
                    .collect();
                let ready: Vec<NodeId> = self
                    .nodes
                    .iter()
                    .filter(|(id, n)| {
                        !joining.contains(id) && n.as_ref().is_some_and(|n| n.ready())
                    })
                    .map(|(&id, _)| id)
                    .collect();
                if ready.is_empty() {
                    return;
                }
                let node = ready[self.rng.usize(..ready.len())];
                let shard = self.rng.u16(0..self.config.shards);
                self.world
                    .log(format_args!("{client} connect on {node}/{shard}"));
                self.with_node(node, |n, cx| n.connect(&client, shard, cx));
            }
        }
    }

    /// Right after a SUBACK on `node`, a client online on another node
    /// publishes to a topic the filter matches.
    fn publish_elsewhere(&mut self, filter: &str, node: NodeId) {
        let topics: Vec<&str> = TOPICS
            .iter()
            .copied()
            .filter(|t| matches(filter, t))
            .collect();
        let publishers: Vec<(String, NodeId)> = (0..self.config.clients)
            .map(|i| format!("c{i}"))
            .filter_map(|c| self.online_at(&c).map(|at| (c, at)))
            .filter(|&(_, at)| at != node)
            .collect();
        if topics.is_empty() || publishers.is_empty() {
            return;
        }
        let topic = topics[self.rng.usize(..topics.len())];
        let (client, at) = publishers[self.rng.usize(..publishers.len())].clone();
        let qos = self.rng.u8(0..=1);
        let mut id = None;
        self.with_node(at, |n, cx| id = n.publish(&client, topic, qos, cx));
        if let Some(id) = id {
            self.world.log(format_args!(
                "{client} published {id:?} after a SUBACK on {node}"
            ));
            self.publishes += 1;
            self.expect(id, at);
        }
    }
}

#[cfg(test)]
mod tests;
