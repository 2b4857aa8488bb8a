//! [`MessageId`]: a message's identity cluster-wide, given once where it
//! enters the cluster.
//!
//! A message is shared by `Arc` on one node, but an `Arc` does not cross
//! nodes, and equal bytes are not the same message (a sensor publishes the
//! same payload again and again). So the publisher's shard numbers every
//! message it routes ([`MessageIds::next`], in `Shard::publish_here`:
//! client publishes, wills, `$SYS`), before the `Arc` is shared; every
//! local copy shares that `Message`, and every node it is forwarded to
//! builds its `Message` with the same id (`cluster::logic::records`). The
//! new owner of a session that moved between nodes merges what the old
//! owner held with what reached it meanwhile by this id
//! (`shard::takeover_remote::merge_moved`).
//!
//! `seq` starts at the shard's start time in Unix milliseconds shifted
//! left by [`SEQ_PER_MS_BITS`]: a restarted node does not hand out again
//! the ids of messages its sessions still hold (stored durably, or moved
//! to another node), unless a shard of the previous run averaged more than
//! 2^20 messages per millisecond of its life, or the wall clock went back
//! by more than the restart took. Good until the year 2527.

use std::cell::Cell;

/// Where and in what order a message entered the cluster: the publisher's
/// node (`router::NodeId`), shard and that shard's number. Plain data (16
/// bytes), kept in `Message` and in `DeliverySnapshot`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub struct MessageId {
    pub node: u32,
    pub shard: u16,
    pub seq: u64,
}

/// Numbers per millisecond of a shard's start time (module doc).
pub const SEQ_PER_MS_BITS: u32 = 20;

/// One shard's id source (`!Sync`: the shard owns it).
#[derive(Debug)]
pub struct MessageIds {
    node: u32,
    shard: u16,
    next_seq: Cell<u64>,
}

impl MessageIds {
    /// The ids of shard `shard` of node `node`, started at `start_unix_ms`.
    pub fn new(node: u32, shard: u16, start_unix_ms: u64) -> MessageIds {
        MessageIds {
            node,
            shard,
            next_seq: Cell::new(start_unix_ms << SEQ_PER_MS_BITS),
        }
    }

    /// The next id; never the same twice in one run.
    pub fn next(&self) -> MessageId {
        let seq = self.next_seq.get();
        self.next_seq.set(seq + 1);
        MessageId {
            node: self.node,
            shard: self.shard,
            seq,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_grow_and_a_restart_starts_above_the_previous_run() {
        let first = MessageIds::new(7, 2, 1_765_000_000_000);
        let a = first.next();
        let b = first.next();
        assert!(b > a);
        assert_eq!((b.node, b.shard), (7, 2));
        // A second later, even after a million messages of the first run.
        for _ in 0..1_000_000 {
            first.next();
        }
        let restarted = MessageIds::new(7, 2, 1_765_000_001_000);
        assert!(restarted.next() > first.next());
    }
}
