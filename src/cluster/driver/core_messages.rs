//! The message flows of the driver's core (`super`): forwards out and in,
//! and retained messages, kept apart so each file stays readable.

use std::sync::Arc;

use tokio::sync::oneshot;
use tracing::warn;

use super::{Core, Delivery, Publisher, RouteOp};
use crate::cluster::logic::forward::{DropReason, PushOutcome};
use crate::cluster::logic::proto::{Forward, Message, MessageId, RetainedSync};
use crate::codec::ByteStr;
use crate::limits::FORWARD_ACK_TIMEOUT_MS;
use crate::router::location::{NodeId, ShardId};
use crate::router::SharedKey;
use crate::session::snapshot::MessageSnapshot;
use crate::session::WallClock;

impl Core {
    pub(super) fn forwarded(&mut self, from: NodeId, f: Forward, clock: &WallClock) {
        let stream = f.id.shard;
        let fresh = match self.fwd_in.handle_forward(from, stream, &f) {
            Ok(true) => true,
            // A stream never repeats a number (nothing is sent twice): 1
            // again is the sender's new link, seen before membership said
            // so (a restart).
            Ok(false) if f.stream_seq == 1 => {
                self.fwd_in.resync_to(from, stream, 1);
                true
            }
            Ok(false) => false,
            Err(gap) => {
                // The messages between were on a link that broke unseen
                // by membership: they are lost; go on from this one.
                self.stats.stream_gaps += 1;
                warn!("cluster driver: {gap}; the messages between are lost");
                self.fwd_in.resync_to(from, stream, f.stream_seq);
                true
            }
        };
        if !fresh {
            return;
        }
        self.stats.forwards_in += 1;
        let shared = match f.shared.as_ref().map(super::shared::shared_key_of) {
            None => None,
            Some(Some(key)) => Some(key),
            Some(None) => {
                self.stats.bad_messages += 1;
                warn!(%from, "cluster driver: forwarded message for an invalid shared group refused");
                self.fwd_in.handle_queued(from, stream, f.stream_seq);
                return;
            }
        };
        match f.message.into_message(clock) {
            Ok(message) => self.deliveries.push_back(Delivery {
                from,
                stream,
                seq: f.stream_seq,
                message: Arc::new(message),
                shared,
            }),
            Err(e) => {
                // Nothing to deliver, but the number is used: acknowledge
                // it so the stream goes on.
                self.stats.bad_messages += 1;
                warn!(%from, "cluster driver: forwarded message refused: {e}");
                self.fwd_in.handle_queued(from, stream, f.stream_seq);
            }
        }
    }

    pub(super) fn retained_in(&mut self, from: NodeId, r: RetainedSync, clock: &WallClock) {
        let message = match r.message.map(|m| m.into_message(clock)).transpose() {
            Ok(message) => message.map(Arc::new),
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
        message: &crate::session::Message,
        done: Option<oneshot::Sender<bool>>,
        clock: &WallClock,
    ) {
        let qos = message.qos as u8;
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
        let seq = {
            let s = &mut self.msg_seq[usize::from(shard)];
            *s += 1;
            *s
        };
        let snapshot = MessageSnapshot::of(message, clock);
        let mut failed = Vec::new();
        for (node, frames) in plan {
            if !self.view.contains_key(&node) {
                self.stats.no_peer_drops[usize::from(qos.min(2))] += 1;
                failed.push(node);
                continue;
            }
            let last = frames.len() - 1;
            let mut dropped = false;
            for (i, target) in frames.into_iter().enumerate() {
                let forward = Forward {
                    id: MessageId {
                        node: self.here.0,
                        shard,
                        seq,
                    },
                    stream_seq: 0,
                    message: snapshot.clone(),
                    shared: target,
                };
                // The last frame carries the token (cumulative acks).
                let token = if i == last { token } else { None };
                let out = self.fwd_out.entry(node).or_default();
                match out.push(shard, forward, token) {
                    PushOutcome::Queued { .. } => self.stats.forwards_out += 1,
                    PushOutcome::Dropped(DropReason::WindowFull | DropReason::LinkDown) => {
                        dropped = true
                    }
                }
            }
            if dropped {
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
}
