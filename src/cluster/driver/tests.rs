//! Driver cores wired together in memory: frames go through their real
//! encoding, route batches are applied to a model of each node's shards,
//! deliveries are queued by that model and reported back.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use super::*;
use crate::codec::{ByteStr, QoS};

const T0: u64 = 1_000_000;

fn clock(ms: u64) -> WallClock {
    WallClock {
        instant: Instant::now(),
        unix_ms: ms,
    }
}

fn change(filter: &str, members: u32) -> InterestChange {
    InterestChange {
        filter: ByteStr::from(filter),
        group: None,
        members,
    }
}

/// A routed message: with an id, as `Shard::publish_here` gives every
/// message before it reaches the driver.
fn message(topic: &str, qos: QoS) -> Arc<crate::session::Message> {
    static NEXT_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let seq = NEXT_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Arc::new(crate::session::Message {
        topic: ByteStr::from(topic),
        payload: Bytes::from_static(b"x"),
        qos,
        retain: false,
        properties: None,
        origin: None,
        expires_at: None,
        id: Some(crate::session::MessageId {
            node: 1,
            shard: 0,
            seq,
        }),
    })
}

/// One node: its core and a model of its shards (the remote routes each
/// applied, the forwarded messages each routed).
struct TestNode {
    core: Core,
    routes: Vec<BTreeMap<NodeId, BTreeSet<String>>>,
    delivered: Vec<Vec<(NodeId, ShardId, u64, String)>>,
    /// Deliveries held back (not yet reported queued) while true.
    hold_queued: bool,
    held: Vec<Delivery>,
    up: bool,
}

struct Cluster {
    nodes: BTreeMap<NodeId, TestNode>,
    now_ms: u64,
    /// Route batches are held (not applied) on these nodes.
    hold_routes: BTreeSet<NodeId>,
}

impl Cluster {
    fn new(ids: &[u32], shards: u16) -> Cluster {
        let nodes = ids
            .iter()
            .map(|&i| {
                let id = NodeId(i);
                let node = TestNode {
                    core: Core::new(id, u64::from(i), shards, T0),
                    routes: vec![BTreeMap::new(); usize::from(shards)],
                    delivered: vec![Vec::new(); usize::from(shards)],
                    hold_queued: false,
                    held: Vec::new(),
                    up: true,
                };
                (id, node)
            })
            .collect();
        Cluster {
            nodes,
            now_ms: T0,
            hold_routes: BTreeSet::new(),
        }
    }

    fn node(&mut self, id: u32) -> &mut TestNode {
        self.nodes.get_mut(&NodeId(id)).expect("node")
    }

    /// Every running node learns every other one.
    fn connect_all(&mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for &a in &ids {
            for &b in &ids {
                if a != b {
                    let now = self.now_ms;
                    let n = self.nodes.get_mut(&a).expect("node");
                    n.core.handle_member_up(b, u64::from(b.0), now);
                }
            }
        }
        self.settle();
    }

    /// Runs frames, route batches and deliveries until nothing moves.
    fn settle(&mut self) {
        for _ in 0..1_000 {
            let mut moved = false;
            let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
            for id in ids {
                let mut frames = Vec::new();
                let node = self.nodes.get_mut(&id).expect("node");
                if !node.up {
                    continue;
                }
                while let Some(f) = node.core.poll_frame() {
                    frames.push(f);
                }
                if !self.hold_routes.contains(&id) {
                    while let Some(batch) = node.core.poll_route_batch() {
                        moved = true;
                        for shard in node.routes.iter_mut() {
                            for op in &batch.ops {
                                apply(shard, op);
                            }
                        }
                        node.core.handle_route_batch_done(batch, true);
                    }
                }
                while let Some(d) = node.core.poll_delivery() {
                    moved = true;
                    let target = node.core.target_shard(d.stream);
                    let what = match &d.shared {
                        None => d.message.topic.to_string(),
                        Some(k) => format!("{}>{}", d.message.topic, k.group),
                    };
                    node.delivered[usize::from(target)].push((d.from, d.stream, d.seq, what));
                    if node.hold_queued {
                        node.held.push(d);
                    } else {
                        queued(&mut node.core, &d, self.now_ms);
                    }
                }
                for (to, stream, kind, body) in frames {
                    moved = true;
                    let now = self.now_ms;
                    if let Some(peer) = self.nodes.get_mut(&to).filter(|p| p.up) {
                        peer.core.handle_frame(id, stream, kind, &body, &clock(now));
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the cluster never settled");
    }

    fn advance(&mut self, ms: u64) {
        self.now_ms += ms;
        let now = self.now_ms;
        for n in self.nodes.values_mut().filter(|n| n.up) {
            if n.core.poll_timeout().is_some_and(|t| t <= now) {
                n.core.handle_timeout(now);
            }
        }
        self.settle();
    }

    fn subscribe(&mut self, at: u32, shard: ShardId, filter: &str) -> oneshot::Receiver<()> {
        let (done, released) = oneshot::channel();
        let now = self.now_ms;
        self.node(at).core.handle_request(
            ToDriver::Interest {
                shard,
                change: change(filter, 1),
                done: Some(done),
            },
            &clock(now),
        );
        released
    }

    fn publish(
        &mut self,
        at: u32,
        shard: ShardId,
        to: &[u32],
        topic: &str,
        qos: QoS,
    ) -> Option<oneshot::Receiver<bool>> {
        self.publish_shared(at, shard, to, Vec::new(), topic, qos)
    }

    /// `publish` with shared groups picked on other nodes.
    fn publish_shared(
        &mut self,
        at: u32,
        shard: ShardId,
        to: &[u32],
        shared: Vec<(NodeId, crate::router::SharedKey)>,
        topic: &str,
        qos: QoS,
    ) -> Option<oneshot::Receiver<bool>> {
        let (done, answer) = oneshot::channel();
        let confirmed = qos != QoS::AtMostOnce;
        let now = self.now_ms;
        self.node(at).core.handle_request(
            ToDriver::Forward {
                shard,
                nodes: to.iter().map(|&n| NodeId(n)).collect(),
                shared,
                message: message(topic, qos),
                done: confirmed.then_some(done),
            },
            &clock(now),
        );
        confirmed.then_some(answer)
    }

    /// Node `at`'s shard `shard` routes `topic` to node `to`.
    fn has_route(&self, at: u32, shard: usize, to: u32, topic: &str) -> bool {
        self.nodes[&NodeId(at)].routes[shard]
            .get(&NodeId(to))
            .is_some_and(|f| f.contains(topic))
    }
}

fn apply(shard: &mut BTreeMap<NodeId, BTreeSet<String>>, op: &RouteOp) {
    match op {
        RouteOp::Apply { from, change } => {
            let filters = shard.entry(*from).or_default();
            if change.members > 0 {
                filters.insert(route_name(change));
            } else {
                filters.remove(&route_name(change));
            }
        }
        RouteOp::Replace { from, changes } => {
            let filters = changes.iter().map(route_name).collect();
            shard.insert(*from, filters);
        }
        RouteOp::Forget { node } => {
            shard.remove(node);
        }
        RouteOp::Retain { topic, message } => {
            // Modelled as a route of the pseudo-node 0: set or cleared.
            let retained = shard.entry(NodeId(0)).or_default();
            match message {
                Some(m) => retained.insert(format!("{topic}={}", m.payload.len())),
                None => retained.remove(&format!("{topic}=1")),
            };
        }
    }
}

/// A route as the model keeps it: the filter, or `$share/{group}/{filter}`
/// with the node's member count.
fn route_name(change: &InterestChange) -> String {
    match &change.group {
        None => change.filter.to_string(),
        Some(g) => format!("$share/{g}/{}", change.filter),
    }
}

fn queued(core: &mut Core, d: &Delivery, now: u64) {
    core.handle_request(
        ToDriver::Queued {
            from: d.from,
            stream: d.stream,
            seq: d.seq,
        },
        &clock(now),
    );
}

fn answered<T>(rx: &mut oneshot::Receiver<T>) -> Option<T> {
    rx.try_recv().ok()
}

#[test]
fn a_subscribe_is_released_only_once_every_peer_applied_the_route() {
    let mut c = Cluster::new(&[1, 2, 3], 2);
    c.connect_all();
    c.hold_routes.insert(NodeId(3));
    let mut released = c.subscribe(1, 1, "a/b");
    c.settle();
    assert!(c.has_route(2, 0, 1, "a/b") && c.has_route(2, 1, 1, "a/b"));
    assert!(!c.has_route(3, 0, 1, "a/b"));
    assert_eq!(answered(&mut released), None, "node 3 has not applied it");
    c.hold_routes.clear();
    c.settle();
    assert!(c.has_route(3, 0, 1, "a/b") && c.has_route(3, 1, 1, "a/b"));
    assert_eq!(answered(&mut released), Some(()));
    // A second subscriber of the filter on another shard changes nothing
    // the peers see, and still asks the relay (released at once here).
    let mut again = c.subscribe(1, 0, "a/b");
    c.settle();
    assert_eq!(answered(&mut again), Some(()));
    assert_eq!(c.node(1).core.stats().outbox_drops, 0);
}

#[test]
fn a_silent_peer_releases_the_suback_after_the_ack_timeout() {
    let mut c = Cluster::new(&[1, 2], 1);
    c.connect_all();
    c.hold_routes.insert(NodeId(2));
    let mut released = c.subscribe(1, 0, "t");
    c.settle();
    assert_eq!(answered(&mut released), None);
    c.advance(crate::limits::ROUTE_ACK_TIMEOUT_MS);
    assert_eq!(answered(&mut released), Some(()));
}

#[test]
fn unsubscribing_the_last_subscriber_removes_the_route() {
    let mut c = Cluster::new(&[1, 2], 2);
    c.connect_all();
    drop(c.subscribe(1, 0, "x/#"));
    c.settle();
    assert!(c.has_route(2, 1, 1, "x/#"));
    let now = c.now_ms;
    c.node(1).core.handle_request(
        ToDriver::Interest {
            shard: 0,
            change: change("x/#", 0),
            done: None,
        },
        &clock(now),
    );
    c.settle();
    assert!(!c.has_route(2, 0, 1, "x/#") && !c.has_route(2, 1, 1, "x/#"));
}

#[test]
fn a_qos1_publisher_is_answered_once_every_receiving_node_queued_it() {
    let mut c = Cluster::new(&[1, 2, 3], 3);
    c.connect_all();
    c.node(3).hold_queued = true;
    let mut answer = c
        .publish(1, 2, &[2, 3], "t/1", QoS::AtLeastOnce)
        .expect("qos 1");
    c.settle();
    // Delivered on the shard of the publisher's id, once per node.
    assert_eq!(c.node(2).delivered[2].len(), 1);
    assert_eq!(c.node(3).delivered[2].len(), 1);
    assert_eq!(answered(&mut answer), None, "node 3 has not queued it");
    let held = std::mem::take(&mut c.node(3).held);
    let now = c.now_ms;
    for d in &held {
        queued(&mut c.node(3).core, d, now);
    }
    c.settle();
    assert_eq!(answered(&mut answer), Some(true));
}

#[test]
fn one_publishers_messages_keep_their_order_on_one_shard() {
    let mut c = Cluster::new(&[1, 2], 4);
    c.connect_all();
    for i in 0..50 {
        let qos = if i % 2 == 0 {
            QoS::AtMostOnce
        } else {
            QoS::ExactlyOnce
        };
        drop(c.publish(1, 1, &[2], &format!("t/{i}"), qos));
    }
    c.settle();
    let node = c.node(2);
    let topics: Vec<String> = node.delivered[1].iter().map(|d| d.3.clone()).collect();
    let expected: Vec<String> = (0..50).map(|i| format!("t/{i}")).collect();
    assert_eq!(topics, expected);
    assert!(node.delivered[0].is_empty() && node.delivered[2].is_empty());
}

#[test]
fn a_node_that_goes_down_is_forgotten_and_its_acknowledgements_fail() {
    let mut c = Cluster::new(&[1, 2, 3], 2);
    c.connect_all();
    drop(c.subscribe(3, 0, "d/#"));
    c.settle();
    assert!(c.has_route(1, 0, 3, "d/#"));
    c.node(3).hold_queued = true;
    let mut answer = c
        .publish(1, 0, &[3], "d/x", QoS::AtLeastOnce)
        .expect("qos 1");
    c.settle();
    assert_eq!(answered(&mut answer), None);
    c.node(3).up = false;
    let now = c.now_ms;
    c.node(1).core.handle_member_down(NodeId(3), now);
    c.node(2).core.handle_member_down(NodeId(3), now);
    c.settle();
    assert_eq!(answered(&mut answer), Some(false), "released, incomplete");
    assert!(!c.has_route(1, 0, 3, "d/#") && !c.has_route(1, 1, 3, "d/#"));
    assert!(!c.has_route(2, 0, 3, "d/#"));
    // A forward for the dead node answers at once, incomplete.
    let mut late = c
        .publish(1, 0, &[3], "d/y", QoS::AtLeastOnce)
        .expect("qos 1");
    c.settle();
    assert_eq!(answered(&mut late), Some(false));
    assert_eq!(c.node(1).core.stats().no_peer_drops[1], 1);
    // Subscribes no longer wait for it.
    let mut released = c.subscribe(1, 0, "e");
    c.settle();
    assert_eq!(answered(&mut released), Some(()));
}

#[test]
fn a_silent_receiver_times_the_publisher_out() {
    let mut c = Cluster::new(&[1, 2], 1);
    c.connect_all();
    c.node(2).hold_queued = true;
    let mut answer = c.publish(1, 0, &[2], "q", QoS::ExactlyOnce).expect("qos 2");
    c.settle();
    c.advance(crate::limits::FORWARD_ACK_TIMEOUT_MS - 1);
    assert_eq!(answered(&mut answer), None);
    c.advance(1);
    assert_eq!(answered(&mut answer), Some(false));
    assert_eq!(c.node(1).core.stats().incomplete_acks, 1);
}

#[test]
fn a_joining_node_is_ready_only_with_every_peers_routes() {
    let mut c = Cluster::new(&[1, 2, 3], 1);
    // Nodes 1 and 2 run with a subscription each; 3 starts alone.
    for (a, b) in [(1, 2), (2, 1)] {
        let now = c.now_ms;
        c.node(a)
            .core
            .handle_member_up(NodeId(b), u64::from(b), now);
    }
    c.settle();
    drop(c.subscribe(1, 0, "one"));
    drop(c.subscribe(2, 0, "two"));
    c.settle();
    let now = c.now_ms;
    assert!(!c.node(3).core.poll_ready(now), "alone, it waits for peers");
    // 3 learns of 1 and 2 before their snapshots arrive.
    for peer in [1, 2] {
        let now = c.now_ms;
        c.node(3)
            .core
            .handle_member_up(NodeId(peer), u64::from(peer), now);
        c.node(peer).core.handle_member_up(NodeId(3), 3, now);
    }
    let now = c.now_ms + crate::limits::CLUSTER_READY_SETTLE_MS;
    assert!(!c.node(3).core.poll_ready(now), "no snapshot yet");
    c.settle();
    let now = c.now_ms;
    assert!(
        !c.node(3).core.poll_ready(now),
        "membership not settled yet"
    );
    c.advance(crate::limits::CLUSTER_READY_SETTLE_MS);
    let now = c.now_ms;
    assert!(c.node(3).core.poll_ready(now));
    assert!(c.has_route(3, 0, 1, "one") && c.has_route(3, 0, 2, "two"));
}

#[test]
fn a_lone_node_opens_after_the_join_wait() {
    let mut core = Core::new(NodeId(9), 1, 1, T0);
    assert!(!core.poll_ready(T0 + crate::limits::CLUSTER_JOIN_WAIT_MS - 1));
    assert!(core.poll_ready(T0 + crate::limits::CLUSTER_JOIN_WAIT_MS));
}

#[test]
fn a_restarted_senders_stream_is_taken_from_its_first_message() {
    let mut c = Cluster::new(&[1, 2], 1);
    c.connect_all();
    for i in 0..3 {
        drop(c.publish(1, 0, &[2], &format!("a/{i}"), QoS::AtMostOnce));
    }
    c.settle();
    // Node 1 restarts; node 2 sees its frames before its new member-up.
    let old = c.nodes.remove(&NodeId(1)).expect("node 1");
    let mut fresh = Core::new(NodeId(1), 77, 1, c.now_ms);
    fresh.handle_member_up(NodeId(2), 2, c.now_ms);
    c.nodes.insert(NodeId(1), TestNode { core: fresh, ..old });
    drop(c.publish(1, 0, &[2], "b/0", QoS::AtMostOnce));
    c.settle();
    let topics: Vec<String> = c.node(2).delivered[0].iter().map(|d| d.3.clone()).collect();
    assert_eq!(topics, ["a/0", "a/1", "a/2", "b/0"]);
}

#[test]
fn a_malformed_frame_is_counted_not_fatal() {
    let mut core = Core::new(NodeId(1), 1, 1, T0);
    core.handle_member_up(NodeId(2), 2, T0);
    core.handle_frame(
        NodeId(2),
        StreamId::Control,
        crate::cluster::logic::proto::kind::RouteChange,
        &Bytes::from_static(b"\x01\x02garbage"),
        &clock(T0),
    );
    core.handle_frame(NodeId(2), StreamId::Control, 250, &Bytes::new(), &clock(T0));
    assert_eq!(core.stats().frames_malformed, 2);
    let closing: Vec<NodeId> = std::iter::from_fn(|| core.poll_bad_peer())
        .map(|(p, _)| p)
        .collect();
    assert_eq!(closing, [NodeId(2), NodeId(2)], "the link is closed");
}

#[test]
fn retained_messages_reach_every_peer_and_a_node_that_comes_up() {
    let mut c = Cluster::new(&[1, 2, 3], 2);
    c.connect_all();
    let now = c.now_ms;
    c.node(1).core.handle_request(
        ToDriver::Retain {
            topic: ByteStr::from("r/1"),
            message: Some(message("r/1", QoS::AtLeastOnce)),
        },
        &clock(now),
    );
    c.settle();
    for at in [2, 3] {
        assert!(c.has_route(at, 0, 0, "r/1=1") && c.has_route(at, 1, 0, "r/1=1"));
    }
    assert!(
        !c.has_route(1, 0, 0, "r/1=1"),
        "not sent back to its origin"
    );
    // A node that comes up asks for the store from shard 0 (the driver's
    // shell does that call); the core sends what it is given.
    let wanted: Vec<NodeId> =
        std::iter::from_fn(|| c.node(1).core.poll_retained_wanted()).collect();
    assert_eq!(wanted, [NodeId(2), NodeId(3)]);
    let now = c.now_ms;
    c.node(1).core.handle_retained_snapshot(
        NodeId(2),
        vec![(ByteStr::from("r/2"), message("r/2", QoS::AtMostOnce))],
        &clock(now),
    );
    c.settle();
    assert!(c.has_route(2, 1, 0, "r/2=1"));
    // Cleared on the origin: cleared everywhere.
    let now = c.now_ms;
    c.node(1).core.handle_request(
        ToDriver::Retain {
            topic: ByteStr::from("r/1"),
            message: None,
        },
        &clock(now),
    );
    c.settle();
    assert!(!c.has_route(3, 0, 0, "r/1=1"));
}

#[path = "tests_links.rs"]
mod links;

#[path = "tests_shared.rs"]
mod shared;

#[test]
fn a_malformed_records_frame_delivers_nothing_of_it() {
    use crate::cluster::logic::records::{KIND_FORWARD_RECORDS, RECORDS_LAYOUT_VERSION};
    let mut c = Cluster::new(&[1, 2], 1);
    c.connect_all();
    drop(c.publish(1, 0, &[2], "a/0", QoS::AtMostOnce));
    // The frame node 1 sends for it, taken before node 2 sees it.
    let (to, stream, kind, body) = c.node(1).core.poll_frame().expect("a data frame");
    assert_eq!((to, kind), (NodeId(2), KIND_FORWARD_RECORDS));
    let mut bad = body.to_vec();
    bad[0] = RECORDS_LAYOUT_VERSION + 1;
    let now = c.now_ms;
    let core = &mut c.node(2).core;
    core.handle_frame(NodeId(1), stream, kind, &Bytes::from(bad), &clock(now));
    assert_eq!(core.stats().frames_malformed, 1);
    assert!(core.poll_delivery().is_none(), "nothing of a refused frame");
    let (peer, reason) = core.poll_bad_peer().expect("its link is to be closed");
    assert_eq!(peer, NodeId(1));
    assert!(reason.contains("layout"), "{reason}");
    // The frame as sent is delivered.
    core.handle_frame(NodeId(1), stream, kind, &body, &clock(now));
    let d = core.poll_delivery().expect("delivered");
    assert_eq!(d.message.topic.as_str(), "a/0");
    assert_eq!(core.stats().forwards_in, 1);
}
