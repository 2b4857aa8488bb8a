//! [`RedisCounters`]: what the Redis thread did, for metrics and tests
//! (atomics written by the Redis thread, read by anyone).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct RedisCounters {
    /// Groups applied (each: one round of scripts, one ticket published).
    pub groups: AtomicU64,
    pub batches: AtomicU64,
    pub ops: AtomicU64,
    /// Script calls Redis acknowledged (one per client per group).
    pub scripts: AtomicU64,
    /// Script or retained calls sent again after an error.
    pub retries: AtomicU64,
    /// Ops refused because a newer owner holds the session.
    pub fenced: AtomicU64,
    /// Fenced answers the shard did not take in time (queue full).
    pub fenced_dropped: AtomicU64,
    /// Sessions a shard ended because Redis fenced their writes.
    pub sessions_fenced_ended: AtomicU64,
    /// Sessions a connect took from Redis (`load_session` found one).
    pub sessions_resumed: AtomicU64,
    /// Connects refused because `load_session` failed (Redis unreachable).
    pub load_failures: AtomicU64,
    /// Ops on a session Redis no longer holds (removed or expired).
    pub gone: AtomicU64,
    /// New deliveries refused past the session's bound.
    pub full: AtomicU64,
    /// Ops whose record was over the size limit (never sent).
    pub refused_too_large: AtomicU64,
    pub errors_io: AtomicU64,
    pub errors_cluster: AtomicU64,
    pub errors_timeout: AtomicU64,
    pub errors_other: AtomicU64,
    /// Node index updates that failed (best effort; load_node copes).
    pub index_errors: AtomicU64,
    /// Groups whose `WAIT` saw fewer replica acks than asked for.
    pub replica_ack_shortfalls: AtomicU64,
    /// Time spent with a group unapplied because Redis failed, in ms.
    pub unreachable_ms: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub groups: u64,
    pub batches: u64,
    pub ops: u64,
    pub scripts: u64,
    pub retries: u64,
    pub fenced: u64,
    pub fenced_dropped: u64,
    pub sessions_fenced_ended: u64,
    pub sessions_resumed: u64,
    pub load_failures: u64,
    pub gone: u64,
    pub full: u64,
    pub refused_too_large: u64,
    pub errors_io: u64,
    pub errors_cluster: u64,
    pub errors_timeout: u64,
    pub errors_other: u64,
    pub index_errors: u64,
    pub replica_ack_shortfalls: u64,
    pub unreachable_ms: u64,
}

impl RedisCounters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> CountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            groups: get(&self.groups),
            batches: get(&self.batches),
            ops: get(&self.ops),
            scripts: get(&self.scripts),
            retries: get(&self.retries),
            fenced: get(&self.fenced),
            fenced_dropped: get(&self.fenced_dropped),
            sessions_fenced_ended: get(&self.sessions_fenced_ended),
            sessions_resumed: get(&self.sessions_resumed),
            load_failures: get(&self.load_failures),
            gone: get(&self.gone),
            full: get(&self.full),
            refused_too_large: get(&self.refused_too_large),
            errors_io: get(&self.errors_io),
            errors_cluster: get(&self.errors_cluster),
            errors_timeout: get(&self.errors_timeout),
            errors_other: get(&self.errors_other),
            index_errors: get(&self.index_errors),
            replica_ack_shortfalls: get(&self.replica_ack_shortfalls),
            unreachable_ms: get(&self.unreachable_ms),
        }
    }

    /// Counts `e` under its kind.
    pub fn error(&self, e: &redis::RedisError) {
        let counter = if e.is_timeout() {
            &self.errors_timeout
        } else if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
            &self.errors_io
        } else if e.is_cluster_error() {
            &self.errors_cluster
        } else {
            &self.errors_other
        };
        Self::add(counter, 1);
    }
}
