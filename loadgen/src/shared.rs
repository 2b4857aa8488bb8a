//! What the worker threads and the main thread share: the run's schedule,
//! per-publisher closed-loop counters, per-thread progress counters. All
//! atomics; nothing here is locked.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One publisher's sent counter, on its own cache line (written by the
/// publisher's thread only).
#[repr(align(64))]
#[derive(Default, Debug)]
pub struct PublisherCounters {
    /// Messages written to the socket so far (the next sequence number).
    pub sent: AtomicU64,
}

/// Live progress of one worker thread, for the once-a-second line and the
/// main thread's phase decisions. Written only by that thread.
#[repr(align(64))]
#[derive(Default, Debug)]
pub struct ThreadProgress {
    /// MQTT sessions open now (CONNACK success, not closed).
    pub connected: AtomicU64,
    /// Clients that finished setup (CONNACK, and SUBACK for subscribers).
    pub ready: AtomicU64,
    /// Clients given up on (refused, failed, timed out, too many redirects).
    pub failed: AtomicU64,
    pub sent: AtomicU64,
    pub received: AtomicU64,
    pub errors: AtomicU64,
}

#[derive(Debug)]
pub struct Shared {
    pub publishers: Box<[PublisherCounters]>,
    /// Closed-loop delivery counters: `copies` per publisher, one per
    /// expected receiver (its `slot`), at `publisher * copies + slot`:
    /// messages of that publisher the receiver got, duplicates excluded.
    /// Subscriber threads add to them; the publisher reads their minimum.
    pub delivered: Box<[AtomicU64]>,
    pub copies: usize,
    pub threads: Box<[ThreadProgress]>,
    /// 0 until every client is set up (or the connect timeout passed); then
    /// when publishing starts. Stored last, with Release: a worker that
    /// sees it non-zero sees `measure_start_ns` and `stop_ns` too.
    pub publish_start_ns: AtomicU64,
    /// End of the warm-up: throughput and latency count from here.
    pub measure_start_ns: AtomicU64,
    /// Publishers stop here (moved earlier by Ctrl-C). u64::MAX until set.
    pub stop_ns: AtomicU64,
    /// Workers disconnect their clients and return their statistics.
    pub shutdown: AtomicBool,
}

impl Shared {
    pub fn new(publishers: u32, copies: u32, threads: usize) -> Shared {
        Shared {
            publishers: (0..publishers).map(|_| Default::default()).collect(),
            delivered: (0..publishers as usize * copies as usize)
                .map(|_| AtomicU64::new(0))
                .collect(),
            copies: copies as usize,
            threads: (0..threads).map(|_| Default::default()).collect(),
            publish_start_ns: AtomicU64::new(0),
            measure_start_ns: AtomicU64::new(0),
            stop_ns: AtomicU64::new(u64::MAX),
            shutdown: AtomicBool::new(false),
        }
    }

    pub fn start(&self, publish_start_ns: u64, measure_start_ns: u64, stop_ns: u64) {
        self.measure_start_ns
            .store(measure_start_ns, Ordering::Relaxed);
        self.stop_ns.store(stop_ns, Ordering::Relaxed);
        self.publish_start_ns
            .store(publish_start_ns, Ordering::Release);
    }

    pub fn sum(&self, f: impl Fn(&ThreadProgress) -> &AtomicU64) -> u64 {
        self.threads
            .iter()
            .map(|t| f(t).load(Ordering::Relaxed))
            .sum()
    }

    /// The receivers' counters of publisher `id`.
    pub fn delivered_row(&self, id: u32) -> &[AtomicU64] {
        let start = id as usize * self.copies;
        &self.delivered[start..start + self.copies]
    }

    /// (sent x copies, delivered) over all publishers.
    pub fn delivery(&self) -> (u64, u64) {
        let expected = self
            .publishers
            .iter()
            .map(|p| p.sent.load(Ordering::Relaxed) * self.copies as u64)
            .sum();
        let delivered = self
            .delivered
            .iter()
            .map(|d| d.load(Ordering::Relaxed))
            .sum();
        (expected, delivered)
    }
}
