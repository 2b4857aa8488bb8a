//! The N slowest messages of a run (`--slowest N`), with their send times,
//! so a latency tail can be lined up with events on the broker's side (a
//! timer, a tick, a scheduler trace taken with `perf record -k
//! CLOCK_MONOTONIC`): the send times are on [`crate::clock::now_ns`]'s clock.
//! Bounded: a min-heap of at most N entries per thread; pure.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;

/// Most entries `--slowest` may ask for (16 bytes each per thread).
pub const SLOWEST_MAX: usize = 1_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    // Field order is the heap order: latency first.
    latency_ns: u64,
    sent_ns: u64,
    publisher: u32,
    seq: u64,
}

/// One slow message in the report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SlowMessage {
    /// Send time, CLOCK_MONOTONIC ns.
    pub sent_ns: u64,
    pub latency_us: f64,
    pub publisher: u32,
    pub seq: u64,
}

#[derive(Debug, Default)]
pub struct Slowest {
    cap: usize,
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Slowest {
    pub fn new(cap: usize) -> Slowest {
        Slowest {
            cap: cap.min(SLOWEST_MAX),
            heap: BinaryHeap::new(),
        }
    }

    #[inline]
    pub fn record(&mut self, latency_ns: u64, sent_ns: u64, publisher: u32, seq: u64) {
        if self.cap == 0 {
            return;
        }
        let e = Entry {
            latency_ns,
            sent_ns,
            publisher,
            seq,
        };
        if self.heap.len() < self.cap {
            self.heap.push(Reverse(e));
        } else if self.heap.peek().is_some_and(|Reverse(min)| e > *min) {
            self.heap.pop();
            self.heap.push(Reverse(e));
        }
    }

    /// Keeps the slowest of both (the larger cap).
    pub fn merge(&mut self, o: Slowest) {
        self.cap = self.cap.max(o.cap);
        for Reverse(e) in o.heap {
            self.record(e.latency_ns, e.sent_ns, e.publisher, e.seq);
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.cap > 0
    }

    /// The entries in send order.
    pub fn by_send_time(&self) -> Vec<SlowMessage> {
        let mut v: Vec<SlowMessage> = self
            .heap
            .iter()
            .map(|Reverse(e)| SlowMessage {
                sent_ns: e.sent_ns,
                latency_us: e.latency_ns as f64 / 1e3,
                publisher: e.publisher,
                seq: e.seq,
            })
            .collect();
        v.sort_by_key(|m| (m.sent_ns, m.publisher, m.seq));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_slowest_in_send_order() {
        let mut s = Slowest::new(3);
        for (i, lat) in [5u64, 1, 9, 3, 7, 2].into_iter().enumerate() {
            s.record(lat * 1000, 100 - i as u64, 0, i as u64);
        }
        let v = s.by_send_time();
        let lats: Vec<f64> = v.iter().map(|m| m.latency_us).collect();
        // 9, 7, 5 sent at 98, 96, 100: in send order 96, 98, 100.
        assert_eq!(lats, vec![7.0, 9.0, 5.0]);
        assert!(v.windows(2).all(|w| w[0].sent_ns <= w[1].sent_ns));
    }

    #[test]
    fn merge_and_off() {
        let mut a = Slowest::new(2);
        a.record(10, 1, 0, 0);
        a.record(30, 2, 0, 1);
        let mut b = Slowest::new(2);
        b.record(20, 3, 1, 0);
        b.record(40, 4, 1, 1);
        a.merge(b);
        let seqs: Vec<(u32, u64)> = a
            .by_send_time()
            .iter()
            .map(|m| (m.publisher, m.seq))
            .collect();
        assert_eq!(seqs, vec![(0, 1), (1, 1)]);
        let mut off = Slowest::new(0);
        off.record(1, 1, 0, 0);
        assert!(!off.is_enabled());
        assert!(off.by_send_time().is_empty());
    }
}
