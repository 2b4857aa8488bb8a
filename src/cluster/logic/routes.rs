//! The route relay (docs/adr/0001-cluster.md, "Routes"): what this node
//! advertises to its peers, and what it learns from them.
//!
//! Outgoing: every shard's interest change comes in (`handle_interest`);
//! the relay keeps, per filter, each shard's count and advertises only
//! node-level changes: an ordinary filter's 0 <-> non-zero crossing over
//! the node's shards, a shared group's every change of the node's member
//! sum. Each advertisement is numbered in this node's sequence (per boot
//! epoch) and sent to every running peer. Every `handle_interest` carries a
//! token (the SUBSCRIBE's SUBACK, or an UNSUBSCRIBE's answer) released once
//! every in-sync peer has acknowledged the latest number issued, or after
//! `ROUTE_ACK_TIMEOUT_MS`: a peer still behind is marked out of sync and
//! sent a full snapshot, and is waited for again once it acknowledges it.
//!
//! Incoming: a peer's changes must arrive in order on the reliable control
//! stream; each in-order change becomes a [`RouteEvent::Apply`] for the
//! shards, and is acknowledged when the caller says the shards applied it
//! (`handle_applied`): acknowledgements are cumulative. A gap or an unknown
//! epoch (the peer restarted) asks for a snapshot, which replaces all of the
//! peer's routes at once ([`RouteEvent::Replace`]). A peer that goes down
//! is forgotten ([`RouteEvent::Forget`]): no route stays with a dead node.

use std::collections::{BTreeMap, VecDeque};

use super::proto::{
    Message, RouteAck, RouteChange, RouteEntry, RouteSnapshot, RouteSnapshotRequest,
};
use crate::codec::ByteStr;
use crate::limits::{
    ROUTE_ACK_TIMEOUT_MS, ROUTE_SNAPSHOT_CHUNK_ENTRIES_MAX, ROUTE_SNAPSHOT_ENTRIES_MAX,
    ROUTE_WAITERS_MAX,
};
use crate::router::location::{NodeId, ShardId};
use crate::router::InterestChange;

/// A filter and, for shared subscriptions, its group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct RouteKey {
    filter: String,
    group: Option<String>,
}

/// What the shards must do (and, for `Released`, the SUBSCRIBE).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteEvent {
    /// Apply a peer's change on every shard
    /// (`Router::apply_remote_interest`), then call `handle_applied`.
    Apply {
        from: NodeId,
        epoch: u64,
        seq: u64,
        change: InterestChange,
    },
    /// Forget the peer's routes (`Router::forget_node`) and apply these on
    /// every shard, then call `handle_applied` with `seq`.
    Replace {
        from: NodeId,
        epoch: u64,
        seq: u64,
        changes: Vec<InterestChange>,
    },
    /// The peer is down: `Router::forget_node` on every shard.
    Forget { node: NodeId },
    /// The interest change with this token is acknowledged (SUBACK may go);
    /// `out_of_sync` lists the peers that had not acknowledged it in time.
    Released {
        token: u64,
        out_of_sync: Vec<NodeId>,
    },
}

/// Counts for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteStats {
    pub changes_sent: u64,
    pub snapshots_sent: u64,
    /// Peers marked out of sync by the acknowledgement timeout.
    pub ack_timeouts: u64,
    /// Gaps or unknown epochs seen in peers' changes.
    pub gaps: u64,
    /// Interest calls released at once because `ROUTE_WAITERS_MAX` waited.
    pub waiters_overflow: u64,
    /// Snapshots dropped for holding over `ROUTE_SNAPSHOT_ENTRIES_MAX`.
    pub snapshots_too_large: u64,
}

#[derive(Debug)]
struct PeerOut {
    /// The highest of our numbers the peer applied (this epoch).
    acked: u64,
    /// Waited for by SUBACKs; false from an ack timeout until the peer
    /// acknowledges the snapshot it was sent.
    in_sync: bool,
    /// Number of the latest snapshot sent to it.
    snapshot_seq: u64,
}

#[derive(Debug)]
struct Waiter {
    token: u64,
    seq: u64,
    since_ms: u64,
}

#[derive(Debug, Default)]
struct Inbound {
    epoch: u64,
    /// Highest number handed to the shards.
    received: u64,
    /// Highest number the shards applied (and we acknowledged).
    applied: u64,
    /// A snapshot was applied for `epoch`: changes may be applied in order.
    live: bool,
    /// A snapshot request is outstanding.
    requested: bool,
    /// Parts of a snapshot being received: (epoch, entries).
    assembling: Option<(u64, Vec<RouteEntry>)>,
}

/// One node's route relay. Sans-IO: see the module doc.
#[derive(Debug)]
pub struct RouteRelay {
    here: NodeId,
    epoch: u64,
    shard_count: u16,
    /// Per key, each shard's count (ordinary: subscribers; shared: members).
    shards: BTreeMap<RouteKey, Vec<u32>>,
    /// Per key, what this node advertises (non-zero only).
    advertised: BTreeMap<RouteKey, u32>,
    issued: u64,
    peers: BTreeMap<NodeId, PeerOut>,
    /// In issue order, so by `seq` and by `since_ms`.
    waiters: VecDeque<Waiter>,
    origins: BTreeMap<NodeId, Inbound>,
    transmits: VecDeque<(NodeId, Message)>,
    events: VecDeque<RouteEvent>,
    stats: RouteStats,
}

impl RouteRelay {
    /// `epoch`: this node's boot epoch (unique per start).
    pub fn new(here: NodeId, epoch: u64, shard_count: u16) -> RouteRelay {
        assert!(shard_count > 0);
        RouteRelay {
            here,
            epoch,
            shard_count,
            shards: BTreeMap::new(),
            advertised: BTreeMap::new(),
            issued: 0,
            peers: BTreeMap::new(),
            waiters: VecDeque::new(),
            origins: BTreeMap::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: RouteStats::default(),
        }
    }

    pub fn stats(&self) -> RouteStats {
        self.stats
    }

    /// The latest number of this node's route sequence.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// What this node advertises now.
    pub fn advertised(&self) -> impl Iterator<Item = RouteEntry> + '_ {
        self.advertised.iter().map(|(k, &members)| RouteEntry {
            filter: k.filter.clone(),
            group: k.group.clone(),
            members,
        })
    }

    // ------------------------------------------------------------ outgoing

    /// Shard `shard`'s interest changed (its numbered `InterestChange`).
    /// Exactly one `Released { token }` follows, at once or later.
    pub fn handle_interest(
        &mut self,
        shard: ShardId,
        change: &InterestChange,
        token: u64,
        now_ms: u64,
    ) {
        assert!(shard < self.shard_count, "shard {shard} out of range");
        let key = RouteKey {
            filter: change.filter.to_string(),
            group: change.group.as_ref().map(|g| g.to_string()),
        };
        let counts = self
            .shards
            .entry(key.clone())
            .or_insert_with(|| vec![0; usize::from(self.shard_count)]);
        counts[usize::from(shard)] = change.members;
        let node_members = if key.group.is_some() {
            counts.iter().sum()
        } else {
            u32::from(counts.iter().any(|&c| c > 0))
        };
        if node_members == 0 {
            self.shards.remove(&key);
        }
        let before = self.advertised.get(&key).copied().unwrap_or(0);
        if node_members != before {
            if node_members == 0 {
                self.advertised.remove(&key);
            } else {
                self.advertised.insert(key.clone(), node_members);
            }
            self.issue(RouteEntry {
                filter: key.filter,
                group: key.group,
                members: node_members,
            });
        }
        // Waits for the latest number, not only this key's: an earlier
        // change of the same key may still be unacknowledged.
        let waiter = Waiter {
            token,
            seq: self.issued,
            since_ms: now_ms,
        };
        if self.waiters.len() >= ROUTE_WAITERS_MAX {
            self.stats.waiters_overflow += 1;
            let out_of_sync = self.lagging(waiter.seq);
            self.events
                .push_back(RouteEvent::Released { token, out_of_sync });
            return;
        }
        self.waiters.push_back(waiter);
        self.release_waiters();
    }

    fn issue(&mut self, entry: RouteEntry) {
        self.issued += 1;
        for &peer in self.peers.keys() {
            self.stats.changes_sent += 1;
            self.transmits.push_back((
                peer,
                Message::RouteChange(RouteChange {
                    epoch: self.epoch,
                    seq: self.issued,
                    entry: entry.clone(),
                }),
            ));
        }
    }

    fn send_snapshot(&mut self, peer: NodeId) {
        self.stats.snapshots_sent += 1;
        let entries: Vec<RouteEntry> = self.advertised().collect();
        let mut parts = entries.chunks(ROUTE_SNAPSHOT_CHUNK_ENTRIES_MAX).peekable();
        if parts.peek().is_none() {
            self.transmits.push_back((
                peer,
                Message::RouteSnapshot(RouteSnapshot {
                    epoch: self.epoch,
                    seq: self.issued,
                    entries: Vec::new(),
                    last: true,
                }),
            ));
        }
        while let Some(part) = parts.next() {
            let last = parts.peek().is_none();
            self.transmits.push_back((
                peer,
                Message::RouteSnapshot(RouteSnapshot {
                    epoch: self.epoch,
                    seq: self.issued,
                    entries: part.to_vec(),
                    last,
                }),
            ));
        }
        if let Some(p) = self.peers.get_mut(&peer) {
            p.snapshot_seq = self.issued;
        }
    }

    /// In-sync peers that have not acknowledged `seq`.
    fn lagging(&self, seq: u64) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, p)| p.in_sync && p.acked < seq)
            .map(|(&n, _)| n)
            .collect()
    }

    fn release_waiters(&mut self) {
        while let Some(w) = self.waiters.front() {
            if !self.lagging(w.seq).is_empty() {
                // Later waiters wait for numbers at least as high.
                break;
            }
            let token = w.token;
            self.waiters.pop_front();
            self.events.push_back(RouteEvent::Released {
                token,
                out_of_sync: Vec::new(),
            });
        }
    }

    /// A peer acknowledged our changes up to `ack.seq`.
    pub fn handle_route_ack(&mut self, from: NodeId, ack: &RouteAck) {
        if ack.epoch != self.epoch {
            return; // for a previous start of this node
        }
        let Some(peer) = self.peers.get_mut(&from) else {
            return;
        };
        peer.acked = peer.acked.max(ack.seq);
        if !peer.in_sync && peer.acked >= peer.snapshot_seq {
            peer.in_sync = true;
        }
        self.release_waiters();
    }

    /// A peer asks for all our routes.
    pub fn handle_snapshot_request(&mut self, from: NodeId, _req: &RouteSnapshotRequest) {
        if self.peers.contains_key(&from) {
            self.send_snapshot(from);
        }
    }

    /// The earliest deadline of a waiting SUBSCRIBE.
    pub fn poll_timeout(&self) -> Option<u64> {
        self.waiters
            .front()
            .map(|w| w.since_ms + ROUTE_ACK_TIMEOUT_MS)
    }

    pub fn handle_timeout(&mut self, now_ms: u64) {
        while let Some(w) = self.waiters.front() {
            if w.since_ms + ROUTE_ACK_TIMEOUT_MS > now_ms {
                break;
            }
            let w = self.waiters.pop_front().expect("front exists");
            let out_of_sync = self.lagging(w.seq);
            for &peer in &out_of_sync {
                self.stats.ack_timeouts += 1;
                self.peers.get_mut(&peer).expect("lagging peer").in_sync = false;
                self.send_snapshot(peer);
            }
            self.events.push_back(RouteEvent::Released {
                token: w.token,
                out_of_sync,
            });
        }
        self.release_waiters();
    }

    // ------------------------------------------------------------ membership

    /// A peer is running (joined, or came back after a partition): it gets
    /// our full routes, and SUBACKs wait for it from now on.
    pub fn handle_member_up(&mut self, node: NodeId) {
        assert_ne!(node, self.here);
        self.peers.insert(
            node,
            PeerOut {
                acked: 0,
                in_sync: true,
                snapshot_seq: 0,
            },
        );
        self.send_snapshot(node);
        // The peer's own snapshot may have come before this node knew it
        // was running (views change at different times), and was ignored.
        let origin = self.origins.entry(node).or_default();
        if !origin.live {
            origin.requested = true;
            let req = RouteSnapshotRequest {
                known_epoch: origin.epoch,
                applied_seq: origin.applied,
            };
            self.transmits
                .push_back((node, Message::RouteSnapshotRequest(req)));
        }
    }

    /// A peer was declared down: forget its routes; SUBACKs stop waiting.
    pub fn handle_member_down(&mut self, node: NodeId) {
        self.peers.remove(&node);
        self.transmits.retain(|(to, _)| *to != node);
        self.origins.remove(&node);
        self.events.push_back(RouteEvent::Forget { node });
        self.release_waiters();
    }

    /// Whether every running peer's routes have been received: a joining
    /// node opens its MQTT listeners only then.
    pub fn routes_complete(&self) -> bool {
        self.peers
            .keys()
            .all(|n| self.origins.get(n).is_some_and(|o| o.live))
    }

    // ------------------------------------------------------------ incoming

    pub fn handle_route_change(&mut self, from: NodeId, change: RouteChange) {
        if !self.peers.contains_key(&from) {
            return; // not (or no longer) a running peer: nothing to route to
        }
        let origin = self.origins.entry(from).or_default();
        if origin.live && change.epoch == origin.epoch {
            if change.seq <= origin.received {
                return; // a repeat
            }
            if change.seq == origin.received + 1 {
                origin.received = change.seq;
                self.events.push_back(RouteEvent::Apply {
                    from,
                    epoch: change.epoch,
                    seq: change.seq,
                    change: interest(change.entry),
                });
                return;
            }
        }
        if change.epoch < origin.epoch {
            return; // from a previous start of the peer
        }
        // A gap, a new epoch, or changes before any snapshot: resync.
        origin.live = false;
        if !origin.requested {
            origin.requested = true;
            self.stats.gaps += 1;
            let req = RouteSnapshotRequest {
                known_epoch: origin.epoch,
                applied_seq: origin.applied,
            };
            self.transmits
                .push_back((from, Message::RouteSnapshotRequest(req)));
        }
    }

    pub fn handle_route_snapshot(&mut self, from: NodeId, part: RouteSnapshot) {
        if !self.peers.contains_key(&from) {
            return;
        }
        let origin = self.origins.entry(from).or_default();
        if part.epoch < origin.epoch {
            return;
        }
        let mut entries = match origin.assembling.take() {
            Some((epoch, entries)) if epoch == part.epoch => entries,
            _ => Vec::new(),
        };
        if entries.len() + part.entries.len() > ROUTE_SNAPSHOT_ENTRIES_MAX {
            self.stats.snapshots_too_large += 1;
            return;
        }
        entries.extend(part.entries);
        if !part.last {
            origin.assembling = Some((part.epoch, entries));
            return;
        }
        if part.epoch > origin.epoch {
            origin.applied = 0;
        }
        origin.epoch = part.epoch;
        origin.received = part.seq;
        origin.live = true;
        origin.requested = false;
        self.events.push_back(RouteEvent::Replace {
            from,
            epoch: part.epoch,
            seq: part.seq,
            changes: entries.into_iter().map(interest).collect(),
        });
    }

    /// Every shard applied `from`'s changes up to `seq` (an `Apply` or a
    /// `Replace`): acknowledge it.
    pub fn handle_applied(&mut self, from: NodeId, epoch: u64, seq: u64) {
        let Some(origin) = self.origins.get_mut(&from) else {
            return;
        };
        if origin.epoch != epoch || (seq <= origin.applied && origin.applied != 0) {
            return;
        }
        origin.applied = seq;
        self.transmits
            .push_back((from, Message::RouteAck(RouteAck { epoch, seq })));
    }

    // ------------------------------------------------------------ output

    pub fn poll_transmit(&mut self) -> Option<(NodeId, Message)> {
        self.transmits.pop_front()
    }

    pub fn poll_event(&mut self) -> Option<RouteEvent> {
        self.events.pop_front()
    }
}

fn interest(entry: RouteEntry) -> InterestChange {
    InterestChange {
        filter: ByteStr::from(entry.filter),
        group: entry.group.map(ByteStr::from),
        members: entry.members,
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
