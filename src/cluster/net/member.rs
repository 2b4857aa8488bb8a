//! Who a member is (foca's identity), what the handle reports about the
//! members, and the per-peer counters.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::settings::Role;
use crate::router::location::NodeId;

/// A node incarnation as SWIM knows it. Its address (`foca::Identity::Addr`)
/// is the `NodeId`, so a restarted node (newer boot epoch) replaces its old
/// incarnation instead of being a second member.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    pub node: u32,
    pub name: String,
    pub role: Role,
    pub quic_addr: SocketAddr,
    pub mqtt_addr: SocketAddr,
    pub boot_epoch_ms: u64,
    /// Bumped when this node finds itself declared down while alive (a
    /// false suspicion, or a `leave` then a join): the renewed identity
    /// wins over the one declared down.
    pub renewal: u32,
}

impl Member {
    pub fn node_id(&self) -> NodeId {
        NodeId(self.node)
    }
}

impl foca::Identity for Member {
    type Addr = u32;

    fn renew(&self) -> Option<Self> {
        Some(Member {
            renewal: self.renewal.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> u32 {
        self.node
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.boot_epoch_ms, self.renewal) > (adversary.boot_epoch_ms, adversary.renewal)
    }
}

/// Running or stopped, as status listings say it (EMQX's `node_status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MemberState {
    Running,
    Stopped,
}

/// One line of `ClusterHandle::members()`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberInfo {
    pub node: NodeId,
    pub name: String,
    pub role: Role,
    pub state: MemberState,
    pub mqtt_addr: SocketAddr,
    pub boot_epoch_ms: u64,
}

/// Counters of one peer link, written by the cluster thread, read by
/// anyone (Prometheus later). Relaxed: each is an independent tally.
#[derive(Default, Debug)]
pub struct PeerCounters {
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub frames_received: AtomicU64,
    pub bytes_received: AtomicU64,
    /// Frames dropped because that stream's queue was full.
    pub drops_queue_full: AtomicU64,
    /// Frames dropped because there was no link to the peer.
    pub drops_no_link: AtomicU64,
    /// Links closed because the peer sent a bad frame.
    pub malformed_frames: AtomicU64,
    /// Gauges, refreshed every discovery interval: QUIC's smoothed round
    /// trip time, and frames waiting in this link's stream queues.
    pub rtt_us: AtomicU64,
    pub queue_depth: AtomicU64,
    /// Written by the cluster driver (`ClusterHandle::record_forwarding`):
    /// forwarded messages dropped towards the peer, `[reason][qos]`
    /// (reasons as `logic::forward::DropReason`: window full, link down),
    /// and messages in its forwarding windows not yet acknowledged.
    pub forward_drops: [[AtomicU64; 3]; 2],
    pub forward_window_depth: AtomicU64,
}

impl PeerCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> PeerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PeerStats {
            frames_sent: get(&self.frames_sent),
            bytes_sent: get(&self.bytes_sent),
            frames_received: get(&self.frames_received),
            bytes_received: get(&self.bytes_received),
            drops_queue_full: get(&self.drops_queue_full),
            drops_no_link: get(&self.drops_no_link),
            malformed_frames: get(&self.malformed_frames),
            rtt_us: get(&self.rtt_us),
            queue_depth: get(&self.queue_depth),
            forward_drops: self
                .forward_drops
                .each_ref()
                .map(|row| row.each_ref().map(get)),
            forward_window_depth: get(&self.forward_window_depth),
        }
    }
}

/// A copy of one peer's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PeerStats {
    pub frames_sent: u64,
    pub bytes_sent: u64,
    pub frames_received: u64,
    pub bytes_received: u64,
    pub drops_queue_full: u64,
    pub drops_no_link: u64,
    pub malformed_frames: u64,
    pub rtt_us: u64,
    pub queue_depth: u64,
    /// Forwarded messages dropped, `[reason][qos]` (window full, link down).
    pub forward_drops: [[u64; 3]; 2],
    pub forward_window_depth: u64,
}

/// What the cluster thread shares with its handles: the member list and
/// the counters. Written only by the cluster thread; short critical
/// sections, never taken on a shard's hot path.
#[derive(Default, Debug)]
pub struct Shared {
    pub members: Mutex<Vec<MemberInfo>>,
    pub peers: Mutex<HashMap<NodeId, Arc<PeerCounters>>>,
    /// Events lost because the consumer's queue was full.
    pub events_dropped: AtomicU64,
}

impl Shared {
    pub fn counters(&self, node: NodeId) -> Arc<PeerCounters> {
        let mut peers = self.peers.lock().unwrap_or_else(|e| e.into_inner());
        peers.entry(node).or_default().clone()
    }
}
