//! What a node reports about itself: per-shard counters, the statistics a
//! shard answers with, the client and subscription records of the admin API
//! (`client.rs`), and their Prometheus text rendering (`prometheus.rs`).
//!
//! Counters are owned by their shard and are plain `Cell`s: nothing on the
//! publish path takes a lock or an atomic read-modify-write for them. The
//! admin thread never reads them directly; it asks each shard (the shard
//! services inbox), which answers with a [`ShardStats`] built from its own
//! state, and sums or labels them when it renders.

pub mod client;
pub mod prometheus;

pub use client::{ClientInfo, SubscriptionInfo};

use crate::admission::ShardCountersSnapshot;
use crate::session::DropCounts;
use std::cell::Cell;

/// One shard's traffic counters. Owned by the shard (`!Sync`): only its
/// own tasks add to them, with a plain add; read when the shard answers a
/// statistics request.
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// PUBLISH packets accepted from this shard's clients (each routed
    /// once; a QoS 2 duplicate is not routed again and not counted).
    pub messages_received: Cell<u64>,
    /// PUBLISH packets written to this shard's clients (resends included).
    pub messages_sent: Cell<u64>,
    /// Bytes read from this shard's client sockets.
    pub bytes_received: Cell<u64>,
    /// Bytes written to this shard's client sockets.
    pub bytes_sent: Cell<u64>,
    /// Drop counts of the sessions that ended on this shard. A live
    /// session's drops are in the session (`Session::drop_counts`); when it
    /// ends they are added here, so the node-wide total never goes down.
    pub ended_session_drops: Cell<DropCounts>,
}

impl ShardMetrics {
    #[inline]
    pub fn add(counter: &Cell<u64>, n: u64) {
        counter.set(counter.get().wrapping_add(n));
    }

    /// Keeps the drops of a session that ends now (see
    /// `ended_session_drops`).
    pub fn session_ended(&self, drops: DropCounts) {
        let mut total = self.ended_session_drops.get();
        total.add(&drops);
        self.ended_session_drops.set(total);
    }
}

/// Messages dropped, by cause: the sessions' own causes (`DropCounts`) and
/// deliveries that found no session on the shard any more.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropTotals {
    pub sessions: DropCounts,
    /// Routed to this shard for a client whose session had left it
    /// (`shard::routes::Routes`).
    pub no_recipient: u64,
}

/// What one shard answers a statistics request with: gauges read from its
/// state and its counters, at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShardStats {
    pub shard: u16,
    /// Open MQTT connections (CONNECT accepted, not yet closed).
    pub connections: u64,
    /// Sessions held: connected clients and offline sessions kept for
    /// their expiry interval.
    pub sessions: u64,
    /// Subscriptions of those sessions (shared ones included).
    pub subscriptions: u64,
    /// Retained messages. Every shard holds the whole node's retained
    /// store, so this is a node-wide number, not a share of one.
    pub retained_messages: u64,
    pub messages_received: u64,
    pub messages_sent: u64,
    pub bytes_received: u64,
    pub bytes_sent: u64,
    pub dropped: DropTotals,
    /// Redirect and refusal counts of this shard's admission.
    pub admission: ShardCountersSnapshot,
    /// Bytes its durable sessions keep in the store, and the deliveries
    /// the store bounds refused (`session::store_quota`).
    pub durable_store: crate::session::store_quota::ShardUsage,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ended_session_drops_accumulate() {
        let m = ShardMetrics::default();
        let d = DropCounts {
            queue_full: 2,
            expired: 1,
            too_large: 0,
            closed: 3,
        };
        m.session_ended(d);
        m.session_ended(d);
        assert_eq!(m.ended_session_drops.get().queue_full, 4);
        assert_eq!(m.ended_session_drops.get().total(), 12);
        ShardMetrics::add(&m.bytes_sent, 5);
        ShardMetrics::add(&m.bytes_sent, 7);
        assert_eq!(m.bytes_sent.get(), 12);
    }
}
