//! The simulated network: one QUIC connection per ordered pair of nodes,
//! modelled as two reliable, ordered queues (the control stream and the
//! data streams) with their own latencies, so a data frame can overtake a
//! control frame sent earlier and the reverse. Frames cross as bytes
//! (`Message::encode` / `decode`), so the simulation exercises the codec.
//! A broken link loses everything in flight on both directions; the next
//! connection starts empty (QUIC streams die with their connection).

use std::collections::{BTreeMap, VecDeque};

use super::super::proto::{Message, PROTO_VERSION};
use crate::router::location::NodeId;

/// A frame in flight.
#[derive(Debug)]
pub(super) struct Packet {
    pub from: NodeId,
    pub to: NodeId,
    pub deliver_at_ms: u64,
    pub kind: u8,
    pub body: Vec<u8>,
}

impl Packet {
    pub fn message(&self) -> Message {
        Message::decode(PROTO_VERSION, self.kind, &self.body)
            .expect("the simulation only sends frames it encoded")
    }
}

#[derive(Debug, Default)]
struct Link {
    up: bool,
    control_latency_ms: u64,
    data_latency_ms: u64,
    control: VecDeque<Packet>,
    data: VecDeque<Packet>,
}

#[derive(Debug, Default)]
pub(super) struct Net {
    links: BTreeMap<(NodeId, NodeId), Link>,
    pub frames_sent: u64,
    pub frames_lost: u64,
}

/// Which queue a frame takes.
fn is_data(m: &Message) -> bool {
    matches!(m, Message::Forward(_) | Message::ForwardAck(_))
}

impl Net {
    /// Opens (or reopens) the connection between `a` and `b`.
    pub fn connect(&mut self, rng: &mut fastrand::Rng, a: NodeId, b: NodeId, latency_max_ms: u64) {
        for key in [(a, b), (b, a)] {
            let link = self.links.entry(key).or_default();
            assert!(link.control.is_empty() && link.data.is_empty());
            link.up = true;
            link.control_latency_ms = rng.u64(1..=latency_max_ms);
            link.data_latency_ms = rng.u64(1..=latency_max_ms);
        }
    }

    /// Breaks the connection: what is in flight is lost.
    pub fn break_link(&mut self, a: NodeId, b: NodeId) {
        for key in [(a, b), (b, a)] {
            if let Some(link) = self.links.get_mut(&key) {
                link.up = false;
                self.frames_lost += (link.control.len() + link.data.len()) as u64;
                link.control.clear();
                link.data.clear();
            }
        }
    }

    pub fn is_up(&self, a: NodeId, b: NodeId) -> bool {
        self.links.get(&(a, b)).is_some_and(|l| l.up)
    }

    /// Sends on the link if it is up (a frame to a broken link is lost, as
    /// a write to a closed QUIC connection fails).
    pub fn send(
        &mut self,
        rng: &mut fastrand::Rng,
        now_ms: u64,
        from: NodeId,
        to: NodeId,
        m: &Message,
    ) {
        let Some(link) = self.links.get_mut(&(from, to)).filter(|l| l.up) else {
            self.frames_lost += 1;
            return;
        };
        let data = is_data(m);
        let (queue, latency) = if data {
            (&mut link.data, link.data_latency_ms)
        } else {
            (&mut link.control, link.control_latency_ms)
        };
        // Jitter, but never before the frame ahead (ordered stream).
        let at = now_ms + latency + rng.u64(0..=latency / 2);
        let at = queue.back().map_or(at, |p| at.max(p.deliver_at_ms));
        self.frames_sent += 1;
        queue.push_back(Packet {
            from,
            to,
            deliver_at_ms: at,
            kind: m.kind(),
            body: m.encode().expect("simulated frames encode"),
        });
    }

    /// Every frame due by `now_ms`, by delivery time (each queue's order
    /// kept).
    pub fn due(&mut self, now_ms: u64) -> Vec<Packet> {
        let mut out = Vec::new();
        for link in self.links.values_mut() {
            for queue in [&mut link.control, &mut link.data] {
                while queue.front().is_some_and(|p| p.deliver_at_ms <= now_ms) {
                    out.push(queue.pop_front().expect("front"));
                }
            }
        }
        out.sort_by_key(|p| p.deliver_at_ms);
        out
    }
}
