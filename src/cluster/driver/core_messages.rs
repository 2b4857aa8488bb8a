//! The message flows of the driver's core (`super`): forwards out and in,
//! and retained messages, kept apart so each file stays readable.

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::{Core, Delivery, Publisher, RouteOp};
use crate::cluster::logic::forward::{DropReason, ForwardOut, PushOutcome};
use crate::cluster::logic::proto::{
    Forward, ForwardBatch, Message, RetainedSync, SharedTarget, WindowId,
};
use crate::cluster::logic::records::{self, OutForward};
use crate::cluster::net::StreamId;
use crate::codec::ByteStr;
use crate::limits::{FORWARD_ACK_TIMEOUT_MS, FORWARD_BATCH_MESSAGES_MAX};
use crate::router::location::{NodeId, ShardId};
use crate::router::SharedKey;
use crate::session::snapshot::MessageSnapshot;
use crate::session::WallClock;

impl Core {
    /// `net` lost the link with a running peer (broken or replaced): its
    /// windows keep what is unacknowledged and send it again on the next
    /// link (`LinkUp`), where the peer drops what it already had; nothing
    /// is sent to it meanwhile (it waits in the windows, bounded;
    /// publishers pause when full).
    pub fn handle_link_down(&mut self, node: NodeId) {
        if !self.view.contains_key(&node) {
            return;
        }
        self.link_lost(node);
        self.links_down.insert(node);
        // Its control frames wait for the new link (`poll_frame` parks
        // them); its data frames are in its windows.
        self.held_frames
            .retain(|(to, stream, _, _)| *to != node || matches!(stream, StreamId::Control));
        self.pump();
    }

    /// A new link with a running peer: the windows send again what was in
    /// flight, acknowledgements go again, and routes (and retained
    /// messages) are resynchronised at once, as for a restart, instead of
    /// waiting for the acknowledgement timeout to show a loss.
    pub fn handle_link_up(&mut self, node: NodeId, now_ms: u64) {
        if !self.view.contains_key(&node) {
            return;
        }
        if !self.links_down.remove(&node) {
            // Replaced without a `LinkDown` seen (an event was lost).
            self.link_lost(node);
        }
        self.unpark(node);
        self.fwd_in.handle_link_renewed(node);
        self.takeover.handle_link_renewed(node, now_ms);
        self.membership_changed_ms = now_ms;
        self.relay.handle_member_up(node);
        self.retained_wanted.push_back(node);
        self.pump();
    }

    /// The link with `node` was lost, the node was not: its windows go
    /// back to their first unacknowledged frame.
    pub(super) fn link_lost(&mut self, node: NodeId) {
        if let Some(out) = self.fwd_out.get_mut(&node) {
            out.handle_link_lost();
        }
    }

    /// A peer's batch: checked whole (count, one stream, consecutive
    /// numbers) before any message of it is delivered.
    pub(super) fn forwarded_batch(&mut self, from: NodeId, b: ForwardBatch, clock: &WallClock) {
        let first = b.forwards.first().map(|f| (f.id.shard, f.stream_seq));
        let consecutive = first.is_some_and(|(shard, seq)| {
            b.forwards
                .iter()
                .zip(seq..)
                .all(|(f, n)| f.id.shard == shard && f.stream_seq == n)
        });
        if !consecutive || b.forwards.len() > FORWARD_BATCH_MESSAGES_MAX {
            let reason = format!(
                "forward batch of {} messages: empty, over FORWARD_BATCH_MESSAGES_MAX, \
                 several streams or numbers not consecutive",
                b.forwards.len()
            );
            self.refuse_frame(from, reason);
            return;
        }
        let shard = b.forwards[0].id.shard;
        if !self.fwd_in.handle_window(from, shard, b.window) {
            self.stats.stale_frames += 1;
            debug!(%from, shard, "cluster driver: batch of an older window dropped");
            return;
        }
        for f in b.forwards {
            if !self.forwarded(from, f, clock) {
                break; // a gap: the rest comes again after it
            }
        }
    }

    /// The next forward batch from the windows (encoded), peers in turn.
    pub(super) fn poll_forward_batch(&mut self) -> Option<(NodeId, StreamId, Bytes)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let after = match self.data_served {
            Some(p) => (Excluded(p), Unbounded),
            None => (Unbounded, Unbounded),
        };
        let peers: Vec<NodeId> = self
            .fwd_out
            .range(after)
            .chain(self.fwd_out.iter())
            .map(|(&p, _)| p)
            .collect();
        for peer in peers {
            if self.links_down.contains(&peer) {
                continue;
            }
            let out = self.fwd_out.get_mut(&peer).expect("listed above");
            if let Some((shard, body)) = out.poll_transmit() {
                self.data_served = Some(peer);
                return Some((peer, StreamId::Data { shard }, body));
            }
        }
        None
    }

    /// Recomputes whether `shard`'s publishers wait (any window of its
    /// stream over its size).
    pub(super) fn refresh_paused(&mut self, shard: ShardId) {
        let paused = self.fwd_out.values().any(|out| out.is_paused(shard));
        self.paused[usize::from(shard)] = paused;
    }

    /// A change of a shard's pause (`(shard, paused)`) to tell it: its
    /// publishers wait before handing over another forward while paused.
    pub fn poll_paused(&mut self) -> Option<(ShardId, bool)> {
        let i = (0..self.paused.len()).find(|&i| self.paused[i] != self.paused_told[i])?;
        self.paused_told[i] = self.paused[i];
        Some((
            ShardId::try_from(i).expect("shard ids fit u16"),
            self.paused[i],
        ))
    }

    /// A peer's forward records frame (`logic::records`): validated whole
    /// (lengths, count, strings, one stream, consecutive numbers) before
    /// any message of it is delivered.
    pub(super) fn forwarded_records(&mut self, from: NodeId, body: &Bytes, clock: &WallClock) {
        let frame = match records::decode(body) {
            Ok(frame) => frame,
            Err(e) => {
                self.refuse_frame(from, e.to_string());
                return;
            }
        };
        if !self.fwd_in.handle_window(from, frame.shard, frame.window) {
            self.stats.stale_frames += 1;
            debug!(%from, shard = frame.shard, "cluster driver: frame of an older window dropped");
            return;
        }
        for f in frame.forwards {
            let mut message = f.message;
            message.expires_at = f.expires_at_unix_ms.map(|ms| clock.to_instant(ms));
            let delivered = self.forwarded_message(
                from,
                frame.shard,
                f.stream_seq,
                Ok(message),
                f.shared.as_ref(),
            );
            if !delivered {
                break; // a gap: the rest comes again after it
            }
        }
    }

    /// One forwarded message of the rkyv kinds (`Forward`, `ForwardBatch`);
    /// false after a gap.
    pub(super) fn forwarded(&mut self, from: NodeId, f: Forward, clock: &WallClock) -> bool {
        let id = f.id;
        let message = f
            .message
            .into_message(clock)
            .map(|mut m| {
                m.id = Some(id);
                m
            })
            .map_err(|e| e.to_string());
        self.forwarded_message(from, f.id.shard, f.stream_seq, message, f.shared.as_ref())
    }

    /// One forwarded message; false after a gap (nothing more of its batch
    /// is taken: the sender sends it all again in order).
    fn forwarded_message(
        &mut self,
        from: NodeId,
        stream: ShardId,
        stream_seq: u64,
        message: Result<crate::session::Message, String>,
        shared: Option<&SharedTarget>,
    ) -> bool {
        match self.fwd_in.handle_forward(from, stream, stream_seq) {
            Ok(true) => {}
            Ok(false) => return true, // a repeat, acknowledged again
            Err(gap) => {
                // Frames before it were on a link that was lost: the
                // sender goes back to them (`ForwardOut::handle_link_lost`
                // or its resend check), so this one comes again in order.
                self.stats.stream_gaps += 1;
                debug!("cluster driver: {gap}; waiting for the frames before it");
                return false;
            }
        }
        self.stats.forwards_in += 1;
        let shared = match shared.map(super::shared::shared_key_of) {
            None => None,
            Some(Some(key)) => Some(key),
            Some(None) => {
                self.stats.bad_messages += 1;
                warn!(%from, "cluster driver: forwarded message for an invalid shared group refused");
                self.fwd_in.handle_queued(from, stream, stream_seq);
                return true;
            }
        };
        match message {
            Ok(message) => self.deliveries.push_back(Delivery {
                from,
                stream,
                seq: stream_seq,
                message: Arc::new(message),
                shared,
            }),
            Err(e) => {
                // Nothing to deliver, but the number is used: acknowledge
                // it so the stream goes on.
                self.stats.bad_messages += 1;
                warn!(%from, "cluster driver: forwarded message refused: {e}");
                self.fwd_in.handle_queued(from, stream, stream_seq);
            }
        }
        true
    }

    pub(super) fn retained_in(&mut self, from: NodeId, r: RetainedSync, clock: &WallClock) {
        let id = r.id;
        let with_id = |mut m: crate::session::Message| {
            m.id = id;
            Arc::new(m)
        };
        let message = match r.message.map(|m| m.into_message(clock)).transpose() {
            Ok(message) => message.map(with_id),
            Err(e) => {
                self.stats.bad_messages += 1;
                warn!(%from, "cluster driver: retained message refused: {e}");
                return;
            }
        };
        if !crate::router::topic::is_valid_topic_name(&r.topic) {
            self.stats.bad_messages += 1;
            warn!(%from, "cluster driver: retained message with an invalid topic refused");
            return;
        }
        let topic = ByteStr::from(r.topic);
        self.route_ops.ops.push(RouteOp::Retain { topic, message });
    }

    /// This node's retained store (from one shard's copy) for a peer that
    /// came up (`poll_retained_wanted`).
    pub fn handle_retained_snapshot(
        &mut self,
        peer: NodeId,
        all: Vec<(ByteStr, Arc<crate::session::Message>)>,
        clock: &WallClock,
    ) {
        if !self.view.contains_key(&peer) {
            return;
        }
        for (topic, m) in all {
            let sync = RetainedSync {
                topic: topic.to_string(),
                message: Some(MessageSnapshot::of(&m, clock)),
                id: m.id,
            };
            self.push_control(peer, Message::RetainedSync(sync));
        }
        self.pump();
    }

    /// A peer that came up and is to get this node's retained store.
    pub fn poll_retained_wanted(&mut self) -> Option<NodeId> {
        self.retained_wanted.pop_front()
    }

    pub(super) fn forward(
        &mut self,
        shard: ShardId,
        nodes: Vec<NodeId>,
        shared: Vec<(NodeId, SharedKey)>,
        message: Arc<crate::session::Message>,
        done: Option<oneshot::Sender<bool>>,
        clock: &WallClock,
    ) {
        // The id the publisher's shard gave (`Shard::publish_here`): the
        // same on every node the message reaches.
        let Some(id) = message.id else {
            debug_assert!(false, "a forwarded message has its id");
            warn!(
                shard,
                "cluster driver: a message without an id not forwarded"
            );
            return;
        };
        let forward = OutForward {
            id,
            stream_seq: 0,
            expires_at_unix_ms: message.expires_at.map(|t| clock.to_unix_ms(t)),
            message,
            shared: None,
        };
        if let ([node], true, None) = (nodes.as_slice(), shared.is_empty(), &done) {
            // The common case, QoS 0 to one node and no shared group: no
            // plan.
            let node = *node;
            self.forward_to(node, shard, &forward, [None], None);
            return;
        }
        let plan = super::shared::forward_plan(&nodes, shared);
        let nodes: Vec<NodeId> = plan.keys().copied().collect();
        let token = done.map(|done| {
            self.next_token += 1;
            let token = self.next_token;
            self.publishers.insert(
                token,
                Publisher {
                    done,
                    nodes: nodes.clone(),
                    deadline_ms: clock.unix_ms + FORWARD_ACK_TIMEOUT_MS,
                },
            );
            token
        });
        let mut failed = Vec::new();
        for (node, targets) in plan {
            if !self.forward_to(node, shard, &forward, targets, token) {
                failed.push(node);
            }
        }
        if let Some(token) = token {
            self.pub_acks.begin(token, nodes);
            for node in failed {
                self.pub_acks.handle_node(token, node, false);
            }
        }
    }

    /// Queues `forward` for `node` on `shard`'s stream once per target
    /// (`None`: the node's ordinary subscribers; `Some`: one member of a
    /// shared group there); the last carries `token` (acknowledgements
    /// are cumulative). False if the node is not running or one was
    /// dropped.
    fn forward_to(
        &mut self,
        node: NodeId,
        shard: ShardId,
        forward: &OutForward,
        targets: impl IntoIterator<Item = Option<SharedTarget>>,
        token: Option<u64>,
    ) -> bool {
        let mut targets = targets.into_iter().peekable();
        if targets.peek().is_none() {
            return true;
        }
        let qos = forward.message.qos as u8;
        if !self.view.contains_key(&node) {
            self.stats.no_peer_drops[usize::from(qos.min(2))] += 1;
            return false;
        }
        let out = match self.fwd_out.entry(node) {
            std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::btree_map::Entry::Vacant(v) => {
                self.windows_opened += 1;
                v.insert(ForwardOut::with_window(WindowId {
                    epoch: self.epoch,
                    opened: self.windows_opened,
                }))
            }
        };
        let mut ok = true;
        while let Some(target) = targets.next() {
            let forward = OutForward {
                shared: target,
                ..forward.clone()
            };
            let token = if targets.peek().is_none() {
                token
            } else {
                None
            };
            match out.push(shard, forward, token) {
                PushOutcome::Queued { pause, .. } => {
                    self.stats.forwards_out += 1;
                    if pause {
                        self.paused[usize::from(shard)] = true;
                    }
                }
                PushOutcome::Dropped(DropReason::WindowFull | DropReason::LinkDown) => ok = false,
            }
        }
        ok
    }
}
