//! Loss, duplicate and reorder accounting for one stream: the messages one
//! subscriber receives from one publisher.
//!
//! A stream expects sequence numbers 0, 1, 2, ... Each arrival is one of:
//! * **in order**: the next expected number;
//! * **gap**: a later number; the skipped numbers are remembered as missing;
//! * **late** (counted as *reordered*): an earlier number that was missing;
//! * **duplicate**: an earlier number that was not missing (already seen).
//!
//! What is still missing at the end is not counted here: the run computes
//! `lost = sent x expected copies - unique received` per publisher, which also
//! covers messages lost at the tail of a stream (no later arrival to reveal
//! the gap) and subscribers that never got anything.
//!
//! The missing set is bounded ([`MISSING_MAX`]); when it overflows, the
//! oldest missing numbers are forgotten (counted in `missing_forgotten`), and
//! should one of them arrive after all it is counted as a duplicate.
//!
//! Shared subscriptions split a publisher's stream among the members of a
//! group, so a member sees gaps that are nobody's loss: [`Mode::Shared`]
//! keeps no missing set, counts an arrival below the highest seen as
//! reordered, and cannot tell duplicates (a message delivered to two members
//! looks like two messages); the run then computes `lost = sent - received`.

use std::collections::BTreeSet;

/// Most missing sequence numbers remembered per stream.
pub const MISSING_MAX: usize = 65_536;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every subscriber expects every message of the publisher.
    Exact,
    /// The subscriber is one member of a shared-subscription group.
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    InOrder,
    /// Arrived ahead of `missing` earlier numbers.
    Gap {
        missing: u64,
    },
    Late,
    Duplicate,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    mode: Mode,
    /// One past the highest sequence number seen.
    next_seq: u64,
    /// Numbers below `next_seq` not seen yet (Exact mode only).
    missing: BTreeSet<u64>,
    pub received: u64,
    /// Distinct sequence numbers received (Shared mode: equals `received`).
    pub unique: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub missing_forgotten: u64,
}

impl Stream {
    pub fn new(mode: Mode) -> Stream {
        Stream {
            mode,
            next_seq: 0,
            missing: BTreeSet::new(),
            received: 0,
            unique: 0,
            duplicated: 0,
            reordered: 0,
            missing_forgotten: 0,
        }
    }

    #[inline]
    pub fn on_seq(&mut self, seq: u64) -> Arrival {
        self.received += 1;
        if seq == self.next_seq {
            self.next_seq += 1;
            self.unique += 1;
            return Arrival::InOrder;
        }
        if seq > self.next_seq {
            let missing = seq - self.next_seq;
            if self.mode == Mode::Exact {
                self.remember_missing(self.next_seq, seq);
            }
            self.next_seq = seq + 1;
            self.unique += 1;
            return Arrival::Gap { missing };
        }
        match self.mode {
            Mode::Shared => {
                self.unique += 1;
                self.reordered += 1;
                Arrival::Late
            }
            Mode::Exact => {
                if self.missing.remove(&seq) {
                    self.unique += 1;
                    self.reordered += 1;
                    Arrival::Late
                } else {
                    self.duplicated += 1;
                    Arrival::Duplicate
                }
            }
        }
    }

    /// Numbers still missing (Exact mode; for tests and reports).
    pub fn missing_now(&self) -> u64 {
        self.missing.len() as u64 + self.missing_forgotten
    }

    fn remember_missing(&mut self, from: u64, to: u64) {
        // A huge jump (a publisher restarted its sequence?) is not worth
        // remembering number by number: keep the newest MISSING_MAX.
        let span = to - from;
        let keep_from = if span > MISSING_MAX as u64 {
            self.missing_forgotten += span - MISSING_MAX as u64;
            to - MISSING_MAX as u64
        } else {
            from
        };
        self.missing.extend(keep_from..to);
        while self.missing.len() > MISSING_MAX {
            self.missing.pop_first();
            self.missing_forgotten += 1;
        }
    }
}

/// Totals for one publisher over all its streams (all subscribers).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StreamTotals {
    pub received: u64,
    pub unique: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

impl StreamTotals {
    pub fn add_stream(&mut self, s: &Stream) {
        self.received += s.received;
        self.unique += s.unique;
        self.duplicated += s.duplicated;
        self.reordered += s.reordered;
    }
    pub fn add(&mut self, o: &StreamTotals) {
        self.received += o.received;
        self.unique += o.unique;
        self.duplicated += o.duplicated;
        self.reordered += o.reordered;
    }
}

/// `lost` for one publisher: what was expected and not received.
/// `copies` is how many subscribers should receive each message (1 for
/// p2p and shared groups, the subscriber count for fan-in and fan-out).
pub fn lost(sent: u64, copies: u64, totals: &StreamTotals) -> u64 {
    (sent * copies).saturating_sub(totals.unique)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(mode: Mode, seqs: &[u64]) -> (Stream, Vec<Arrival>) {
        let mut s = Stream::new(mode);
        let a = seqs.iter().map(|&q| s.on_seq(q)).collect();
        (s, a)
    }

    #[test]
    fn in_order() {
        let (s, a) = feed(Mode::Exact, &[0, 1, 2, 3]);
        assert!(a.iter().all(|x| *x == Arrival::InOrder));
        assert_eq!(
            (s.received, s.unique, s.duplicated, s.reordered),
            (4, 4, 0, 0)
        );
        assert_eq!(lost(4, 1, &totals(&s)), 0);
    }

    fn totals(s: &Stream) -> StreamTotals {
        let mut t = StreamTotals::default();
        t.add_stream(s);
        t
    }

    #[test]
    fn loss_in_the_middle_and_at_the_tail() {
        // 0..10 sent; 3 and 4 lost, 8 and 9 lost at the tail.
        let (s, a) = feed(Mode::Exact, &[0, 1, 2, 5, 6, 7]);
        assert_eq!(a[3], Arrival::Gap { missing: 2 });
        assert_eq!(s.missing_now(), 2);
        assert_eq!((s.unique, s.duplicated, s.reordered), (6, 0, 0));
        assert_eq!(lost(10, 1, &totals(&s)), 4);
    }

    #[test]
    fn reorder_fills_the_gap() {
        let (s, a) = feed(Mode::Exact, &[0, 2, 1, 3]);
        assert_eq!(
            a,
            vec![
                Arrival::InOrder,
                Arrival::Gap { missing: 1 },
                Arrival::Late,
                Arrival::InOrder
            ]
        );
        assert_eq!((s.unique, s.duplicated, s.reordered), (4, 0, 1));
        assert_eq!(s.missing_now(), 0);
        assert_eq!(lost(4, 1, &totals(&s)), 0);
    }

    #[test]
    fn duplicates() {
        let (s, a) = feed(Mode::Exact, &[0, 1, 1, 2, 0, 2]);
        assert_eq!(a[2], Arrival::Duplicate);
        assert_eq!(a[4], Arrival::Duplicate);
        assert_eq!(
            (s.received, s.unique, s.duplicated, s.reordered),
            (6, 3, 3, 0)
        );
        assert_eq!(lost(3, 1, &totals(&s)), 0);
        // A late arrival counts once; a second copy of it is a duplicate.
        let (s, _) = feed(Mode::Exact, &[1, 0, 0]);
        assert_eq!((s.unique, s.duplicated, s.reordered), (2, 1, 1));
    }

    #[test]
    fn missing_set_is_bounded() {
        let far = MISSING_MAX as u64 + 10;
        let (s, a) = feed(Mode::Exact, &[far, 0, far - 1]);
        assert_eq!(a[0], Arrival::Gap { missing: far });
        // 0 was forgotten, so it looks like a duplicate; far-1 is remembered.
        assert_eq!(a[1], Arrival::Duplicate);
        assert_eq!(a[2], Arrival::Late);
        assert_eq!(s.missing_forgotten, 10);
        assert_eq!(s.missing_now(), far - 1);
    }

    #[test]
    fn fan_out_copies() {
        // One publisher sent 5; two subscribers, one got all, one missed 2.
        let (a, _) = feed(Mode::Exact, &[0, 1, 2, 3, 4]);
        let (b, _) = feed(Mode::Exact, &[0, 1, 4]);
        let mut t = StreamTotals::default();
        t.add_stream(&a);
        t.add_stream(&b);
        assert_eq!(lost(5, 2, &t), 2);
    }

    #[test]
    fn shared_group_members() {
        // Publisher sent 0..6, split over two members; one arrives late.
        let (a, _) = feed(Mode::Shared, &[0, 2, 4]);
        let (b, bb) = feed(Mode::Shared, &[3, 1, 5]);
        assert_eq!(bb[1], Arrival::Late);
        let mut t = StreamTotals::default();
        t.add_stream(&a);
        t.add_stream(&b);
        assert_eq!(
            (t.received, t.unique, t.duplicated, t.reordered),
            (6, 6, 0, 1)
        );
        assert_eq!(lost(6, 1, &t), 0);
        assert_eq!(lost(8, 1, &t), 2);
    }
}
