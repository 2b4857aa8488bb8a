//! The driver's state machine (sans-IO, like the logic it glues): the
//! route relay, the forwarding windows towards each peer, the receiving
//! side of the peers' data streams and the publishers' acknowledgements,
//! fed with membership events, peer frames, shard requests and the time;
//! giving frames to send, route operations for every shard, forwarded
//! messages for one shard each, and the answers the shards wait for.
//! `super` does the I/O; `tests.rs` wires several cores together.
//!
//! Glue (src/cluster/logic/mod.rs, `sim/node.rs`): membership up/down ->
//! relay, windows, publisher acknowledgements; every shard interest change
//! and every SUBSCRIBE -> `RouteRelay::handle_interest` with a token whose
//! release answers the SUBSCRIBE; frames by kind to their `handle_*`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::port::ToDriver;
use super::takeover::TakeoverGlue;
use crate::cluster::logic::forward::{
    ForwardDrops, ForwardEvent, ForwardIn, ForwardOut, PublishAcks,
};
use crate::cluster::logic::homes::Role;
use crate::cluster::logic::proto::{Message, RetainedSync, PROTO_VERSION};
use crate::cluster::logic::records::KIND_FORWARD_RECORDS;
use crate::cluster::logic::routes::{RouteEvent, RouteRelay};
use crate::cluster::net::StreamId;
use crate::codec::ByteStr;
use crate::limits::{
    CLUSTER_DRIVER_OUTBOX_MAX, CLUSTER_JOIN_WAIT_MS, CLUSTER_READY_SETTLE_MS,
    CLUSTER_READY_WAIT_MAX_MS, FORWARD_RESEND_AFTER_MS,
};
use crate::router::location::{NodeId, ShardId};
use crate::router::InterestChange;
use crate::session::snapshot::MessageSnapshot;
use crate::session::WallClock;

/// A change of a peer's routes (or retained messages), for every local
/// shard.
#[derive(Debug, Clone)]
pub enum RouteOp {
    /// `Router::apply_remote_interest(Location { node: from, shard: 0 })`.
    Apply {
        from: NodeId,
        change: InterestChange,
    },
    /// `Router::forget_node(from)`, then apply each change.
    Replace {
        from: NodeId,
        changes: Vec<InterestChange>,
    },
    /// `Router::forget_node(node)`.
    Forget { node: NodeId },
    /// A peer's retained message set (`Some`) or cleared (`None`).
    Retain {
        topic: ByteStr,
        message: Option<Arc<crate::session::Message>>,
    },
}

/// Route operations to run on every shard in order, and the relay
/// acknowledgements `(origin, epoch, seq)` they complete.
#[derive(Debug, Clone, Default)]
pub struct RouteBatch {
    pub ops: Vec<RouteOp>,
    pub acks: Vec<(NodeId, u64, u64)>,
}

/// A peer's forwarded message for one local shard (chosen by the
/// publisher's shard, so one data stream's order is kept).
#[derive(Debug, Clone)]
pub struct Delivery {
    pub from: NodeId,
    pub stream: ShardId,
    pub seq: u64,
    pub message: Arc<crate::session::Message>,
    /// For one member of this group on this node only (`Forward::shared`).
    pub shared: Option<crate::router::SharedKey>,
}

/// Counters for logs, metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverStats {
    pub frames_in: u64,
    /// Bodies that did not decode (the link stays: `net` checked framing).
    pub frames_malformed: u64,
    /// Frames of kinds this driver does not serve yet (claims, takeover).
    pub frames_unserved: u64,
    /// Control frames dropped because the outbox was full.
    pub outbox_drops: u64,
    /// Forwards for a node that is not (or no longer) running, by QoS.
    pub no_peer_drops: [u64; 3],
    /// Forwarded messages after a gap in their stream's numbers (frames
    /// lost with a link): not delivered, they come again in order.
    pub stream_gaps: u64,
    /// Forward batches of a window older than the stream's (late frames
    /// of a link replaced since): dropped.
    pub stale_frames: u64,
    /// Forwarded messages whose body could not become a message.
    pub bad_messages: u64,
    /// QoS 1/2 publishers answered without every node's acknowledgement.
    pub incomplete_acks: u64,
    pub forwards_in: u64,
    pub forwards_out: u64,
}

struct Publisher {
    done: oneshot::Sender<bool>,
    nodes: Vec<NodeId>,
    deadline_ms: u64,
}

/// The driver's state. One per node.
pub struct Core {
    here: NodeId,
    shard_count: u16,
    relay: RouteRelay,
    /// Peers believed running, with their boot epoch.
    view: BTreeMap<NodeId, u64>,
    fwd_out: BTreeMap<NodeId, ForwardOut>,
    fwd_in: ForwardIn,
    pub_acks: PublishAcks,
    next_token: u64,
    /// Relay tokens whose release answers a SUBSCRIBE.
    subscribes: BTreeMap<u64, oneshot::Sender<()>>,
    publishers: BTreeMap<u64, Publisher>,
    outbox: VecDeque<(NodeId, StreamId, Message)>,
    /// Encoded frames the cluster thread's queue refused, sent first.
    held_frames: VecDeque<(NodeId, StreamId, u8, Bytes)>,
    /// Peers that sent a malformed frame, and why: their link is closed
    /// (`poll_bad_peer`).
    bad_peers: VecDeque<(NodeId, String)>,
    /// Control frames for peers whose link is down (`links_down`), encoded,
    /// in order: sent first on the new link (claims and takeover frames
    /// have no other retry), dropped if the peer is declared down.
    parked: VecDeque<(NodeId, StreamId, u8, Bytes)>,
    route_ops: RouteBatch,
    route_batch_in_flight: bool,
    deliveries: VecDeque<Delivery>,
    /// Per local shard: whether a window of its stream is over its size
    /// (its publishers wait), and what the shard was last told.
    paused: Vec<bool>,
    paused_told: Vec<bool>,
    /// The peer whose window gave the last forward batch (peers in turn).
    data_served: Option<NodeId>,
    /// Running peers whose link is down (`net`'s `LinkDown`): their
    /// windows hold what is forwarded until `LinkUp`.
    links_down: BTreeSet<NodeId>,
    /// Drops counted by windows of links that went down, per peer.
    drops_gone: BTreeMap<NodeId, ForwardDrops>,
    /// Peers that came up and get this node's retained store.
    retained_wanted: VecDeque<NodeId>,
    started_ms: u64,
    membership_changed_ms: u64,
    any_peer: bool,
    ready: bool,
    stats: DriverStats,
    /// Homes, claims and cross-node takeovers (`super::takeover`).
    takeover: TakeoverGlue,
    /// This node's boot epoch, and the forwarding windows it opened: a
    /// window's `WindowId`.
    pub(super) epoch: u64,
    pub(super) windows_opened: u32,
    /// When the windows' resend check is due (`FORWARD_RESEND_AFTER_MS`
    /// apart while frames are in flight).
    resend_check_ms: u64,
    /// Disconnected sessions pushed to or from peers (`super::session_push`).
    pushes: super::session_push::SessionPushes,
}

impl Core {
    /// `epoch`: this node's boot epoch; `now_ms`: wall clock at start.
    pub fn new(here: NodeId, epoch: u64, shard_count: u16, now_ms: u64) -> Core {
        Core {
            here,
            shard_count,
            relay: RouteRelay::new(here, epoch, shard_count),
            view: BTreeMap::new(),
            fwd_out: BTreeMap::new(),
            fwd_in: ForwardIn::new(),
            pub_acks: PublishAcks::new(),
            next_token: 0,
            subscribes: BTreeMap::new(),
            publishers: BTreeMap::new(),
            outbox: VecDeque::new(),
            held_frames: VecDeque::new(),
            bad_peers: VecDeque::new(),
            parked: VecDeque::new(),
            route_ops: RouteBatch::default(),
            route_batch_in_flight: false,
            deliveries: VecDeque::new(),
            paused: vec![false; usize::from(shard_count)],
            paused_told: vec![false; usize::from(shard_count)],
            data_served: None,
            links_down: BTreeSet::new(),
            drops_gone: BTreeMap::new(),
            retained_wanted: VecDeque::new(),
            started_ms: now_ms,
            membership_changed_ms: now_ms,
            any_peer: false,
            ready: false,
            stats: DriverStats::default(),
            takeover: TakeoverGlue::new(here, Role::Core),
            epoch,
            windows_opened: 0,
            resend_check_ms: now_ms + FORWARD_RESEND_AFTER_MS,
            pushes: super::session_push::SessionPushes::new(shard_count),
        }
    }

    pub fn stats(&self) -> DriverStats {
        self.stats
    }

    /// Forward drops of every window, by reason and QoS.
    pub fn forward_drops(&self) -> ForwardDrops {
        let mut all = ForwardDrops::default();
        for (_, drops, _) in self.peer_forwarding() {
            all.add(&drops);
        }
        all
    }

    /// Per peer ever forwarded to: its drops by reason and QoS (totals,
    /// windows of earlier links included) and its window's depth now.
    pub fn peer_forwarding(&self) -> Vec<(NodeId, ForwardDrops, usize)> {
        let peers: BTreeSet<NodeId> = self
            .fwd_out
            .keys()
            .chain(self.drops_gone.keys())
            .copied()
            .collect();
        peers
            .into_iter()
            .map(|peer| {
                let mut drops = self.drops_gone.get(&peer).copied().unwrap_or_default();
                let out = self.fwd_out.get(&peer);
                if let Some(out) = out {
                    drops.add(&out.drops());
                }
                (peer, drops, out.map_or(0, |o| o.depth()))
            })
            .collect()
    }

    pub fn running_peers(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.view.keys().copied()
    }

    // ------------------------------------------------------------ membership

    pub fn handle_member_up(&mut self, node: NodeId, epoch: u64, now_ms: u64) {
        if node == self.here {
            return;
        }
        self.membership_changed_ms = now_ms;
        self.any_peer = true;
        if let Some(known) = self.view.insert(node, epoch) {
            debug!(%node, known, epoch, "cluster driver: member up again");
            if known == epoch {
                // The same life of the node, maybe on a new link: what was
                // in flight goes again.
                self.link_lost(node);
                self.fwd_in.handle_link_renewed(node);
            } else {
                // A restart: what the old one had is gone, windows restart.
                self.link_down(node);
            }
            self.links_down.remove(&node);
        }
        self.relay.handle_member_up(node);
        self.retained_wanted.push_back(node);
        self.pump();
    }

    pub fn handle_member_down(&mut self, node: NodeId, now_ms: u64) {
        if self.view.remove(&node).is_none() {
            return;
        }
        self.links_down.remove(&node);
        self.membership_changed_ms = now_ms;
        self.link_down(node);
        self.relay.handle_member_down(node);
        self.pub_acks.handle_member_down(node);
        self.outbox.retain(|(to, _, _)| *to != node);
        self.held_frames.retain(|(to, _, _, _)| *to != node);
        self.parked.retain(|(to, _, _, _)| *to != node);
        self.takeover.handle_member_down(node, now_ms);
        self.pushes.handle_member_down(node);
        self.pump();
    }

    pub(super) fn link_down(&mut self, node: NodeId) {
        if let Some(mut out) = self.fwd_out.remove(&node) {
            out.handle_link_down();
            while let Some(e) = out.poll_event() {
                if let ForwardEvent::Failed { token } = e {
                    self.pub_acks.handle_node(token, node, false);
                }
            }
            for shard in 0..self.shard_count {
                self.refresh_paused(shard);
            }
            self.drops_gone.entry(node).or_default().add(&out.drops());
        }
        self.fwd_in.handle_link_down(node);
    }

    // ------------------------------------------------------------ frames

    /// A logic frame from a peer (`NetEvent::PeerFrame`).
    pub fn handle_frame(
        &mut self,
        from: NodeId,
        stream: StreamId,
        kind: u8,
        body: &Bytes,
        clock: &WallClock,
    ) {
        self.stats.frames_in += 1;
        if kind == KIND_FORWARD_RECORDS {
            self.forwarded_records(from, body, clock);
            self.pump();
            return;
        }
        let message = match Message::decode(PROTO_VERSION, kind, body) {
            Ok(m) => m,
            Err(e) => {
                self.refuse_frame(from, format!("kind {kind} on {stream:?}: {e}"));
                return;
            }
        };
        match message {
            Message::RouteChange(c) => self.relay.handle_route_change(from, c),
            Message::RouteAck(a) => self.relay.handle_route_ack(from, &a),
            Message::RouteSnapshotRequest(q) => self.relay.handle_snapshot_request(from, &q),
            Message::RouteSnapshot(s) => self.relay.handle_route_snapshot(from, s),
            Message::Forward(f) => {
                self.forwarded(from, f, clock);
            }
            Message::ForwardBatch(b) => self.forwarded_batch(from, b, clock),
            Message::ForwardAck(a) => {
                if let Some(out) = self.fwd_out.get_mut(&from) {
                    out.handle_ack(&a);
                }
            }
            Message::RetainedSync(r) => self.retained_in(from, r, clock),
            Message::SessionPush(p) => self.pushes.handle_push(from, p),
            Message::SessionPushDone(d) => self.pushes.handle_done(from, d),
            other => {
                if let Some(other) = self.takeover.handle_message(from, other, clock.unix_ms) {
                    self.stats.frames_unserved += 1;
                    debug!(%from, kind = other.kind(), "cluster driver: frame kind not served yet");
                }
            }
        }
        self.pump();
    }

    // ------------------------------------------------------------ shards

    pub fn handle_request(&mut self, request: ToDriver, clock: &WallClock) {
        let now_ms = clock.unix_ms;
        match request {
            ToDriver::Interest {
                shard,
                change,
                done,
            } => {
                self.next_token += 1;
                let token = self.next_token;
                if let Some(done) = done {
                    self.subscribes.insert(token, done);
                }
                self.relay.handle_interest(shard, &change, token, now_ms);
            }
            ToDriver::Forward {
                shard,
                nodes,
                shared,
                message,
                done,
            } => self.forward(shard, nodes, shared, message, done, clock),
            ToDriver::Queued { from, stream, seq } => self.fwd_in.handle_queued(from, stream, seq),
            ToDriver::Claim { .. } | ToDriver::Imported { .. } | ToDriver::SessionEnded { .. } => {
                self.handle_takeover_request(request, now_ms)
            }
            ToDriver::PushSession {
                client_id,
                to,
                moved,
            } => {
                let running = self.view.contains_key(&to);
                self.pushes
                    .handle_request(client_id, to, running, moved, now_ms)
            }
            ToDriver::Retain { topic, message } => {
                let id = message.as_ref().and_then(|m| m.id);
                let message = message.map(|m| MessageSnapshot::of(&m, clock));
                let peers: Vec<NodeId> = self.view.keys().copied().collect();
                for peer in peers {
                    let sync = RetainedSync {
                        topic: topic.to_string(),
                        message: message.clone(),
                        id,
                    };
                    self.push_control(peer, Message::RetainedSync(sync));
                }
            }
        }
        self.pump();
    }

    /// Every shard ran `batch` (`ok`), or some could not take it (a full
    /// inbox: it is run again, applying a change twice is harmless).
    pub fn handle_route_batch_done(&mut self, batch: RouteBatch, ok: bool) {
        self.route_batch_in_flight = false;
        if ok {
            for (from, epoch, seq) in batch.acks {
                self.relay.handle_applied(from, epoch, seq);
            }
        } else {
            let later = std::mem::replace(&mut self.route_ops, batch);
            self.route_ops.ops.extend(later.ops);
            self.route_ops.acks.extend(later.acks);
        }
        self.pump();
    }

    // ------------------------------------------------------------ time

    pub fn poll_timeout(&self) -> Option<u64> {
        let ready = (!self.ready).then(|| self.ready_deadline());
        let publisher = self.publishers.values().map(|p| p.deadline_ms).min();
        let takeover = [self.takeover.poll_timeout(), self.pushes.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let resend = self
            .fwd_out
            .values()
            .any(ForwardOut::in_flight)
            .then_some(self.resend_check_ms);
        [
            self.relay.poll_timeout(),
            publisher,
            ready,
            takeover,
            resend,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    fn ready_deadline(&self) -> u64 {
        let settle = self.membership_changed_ms + CLUSTER_READY_SETTLE_MS;
        if self.any_peer {
            settle
        } else {
            settle.max(self.started_ms + CLUSTER_JOIN_WAIT_MS)
        }
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        if now_ms >= self.resend_check_ms {
            self.resend_check_ms = now_ms + FORWARD_RESEND_AFTER_MS;
            for out in self.fwd_out.values_mut() {
                out.handle_resend_check();
            }
        }
        self.relay.handle_timeout(now_ms);
        self.takeover.handle_timeout(now_ms);
        self.pushes.handle_timeout(now_ms);
        let late: Vec<u64> = self
            .publishers
            .iter()
            .filter(|(_, p)| p.deadline_ms <= now_ms)
            .map(|(&t, _)| t)
            .collect();
        for token in late {
            let nodes = self.publishers[&token].nodes.clone();
            for node in nodes {
                self.pub_acks.handle_node(token, node, false);
            }
        }
        self.pump();
    }

    /// Whether the node may open its MQTT listeners (checked after each
    /// input); true once, and it stays true.
    pub fn poll_ready(&mut self, now_ms: u64) -> bool {
        if !self.ready {
            let complete = self.relay.routes_complete();
            if complete && now_ms >= self.ready_deadline() {
                self.ready = true;
                info!(
                    peers = self.view.len(),
                    "cluster: routes of every running peer received; MQTT listeners open"
                );
            } else if now_ms >= self.started_ms + CLUSTER_READY_WAIT_MAX_MS {
                self.ready = true;
                warn!(
                    peers = self.view.len(),
                    complete,
                    "cluster: peers' routes still incomplete after {CLUSTER_READY_WAIT_MAX_MS} ms; \
                     MQTT listeners open anyway (messages for subscribers not yet known here \
                     are not forwarded)"
                );
            }
        }
        self.ready
    }

    // ------------------------------------------------------------ output

    /// Drains the logic's frames and events into the outbox, the route
    /// operations, the deliveries and the answers to the shards.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            while let Some((to, m)) = self.relay.poll_transmit() {
                moved = true;
                self.push_control(to, m);
            }
            while let Some((to, m)) = self.fwd_in.poll_transmit() {
                moved = true;
                self.push_control(to, m);
            }
            while let Some((to, m)) = self.takeover.poll_transmit() {
                moved = true;
                self.push_control(to, m);
            }
            while let Some((to, m)) = self.pushes.poll_transmit() {
                moved = true;
                self.push_control(to, m);
            }
            while let Some(e) = self.relay.poll_event() {
                moved = true;
                self.route_event(e);
            }
            let mut resumed = Vec::new();
            for (&peer, out) in self.fwd_out.iter_mut() {
                while let Some(e) = out.poll_event() {
                    moved = true;
                    match e {
                        ForwardEvent::Acked { token } => {
                            self.pub_acks.handle_node(token, peer, true)
                        }
                        ForwardEvent::Failed { token } => {
                            self.pub_acks.handle_node(token, peer, false)
                        }
                        ForwardEvent::Resume { shard } => resumed.push(shard),
                    }
                }
            }
            // Forwards wait in their windows: `poll_frame` takes them as
            // batches when the cluster thread has room.
            for shard in resumed {
                self.refresh_paused(shard);
            }
            while let Some((token, complete)) = self.pub_acks.poll_release() {
                moved = true;
                if let Some(p) = self.publishers.remove(&token) {
                    if !complete {
                        self.stats.incomplete_acks += 1;
                    }
                    let _ = p.done.send(complete);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn push_control(&mut self, to: NodeId, m: Message) {
        if self.outbox.len() >= 2 * CLUSTER_DRIVER_OUTBOX_MAX {
            self.stats.outbox_drops += 1;
            return;
        }
        self.outbox.push_back((to, StreamId::Control, m));
    }

    fn route_event(&mut self, e: RouteEvent) {
        // Shared groups too: a peer's member count per group is one
        // weighted location for the publishers' cluster-wide pick.
        match e {
            RouteEvent::Apply {
                from,
                epoch,
                seq,
                change,
            } => {
                self.route_ops.ops.push(RouteOp::Apply { from, change });
                self.route_ops.acks.push((from, epoch, seq));
            }
            RouteEvent::Replace {
                from,
                epoch,
                seq,
                changes,
            } => {
                self.route_ops.ops.push(RouteOp::Replace { from, changes });
                self.route_ops.acks.push((from, epoch, seq));
            }
            RouteEvent::Forget { node } => self.route_ops.ops.push(RouteOp::Forget { node }),
            RouteEvent::Released { token, out_of_sync } => {
                if !out_of_sync.is_empty() {
                    warn!(
                        ?out_of_sync,
                        "cluster: peers did not acknowledge a route change in time; \
                         SUBACK sent, route snapshots sent to them"
                    );
                }
                if let Some(done) = self.subscribes.remove(&token) {
                    let _ = done.send(());
                }
            }
        }
    }

    /// The next frame for the cluster thread: `(peer, stream, kind, body)`,
    /// control frames first, then forward batches from the windows (peers
    /// in turn). `put_back_frame` if its queue was full.
    pub fn poll_frame(&mut self) -> Option<(NodeId, StreamId, u8, Bytes)> {
        loop {
            let frame = if let Some(frame) = self.held_frames.pop_front() {
                frame
            } else if let Some((to, stream, m)) = self.outbox.pop_front() {
                match m.encode() {
                    Ok(body) => (to, stream, m.kind(), Bytes::from(body)),
                    Err(e) => {
                        // Only a message over the body limit: never sent.
                        self.stats.outbox_drops += 1;
                        warn!(%to, "cluster driver: frame not sent: {e}");
                        continue;
                    }
                }
            } else {
                let (to, stream, body) = self.poll_forward_batch()?;
                return Some((to, stream, KIND_FORWARD_RECORDS, body));
            };
            if !self.links_down.contains(&frame.0) {
                return Some(frame);
            }
            self.park(frame);
        }
    }

    /// Keeps a frame for a peer whose link is down until `LinkUp`; data
    /// frames are not kept (their window sends them again).
    fn park(&mut self, frame: (NodeId, StreamId, u8, Bytes)) {
        if !matches!(frame.1, StreamId::Control) {
            return;
        }
        if self.parked.len() >= 2 * CLUSTER_DRIVER_OUTBOX_MAX {
            self.stats.outbox_drops += 1;
            return;
        }
        self.parked.push_back(frame);
    }

    /// The frames parked for `node`, in order, go before anything else.
    pub(super) fn unpark(&mut self, node: NodeId) {
        let (mine, others): (VecDeque<_>, VecDeque<_>) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|f| f.0 == node);
        self.parked = others;
        for frame in mine.into_iter().rev() {
            self.held_frames.push_front(frame);
        }
    }

    /// A peer sent a malformed frame: counted, and its link is closed
    /// (`poll_bad_peer`) as for a bad frame header; nothing of the frame
    /// was delivered.
    pub(super) fn refuse_frame(&mut self, from: NodeId, reason: String) {
        self.stats.frames_malformed += 1;
        warn!(%from, "cluster driver: frame refused, closing the link: {reason}");
        if self.bad_peers.len() < CLUSTER_DRIVER_OUTBOX_MAX {
            self.bad_peers.push_back((from, reason));
        }
    }

    /// A peer whose link is to be closed, and why (a malformed frame).
    pub fn poll_bad_peer(&mut self) -> Option<(NodeId, String)> {
        self.bad_peers.pop_front()
    }

    /// A frame `poll_frame` gave that found the cluster thread's queue
    /// full: it goes first next time. Already encoded: kept as bytes.
    pub fn put_back_frame(&mut self, frame: (NodeId, StreamId, u8, Bytes)) {
        self.held_frames.push_front(frame);
    }

    /// Route operations for every shard, when none is under way.
    pub fn poll_route_batch(&mut self) -> Option<RouteBatch> {
        if self.route_batch_in_flight
            || (self.route_ops.ops.is_empty() && self.route_ops.acks.is_empty())
        {
            return None;
        }
        self.route_batch_in_flight = true;
        Some(std::mem::take(&mut self.route_ops))
    }

    /// Forwarded messages for the shards; the target shard is
    /// `stream % shards`.
    pub fn poll_delivery(&mut self) -> Option<Delivery> {
        self.deliveries.pop_front()
    }

    /// A delivery `poll_delivery` gave that its shard could not take yet.
    pub fn put_back_delivery(&mut self, d: Delivery) {
        self.deliveries.push_front(d);
    }

    pub fn target_shard(&self, stream: ShardId) -> ShardId {
        stream % self.shard_count
    }
}

#[path = "core_messages.rs"]
mod messages;

#[path = "shared.rs"]
mod shared;
#[path = "core_takeover.rs"]
mod takeover_glue;

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
