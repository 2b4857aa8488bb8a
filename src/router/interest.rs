//! Sequence numbers of the interest protocol, per origin location.
//!
//! Every interest change a shard announces (`InterestChange`) carries the
//! next number of that shard's own sequence; every receiver records, per
//! origin, the latest number it has applied (`InterestClock`). The SUBACK
//! of a SUBSCRIBE that changed interest waits until every other shard has
//! acknowledged its change (`ShardMsg::Interest` with an ack). Between
//! nodes the same numbers make acknowledgements cumulative and a lost or
//! repeated advertisement detectable (docs/adr/0001-cluster.md).
//!
//! Before the SUBACK, a publish on another shard can be routed by an
//! interest table that has not applied the change yet. A client that
//! publishes right after another client's SUBSCRIBE without waiting for its
//! SUBACK expects delivery (the Paho suite's `test_subscribe_options` and
//! `test_request_response` do it, docs/conformance.md). So each shard also
//! publishes the number of its latest *added* ordinary interest in
//! `InterestMarks`, node-local memory each shard writes only for itself;
//! a shard that routes a publish also sends it to every shard whose mark is
//! ahead of what it has applied from that shard (`InterestClock::behind`).
//! From the moment a SUBSCRIBE is decoded until its connection has carried
//! it out, the shard's mark is ahead of every change it issued
//! (`InterestClock::begin_subscribe`): the publisher's shard may read its
//! PUBLISH microseconds after this shard read the SUBSCRIBE, before the
//! router has changed.
//! That replaces a node-wide count of SUBSCRIBEs in progress (raised by
//! every SUBSCRIBE, with or without an interest change, and making every
//! shard broadcast every publish until all shards had acknowledged): the
//! window is now per pair of shards and closes as soon as the router has
//! applied the change. Another node's interest has no such window: across
//! nodes only the SUBACK orders a subscription before a publish.

use std::sync::atomic::{AtomicU64, Ordering};

use super::location::ShardId;
use super::routing::InterestChange;

/// An interest change with its number in its origin's sequence: what
/// crosses shards (and, later, nodes) when a router's interest changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NumberedChange {
    pub change: InterestChange,
    pub seq: u64,
}

impl NumberedChange {
    /// Whether the change adds ordinary interest (marked in
    /// `InterestMarks`): a shared group's member count is not, since a
    /// publish sent along because of a mark reaches ordinary subscribers
    /// only.
    pub fn adds_ordinary_interest(&self) -> bool {
        self.change.group.is_none() && self.change.members > 0
    }
}

/// One shard's view of the interest sequences: its own, and how far it has
/// applied every other shard's.
#[derive(Debug)]
pub struct InterestClock {
    here: ShardId,
    /// Number of this shard's latest announced change (0: none yet).
    issued: u64,
    /// Per origin shard: the highest number of its changes applied here.
    applied: Vec<u64>,
    /// Changes that arrived with a number other than the next one
    /// expected (a sender's channel was full and two of its tasks raced).
    out_of_order: u64,
    /// SUBSCRIBEs decoded here and not finished yet (`begin_subscribe`).
    subscribes_pending: u32,
    /// Number of this shard's latest change that added ordinary interest.
    last_added: u64,
}

impl InterestClock {
    pub fn new(here: ShardId, shard_count: u16) -> InterestClock {
        assert!(here < shard_count, "shard {here} out of {shard_count}");
        InterestClock {
            here,
            issued: 0,
            applied: vec![0; usize::from(shard_count)],
            out_of_order: 0,
            subscribes_pending: 0,
            last_added: 0,
        }
    }

    /// Numbers this shard's next change; `adds` says whether it adds
    /// ordinary interest (`NumberedChange::adds_ordinary_interest`).
    pub fn issue_change(&mut self, adds: bool) -> u64 {
        let seq = self.issue();
        if adds {
            self.last_added = seq;
        }
        seq
    }

    /// A SUBSCRIBE was decoded here: until `end_subscribe`, the mark stays
    /// ahead of every change issued, so other shards send their publishes
    /// here before the subscription is even in the router. The publisher's
    /// PUBLISH can reach its shard a few microseconds after the SUBSCRIBE
    /// reached this one (the Paho suite's `test_subscribe_options` sends
    /// them back to back on two connections); raising the mark only when
    /// the router changes left that window open, and on a loaded machine
    /// the publisher's shard routed inside it about one run in six.
    pub fn begin_subscribe(&mut self) {
        self.subscribes_pending += 1;
    }

    pub fn end_subscribe(&mut self) {
        self.subscribes_pending = self.subscribes_pending.saturating_sub(1);
    }

    /// What this shard publishes in `InterestMarks`: its latest added
    /// interest, or beyond everything issued while a SUBSCRIBE is pending.
    pub fn mark(&self) -> u64 {
        if self.subscribes_pending > 0 {
            self.issued + 1
        } else {
            self.last_added
        }
    }

    /// The number of this shard's next interest change.
    pub fn issue(&mut self) -> u64 {
        self.issued += 1;
        self.issued
    }

    /// The latest number this shard issued.
    pub fn issued(&self) -> u64 {
        self.issued
    }

    /// Change `seq` of shard `from` has been applied to this shard's router.
    /// Returns false if it was not the next one expected (counted in
    /// `out_of_order`; the highest number applied is kept).
    pub fn applied_from(&mut self, from: ShardId, seq: u64) -> bool {
        assert_ne!(from, self.here, "a shard applies its own changes at once");
        let applied = &mut self.applied[usize::from(from)];
        let in_order = seq == *applied + 1;
        if !in_order {
            self.out_of_order += 1;
        }
        *applied = (*applied).max(seq);
        in_order
    }

    /// The highest number of shard `from`'s changes applied here.
    pub fn applied(&self, from: ShardId) -> u64 {
        self.applied[usize::from(from)]
    }

    pub fn out_of_order(&self) -> u64 {
        self.out_of_order
    }

    /// Calls `each` with every other shard that has added ordinary interest
    /// this shard has not applied yet: a publish routed now must go there
    /// too. `O(shards)`, one atomic load each.
    pub fn behind(&self, marks: &InterestMarks, mut each: impl FnMut(ShardId)) {
        for (shard, &applied) in self.applied.iter().enumerate() {
            if shard != usize::from(self.here) && marks.get(shard) > applied {
                each(shard as ShardId);
            }
        }
    }
}

/// One cache line per shard, so a shard's mark changing does not evict
/// the lines its neighbours' publishers read.
#[repr(align(64))]
#[derive(Default, Debug)]
struct Mark(AtomicU64);

/// Per shard, the number of its latest added ordinary interest (or one
/// beyond its latest change while a SUBSCRIBE is pending); written
/// only by that shard (`set`), read by every shard's publish path. Shared
/// by the shards of one node (an `Arc`), never across nodes.
#[derive(Debug)]
pub struct InterestMarks {
    marks: Box<[Mark]>,
}

impl InterestMarks {
    pub fn new(shard_count: u16) -> InterestMarks {
        InterestMarks {
            marks: (0..shard_count).map(|_| Mark::default()).collect(),
        }
    }

    /// Shard `shard` added ordinary interest with its change `seq`; called
    /// by that shard only, after the change is in its router and before
    /// the change is sent (a publish routed to it because of the mark then
    /// finds the subscriber).
    pub fn set(&self, shard: ShardId, seq: u64) {
        self.marks[usize::from(shard)]
            .0
            .store(seq, Ordering::Release);
    }

    fn get(&self, shard: usize) -> u64 {
        self.marks[shard].0.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shard_is_behind_another_until_it_applied_its_marked_change() {
        let marks = InterestMarks::new(3);
        let mut clock0 = InterestClock::new(0, 3);
        let mut clock1 = InterestClock::new(1, 3);
        let behind = |clock: &InterestClock| {
            let mut v = Vec::new();
            clock.behind(&marks, |s| v.push(s));
            v
        };
        assert!(behind(&clock0).is_empty());
        // Shard 1: a removal (not marked), then an addition (marked).
        assert_eq!(clock1.issue(), 1);
        assert_eq!(clock1.issue(), 2);
        marks.set(1, 2);
        assert_eq!(behind(&clock0), [1]);
        assert!(clock0.applied_from(1, 1));
        assert_eq!(behind(&clock0), [1]);
        assert!(clock0.applied_from(1, 2));
        assert!(behind(&clock0).is_empty());
        // A shard never waits for itself; a new one waits for the others.
        marks.set(0, 5);
        assert!(behind(&clock0).is_empty());
        assert_eq!(behind(&InterestClock::new(0, 3)), [1]);
        assert_eq!(behind(&clock1), [0]);
    }

    #[test]
    fn a_pending_subscribe_keeps_the_mark_ahead_until_it_ends() {
        let marks = InterestMarks::new(2);
        let mut clock0 = InterestClock::new(0, 2);
        let mut clock1 = InterestClock::new(1, 2);
        let behind = |clock: &InterestClock| {
            let mut v = Vec::new();
            clock.behind(&marks, |s| v.push(s));
            v
        };
        // A SUBSCRIBE decoded on shard 1: shard 0 sends there at once.
        clock1.begin_subscribe();
        marks.set(1, clock1.mark());
        assert_eq!(behind(&clock0), [1]);
        // Its change added interest and was applied by shard 0; the
        // SUBSCRIBE still pending keeps the mark ahead.
        let seq = clock1.issue_change(true);
        marks.set(1, clock1.mark());
        assert!(clock0.applied_from(1, seq));
        assert_eq!(behind(&clock0), [1]);
        // Once it ended, the mark is the added change: nothing behind.
        clock1.end_subscribe();
        marks.set(1, clock1.mark());
        assert!(behind(&clock0).is_empty());
        // A SUBSCRIBE that changed nothing (refused, or interest already
        // there) leaves the mark where it was.
        clock1.begin_subscribe();
        clock1.end_subscribe();
        assert_eq!(clock1.mark(), seq);
        // A removal does not move the mark.
        clock1.issue_change(false);
        assert_eq!(clock1.mark(), seq);
    }

    #[test]
    fn a_change_out_of_order_is_counted_and_the_highest_kept() {
        let mut clock = InterestClock::new(0, 2);
        assert!(!clock.applied_from(1, 2));
        assert!(!clock.applied_from(1, 1));
        assert_eq!(clock.applied(1), 2);
        assert_eq!(clock.out_of_order(), 2);
    }
}
