//! Store quotas of durable sessions (issue 15, "limits"): how many bytes of
//! queued and inflight QoS 1/2 deliveries one durable session, and all the
//! durable sessions of one shard, may keep in the store. Sans-IO.
//!
//! `durable_sessions.max_session_size` bounds one session;
//! `durable_sessions.max_store_size` bounds the node, shared equally by its
//! shards (they share nothing, so each enforces its share alone). A
//! delivery that would pass either bound is not queued for that session:
//! it is dropped and counted (`queue_full` in the session's drops, and
//! here by which bound refused it), as a full queue drops. An online
//! subscriber that keeps reading is slowed before it gets there: past half
//! its session bound it is congested and its publishers pause, as past
//! `mqtt.max_mqueue_len` (`session::pressure`).
//!
//! Why the shard's total lives in a thread local: a session is only ever
//! touched by its shard's thread (as `session::journal`'s notes), its
//! bytes are added where a delivery enters or leaves it, and the shard's
//! total must follow every session of the shard without the session
//! holding a handle to the shard. A session's own count is in its
//! [`Journal`](super::journal::Journal), which gives the bytes back to the
//! thread's total when it is dropped, so a session that ends however it
//! ends leaves nothing counted.

use std::cell::Cell;

use super::Delivery;
use crate::codec::QoS;

/// What a record costs besides its topic and payload: key, epoch, state,
/// properties, framing (roughly; it keeps tiny messages from being free).
pub const RECORD_OVERHEAD_BYTES: u64 = 64;

/// The bounds one shard enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// `durable_sessions.max_session_size`.
    pub session_max_bytes: u64,
    /// This shard's share of `durable_sessions.max_store_size`.
    pub shard_max_bytes: u64,
}

impl Quota {
    /// No bound (a thread that never configured one: tests, non-shard
    /// threads).
    pub const UNBOUNDED: Quota = Quota {
        session_max_bytes: u64::MAX,
        shard_max_bytes: u64::MAX,
    };

    /// `max_store_size` shared by `shards` shards.
    pub fn new(session_max_bytes: u64, store_max_bytes: u64, shards: usize) -> Quota {
        Quota {
            session_max_bytes,
            shard_max_bytes: store_max_bytes / shards.max(1) as u64,
        }
    }
}

/// Which bound refused a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Session,
    Shard,
}

/// This thread's (shard's) stored bytes and refusals, as read for its
/// statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShardUsage {
    pub stored_bytes: u64,
    pub refused_session: u64,
    pub refused_shard: u64,
}

thread_local! {
    static QUOTA: Cell<Quota> = const { Cell::new(Quota::UNBOUNDED) };
    static USAGE: Cell<ShardUsage> = const {
        Cell::new(ShardUsage { stored_bytes: 0, refused_session: 0, refused_shard: 0 })
    };
}

/// Sets this thread's bounds (the shard, once durable sessions are on).
pub fn configure(quota: Quota) {
    QUOTA.with(|q| q.set(quota));
}

/// This thread's usage.
pub fn usage() -> ShardUsage {
    USAGE.with(Cell::get)
}

/// The bytes `d` takes in the store; 0 for QoS 0 (never stored).
pub fn delivery_bytes(d: &Delivery) -> u64 {
    if d.qos == QoS::AtMostOnce {
        return 0;
    }
    RECORD_OVERHEAD_BYTES + d.message.topic.len() as u64 + d.message.payload.len() as u64
}

/// Whether a session holding `session_bytes` may take `bytes` more, with
/// the session bound divided by `divisor` (1: the hard bound; 2: half of
/// it, where an online subscriber becomes congested). The shard's bound is
/// always the hard one: what fills it is mostly offline sessions, which no
/// pause of publishers would drain.
pub(crate) fn admits(session_bytes: u64, bytes: u64, divisor: u64) -> Result<(), Refusal> {
    let quota = QUOTA.with(Cell::get);
    if session_bytes.saturating_add(bytes) > quota.session_max_bytes / divisor {
        return Err(Refusal::Session);
    }
    let stored = USAGE.with(Cell::get).stored_bytes;
    if stored.saturating_add(bytes) > quota.shard_max_bytes {
        return Err(Refusal::Shard);
    }
    Ok(())
}

/// Whether `session_bytes` is at or below a quarter of the session bound
/// (a congested subscriber is relieved only then, as its queue at half).
pub(crate) fn is_relieved(session_bytes: u64) -> bool {
    session_bytes <= QUOTA.with(Cell::get).session_max_bytes / 4
}

/// Counts a refusal (and logs the first of each kind on this thread, then
/// every 10,000th: a full store refuses every delivery).
pub(crate) fn count_refusal(refusal: Refusal, client: &str) {
    let n = USAGE.with(|u| {
        let mut usage = u.get();
        let n = match refusal {
            Refusal::Session => {
                usage.refused_session += 1;
                usage.refused_session
            }
            Refusal::Shard => {
                usage.refused_shard += 1;
                usage.refused_shard
            }
        };
        u.set(usage);
        n
    });
    if n % 10_000 == 1 {
        let quota = QUOTA.with(Cell::get);
        match refusal {
            Refusal::Session => tracing::warn!(
                client,
                max_bytes = quota.session_max_bytes,
                refused_total = n,
                "durable session store full (durable_sessions.max_session_size): message dropped"
            ),
            Refusal::Shard => tracing::warn!(
                client,
                shard_max_bytes = quota.shard_max_bytes,
                refused_total = n,
                "durable store of this shard full (durable_sessions.max_store_size): message dropped"
            ),
        }
    }
}

/// Adds `bytes` to this thread's total.
pub(crate) fn acquire(bytes: u64) {
    USAGE.with(|u| {
        let mut usage = u.get();
        usage.stored_bytes = usage.stored_bytes.saturating_add(bytes);
        u.set(usage);
    });
}

/// Takes `bytes` from this thread's total.
pub(crate) fn release(bytes: u64) {
    USAGE.with(|u| {
        let mut usage = u.get();
        usage.stored_bytes = usage.stored_bytes.saturating_sub(bytes);
        u.set(usage);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_store_bound_is_shared_by_the_shards() {
        let q = Quota::new(1 << 20, 8 << 30, 4);
        assert_eq!(q.shard_max_bytes, 2 << 30);
        assert_eq!(q.session_max_bytes, 1 << 20);
    }

    #[test]
    fn each_bound_refuses_by_name() {
        // A fresh thread: its own counters.
        std::thread::spawn(|| {
            configure(Quota {
                session_max_bytes: 1000,
                shard_max_bytes: 1500,
            });
            assert_eq!(admits(900, 100, 1), Ok(()));
            assert_eq!(admits(901, 100, 1), Err(Refusal::Session));
            assert_eq!(admits(400, 100, 2), Ok(()));
            assert_eq!(admits(401, 100, 2), Err(Refusal::Session));
            acquire(1450);
            assert_eq!(admits(0, 50, 1), Ok(()));
            assert_eq!(admits(0, 51, 1), Err(Refusal::Shard));
            release(1450);
            assert_eq!(usage().stored_bytes, 0);
            release(1); // never below zero
            assert_eq!(usage().stored_bytes, 0);
            count_refusal(Refusal::Shard, "c");
            count_refusal(Refusal::Session, "c");
            count_refusal(Refusal::Session, "c");
            assert_eq!(usage().refused_shard, 1);
            assert_eq!(usage().refused_session, 2);
            assert!(is_relieved(250));
            assert!(!is_relieved(251));
        })
        .join()
        .unwrap();
    }
}
