//! Forwarding windows: messages on their way to one peer, per data stream.
//!
//! A publisher's shard forwards a message once per node with matching
//! subscribers, on that shard's data stream to the node, so one
//! publisher's messages stay in order (docs/adr/0001-cluster.md,
//! "Publishes"). [`ForwardOut`] (one per peer) numbers each stream's
//! messages and keeps them until the peer acknowledges them (cumulative,
//! [`ForwardAck`]): that is the bounded window. When a window is full a
//! message of any QoS is still taken (up to `FORWARD_WINDOW_OVERSHOOT_MAX`
//! more: those already on their way) and the publisher is paused until the
//! window drains to half ([`ForwardEvent::Resume`]); past the overshoot it
//! is dropped and counted. Messages leave in batches
//! ([`super::records`]: written straight from the routed `Arc<Message>`s,
//! no per-message archive): a stream with `FORWARD_FRAMES_IN_FLIGHT_MAX` frames
//! unacknowledged sends nothing, so what arrives meanwhile leaves together
//! in the next frame.
//!
//! [`PublishAcks`] holds a QoS 1/2 publisher's PUBACK/PUBREC until every
//! receiving node has the message queued; [`ForwardIn`] numbers-checks a
//! peer's streams and acknowledges what the shards queued.
//!
//! A replaced or broken link to a peer still running loses what was in
//! flight on it (QUIC streams die with their connection), but not the
//! window: every frame not acknowledged is sent again, as it was encoded,
//! on the next link (`handle_link_lost`), and the receiver drops repeats
//! by number and frames after a gap (they come again). Frames are also
//! sent again when acknowledgements stop coming for
//! `FORWARD_RESEND_AFTER_MS` (an acknowledgement or event lost). Only a
//! peer declared down ends a window: pending messages are reported
//! `Failed` and a new window (a newer [`WindowId`]) numbers from 1
//! (`handle_link_down`).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;

use super::proto::{ForwardAck, Message, WindowId};
use super::records::{batch_bytes, OutForward, RecordsEncoder};
use crate::limits::{
    FORWARD_BATCH_BYTES_MAX, FORWARD_BATCH_MESSAGES_MAX, FORWARD_FRAMES_IN_FLIGHT_MAX,
    FORWARD_WINDOW_MESSAGES_MAX, FORWARD_WINDOW_OVERSHOOT_MAX,
};
use crate::router::location::{NodeId, ShardId};

/// Why a forwarded message was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The window was full (QoS 0), or past its overshoot (QoS 1/2).
    WindowFull = 0,
    /// The link broke with the message unacknowledged.
    LinkDown = 1,
}

/// Drops by reason and QoS, for metrics (`[reason][qos]`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ForwardDrops(pub [[u64; 3]; 2]);

impl ForwardDrops {
    pub fn get(&self, reason: DropReason, qos: u8) -> u64 {
        self.0[reason as usize][usize::from(qos.min(2))]
    }

    pub fn add(&mut self, other: &ForwardDrops) {
        for (row, other) in self.0.iter_mut().zip(other.0) {
            for (n, m) in row.iter_mut().zip(other) {
                *n += m;
            }
        }
    }

    fn count(&mut self, reason: DropReason, qos: u8) {
        self.0[reason as usize][usize::from(qos.min(2))] += 1;
    }
}

/// What `ForwardOut::push` did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushOutcome {
    /// Queued; `pause`: the window is over its size, pause the publisher
    /// until `Resume` for this stream.
    Queued {
        stream_seq: u64,
        pause: bool,
    },
    Dropped(DropReason),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardEvent {
    /// The peer queued the message carrying this publisher token.
    Acked { token: u64 },
    /// The message with this token will never be acknowledged (link down).
    Failed { token: u64 },
    /// The stream's window drained: paused publishers may go on.
    Resume { shard: ShardId },
}

#[derive(Debug)]
struct Pending {
    seq: u64,
    qos: u8,
    token: Option<u64>,
}

/// A frame sent and not acknowledged, kept encoded to be sent again.
#[derive(Debug)]
struct SentFrame {
    /// Number of its last message.
    last_seq: u64,
    body: Bytes,
}

#[derive(Debug, Default)]
struct StreamOut {
    /// Number of the last message queued on this stream (this window).
    last_seq: u64,
    /// Queued and not acknowledged, in order (sent or not).
    unacked: VecDeque<Pending>,
    /// Not yet handed to the transport.
    unsent: VecDeque<OutForward>,
    /// Frames sent and not acknowledged (`FORWARD_FRAMES_IN_FLIGHT_MAX`).
    frames: VecDeque<SentFrame>,
    /// Frames to send again, oldest first, before anything new: they were
    /// in flight on a link that was lost. With `frames`, at most
    /// `FORWARD_FRAMES_IN_FLIGHT_MAX`.
    resend: VecDeque<SentFrame>,
    /// The first unacknowledged number when the last resend check saw
    /// frames in flight: the same one at the next check means no progress.
    stalled_at: Option<u64>,
    paused: bool,
}

impl StreamOut {
    fn sendable(&self) -> bool {
        !self.resend.is_empty()
            || (!self.unsent.is_empty() && self.frames.len() < FORWARD_FRAMES_IN_FLIGHT_MAX)
    }

    /// Every frame in flight goes again, before the frames still to resend.
    fn go_back(&mut self) {
        let mut again = std::mem::take(&mut self.frames);
        again.append(&mut self.resend);
        self.resend = again;
    }
}

/// The window towards one peer.
#[derive(Debug)]
pub struct ForwardOut {
    window: WindowId,
    streams: BTreeMap<ShardId, StreamOut>,
    /// The stream served last: the next frame comes from the one after it
    /// (streams are served in turn).
    served: Option<ShardId>,
    events: VecDeque<ForwardEvent>,
    drops: ForwardDrops,
    /// Frames sent again (link lost, or no acknowledgement).
    resent_frames: u64,
}

impl Default for ForwardOut {
    fn default() -> Self {
        ForwardOut::new()
    }
}

impl ForwardOut {
    pub fn new() -> ForwardOut {
        ForwardOut::with_window(WindowId::default())
    }

    /// A window named `window` in its batches (see [`WindowId`]).
    pub fn with_window(window: WindowId) -> ForwardOut {
        ForwardOut {
            window,
            streams: BTreeMap::new(),
            served: None,
            events: VecDeque::new(),
            drops: ForwardDrops::default(),
            resent_frames: 0,
        }
    }

    /// Frames sent again since the window opened.
    pub fn resent_frames(&self) -> u64 {
        self.resent_frames
    }

    pub fn drops(&self) -> ForwardDrops {
        self.drops
    }

    /// Messages queued and not acknowledged on all streams.
    pub fn depth(&self) -> usize {
        self.streams.values().map(|s| s.unacked.len()).sum()
    }

    /// Whether `shard`'s stream is over its window (its publishers wait).
    pub fn is_paused(&self, shard: ShardId) -> bool {
        self.streams.get(&shard).is_some_and(|s| s.paused)
    }

    /// Queues `forward` (its `stream_seq` is set here) on `shard`'s stream.
    /// `token`: the publisher's, for QoS 1/2 (see `PublishAcks`). A full
    /// window still takes the message (any QoS) and says to pause the
    /// publisher; past its overshoot the message is dropped and counted.
    pub fn push(
        &mut self,
        shard: ShardId,
        mut forward: OutForward,
        token: Option<u64>,
    ) -> PushOutcome {
        let qos = forward.message.qos as u8;
        let stream = self.streams.entry(shard).or_default();
        let depth = stream.unacked.len();
        let full = depth >= FORWARD_WINDOW_MESSAGES_MAX;
        if depth >= FORWARD_WINDOW_MESSAGES_MAX + FORWARD_WINDOW_OVERSHOOT_MAX {
            self.drops.count(DropReason::WindowFull, qos);
            return PushOutcome::Dropped(DropReason::WindowFull);
        }
        stream.last_seq += 1;
        forward.stream_seq = stream.last_seq;
        stream.unacked.push_back(Pending {
            seq: stream.last_seq,
            qos,
            token,
        });
        stream.unsent.push_back(forward);
        stream.paused |= full;
        PushOutcome::Queued {
            stream_seq: stream.last_seq,
            pause: full,
        }
    }

    /// The next frame to send: `(data stream, forward records body)`: a
    /// frame to send again first, else the stream's unsent messages up to
    /// the batch limits, from the next stream in turn that has fewer than
    /// `FORWARD_FRAMES_IN_FLIGHT_MAX` frames unacknowledged.
    pub fn poll_transmit(&mut self) -> Option<(ShardId, Bytes)> {
        use std::ops::Bound::{Excluded, Unbounded};
        let after = match self.served {
            Some(s) => (Excluded(s), Unbounded),
            None => (Unbounded, Unbounded),
        };
        let shard = self
            .streams
            .range(after)
            .chain(self.streams.iter())
            .find(|(_, s)| s.sendable())
            .map(|(&shard, _)| shard)?;
        self.served = Some(shard);
        let stream = self.streams.get_mut(&shard).expect("found above");
        if let Some(again) = stream.resend.pop_front() {
            let body = again.body.clone();
            stream.frames.push_back(again);
            self.resent_frames += 1;
            return Some((shard, body));
        }
        // How many of the unsent messages this frame takes, then one
        // buffer of the right size for all of them.
        let mut count = 0;
        let mut bytes = 0;
        for next in &stream.unsent {
            let weight = batch_bytes(next);
            if count > 0
                && (count >= FORWARD_BATCH_MESSAGES_MAX || bytes + weight > FORWARD_BATCH_BYTES_MAX)
            {
                break;
            }
            bytes += weight;
            count += 1;
        }
        let first = stream.unsent.front().expect("a sendable stream has one");
        let mut frame = RecordsEncoder::new(self.window, shard, first, bytes);
        let mut last_seq = 0;
        for f in stream.unsent.drain(..count) {
            frame.push(&f);
            last_seq = f.stream_seq;
        }
        // A frame is at most FORWARD_BATCH_BYTES_MAX plus one message of at
        // most `mqtt.max_packet_size`, under the body limit (limits.rs).
        let body = frame.finish();
        stream.frames.push_back(SentFrame {
            last_seq,
            body: body.clone(),
        });
        Some((shard, body))
    }

    pub fn handle_ack(&mut self, ack: &ForwardAck) {
        if ack.window != self.window {
            return; // for an older window: its numbers are not ours
        }
        let Some(stream) = self.streams.get_mut(&ack.shard) else {
            return;
        };
        while stream.unacked.front().is_some_and(|p| p.seq <= ack.up_to) {
            let p = stream.unacked.pop_front().expect("front exists");
            if let Some(token) = p.token {
                self.events.push_back(ForwardEvent::Acked { token });
            }
        }
        stream.frames.retain(|f| f.last_seq > ack.up_to);
        stream.resend.retain(|f| f.last_seq > ack.up_to);
        if stream.paused && stream.unacked.len() <= FORWARD_WINDOW_MESSAGES_MAX / 2 {
            stream.paused = false;
            self.events
                .push_back(ForwardEvent::Resume { shard: ack.shard });
        }
    }

    /// The link to the peer was lost (broken or replaced) while the peer
    /// still runs: what was in flight goes again on the next link, in
    /// order, under the same numbers. Nothing fails, nothing is dropped.
    pub fn handle_link_lost(&mut self) {
        for stream in self.streams.values_mut() {
            stream.go_back();
            stream.stalled_at = None;
        }
    }

    /// Every `FORWARD_RESEND_AFTER_MS` while frames are in flight: a
    /// stream whose first unacknowledged message is the same as at the
    /// previous check sends its frames again (an acknowledgement, or the
    /// news of a lost link, went missing; the receiver drops repeats).
    pub fn handle_resend_check(&mut self) {
        for stream in self.streams.values_mut() {
            let first = stream.unacked.front().map(|p| p.seq);
            if stream.frames.is_empty() || first.is_none() {
                stream.stalled_at = None;
            } else if stream.stalled_at == first {
                stream.go_back();
                stream.stalled_at = None;
            } else {
                stream.stalled_at = first;
            }
        }
    }

    /// Whether frames are in flight (the resend check is due every
    /// `FORWARD_RESEND_AFTER_MS` then).
    pub fn in_flight(&self) -> bool {
        self.streams.values().any(|s| !s.frames.is_empty())
    }

    /// The peer is gone (declared down, or restarted): everything
    /// unacknowledged is lost and counted, publishers waiting for it fail;
    /// a later window towards it numbers from 1.
    pub fn handle_link_down(&mut self) {
        for (shard, stream) in std::mem::take(&mut self.streams) {
            for p in stream.unacked {
                self.drops.count(DropReason::LinkDown, p.qos);
                if let Some(token) = p.token {
                    self.events.push_back(ForwardEvent::Failed { token });
                }
            }
            if stream.paused {
                self.events.push_back(ForwardEvent::Resume { shard });
            }
        }
        self.served = None;
    }

    pub fn poll_event(&mut self) -> Option<ForwardEvent> {
        self.events.pop_front()
    }
}

/// Publisher acknowledgements waiting for several receiving nodes.
#[derive(Debug, Default)]
pub struct PublishAcks {
    /// Per token: nodes still to acknowledge, and whether one failed.
    waiting: BTreeMap<u64, (BTreeSet<NodeId>, bool)>,
    released: VecDeque<(u64, bool)>,
}

impl PublishAcks {
    pub fn new() -> PublishAcks {
        PublishAcks::default()
    }

    /// A QoS 1/2 message with `token` was queued towards `nodes`.
    pub fn begin(&mut self, token: u64, nodes: impl IntoIterator<Item = NodeId>) {
        let nodes: BTreeSet<NodeId> = nodes.into_iter().collect();
        if nodes.is_empty() {
            self.released.push_back((token, true));
        } else {
            assert!(
                self.waiting.insert(token, (nodes, false)).is_none(),
                "token {token} reused"
            );
        }
    }

    /// `node`'s window acknowledged (`ok`) or failed the message.
    pub fn handle_node(&mut self, token: u64, node: NodeId, ok: bool) {
        let Some((nodes, failed)) = self.waiting.get_mut(&token) else {
            return;
        };
        nodes.remove(&node);
        *failed |= !ok;
        if nodes.is_empty() {
            let (_, failed) = self.waiting.remove(&token).expect("present");
            self.released.push_back((token, !failed));
        }
    }

    /// A node went down: it will acknowledge nothing.
    pub fn handle_member_down(&mut self, node: NodeId) {
        let tokens: Vec<u64> = self
            .waiting
            .iter()
            .filter(|(_, (n, _))| n.contains(&node))
            .map(|(&t, _)| t)
            .collect();
        for t in tokens {
            self.handle_node(t, node, false);
        }
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// `(token, complete)`: send the PUBACK/PUBREC; `complete` is false if
    /// some receiving node never got the message (link or node down).
    pub fn poll_release(&mut self) -> Option<(u64, bool)> {
        self.released.pop_front()
    }
}

/// A forwarded message that broke its stream's numbering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("data stream {shard} from node {from}: message number {got} where {expected} was expected")]
pub struct StreamGap {
    pub from: NodeId,
    pub shard: ShardId,
    pub expected: u64,
    pub got: u64,
}

#[derive(Debug, Default)]
struct StreamIn {
    window: WindowId,
    received: u64,
    queued: u64,
}

/// The receiving side of every peer's data streams.
#[derive(Debug, Default)]
pub struct ForwardIn {
    streams: BTreeMap<(NodeId, ShardId), StreamIn>,
    /// Streams whose `queued` is ahead of `acked`, or whose last
    /// acknowledgement may have been lost.
    dirty: BTreeSet<(NodeId, ShardId)>,
}

impl ForwardIn {
    pub fn new() -> ForwardIn {
        ForwardIn::default()
    }

    /// A batch of `from`'s stream `shard` names its `window`: a newer one
    /// starts the stream afresh (numbers from 1); `false` for an older
    /// one, whose frames are dropped (late, from a link replaced since).
    pub fn handle_window(&mut self, from: NodeId, shard: ShardId, window: WindowId) -> bool {
        let s = self.streams.entry((from, shard)).or_default();
        if window > s.window {
            *s = StreamIn {
                window,
                ..StreamIn::default()
            };
        }
        window == s.window
    }

    /// A forwarded message arrived on `from`'s stream `shard`: `Ok(true)`
    /// to deliver it, `Ok(false)` for a repeat (sent again after a lost
    /// link: acknowledged again). A gap means frames were lost with a
    /// link: the message is not delivered and comes again in order.
    pub fn handle_forward(
        &mut self,
        from: NodeId,
        shard: ShardId,
        stream_seq: u64,
    ) -> Result<bool, StreamGap> {
        let s = self.streams.entry((from, shard)).or_default();
        if stream_seq <= s.received {
            self.dirty.insert((from, shard));
            return Ok(false);
        }
        if stream_seq != s.received + 1 {
            return Err(StreamGap {
                from,
                shard,
                expected: s.received + 1,
                got: stream_seq,
            });
        }
        s.received = stream_seq;
        Ok(true)
    }

    /// The shards queued `from`'s stream `shard` up to `stream_seq`.
    pub fn handle_queued(&mut self, from: NodeId, shard: ShardId, stream_seq: u64) {
        if let Some(s) = self.streams.get_mut(&(from, shard)) {
            if stream_seq > s.queued {
                s.queued = stream_seq;
                self.dirty.insert((from, shard));
            }
        }
    }

    /// A new link with `from` (still the same peer): acknowledgements sent
    /// on the old one may be lost, so every stream is acknowledged again.
    pub fn handle_link_renewed(&mut self, from: NodeId) {
        let streams: Vec<_> = self
            .streams
            .range((from, 0)..=(from, ShardId::MAX))
            .map(|(&k, _)| k)
            .collect();
        self.dirty.extend(streams);
    }

    /// `from` is gone (declared down, or restarted): its streams start
    /// afresh.
    pub fn handle_link_down(&mut self, from: NodeId) {
        self.streams.retain(|(n, _), _| *n != from);
        self.dirty.retain(|(n, _)| *n != from);
    }

    /// One cumulative acknowledgement per stream that advanced.
    pub fn poll_transmit(&mut self) -> Option<(NodeId, Message)> {
        let (from, shard) = self.dirty.pop_first()?;
        let s = self
            .streams
            .get_mut(&(from, shard))
            .expect("dirty stream exists");
        Some((
            from,
            Message::ForwardAck(ForwardAck {
                window: s.window,
                shard,
                up_to: s.queued,
            }),
        ))
    }
}

#[cfg(test)]
#[path = "forward_tests.rs"]
mod tests;
