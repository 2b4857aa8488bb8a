//! The closed-loop window of one publisher.
//!
//! A message is *outstanding* from the moment it is written until every
//! receiver expected to get it has got it: the subscriber in p2p, each
//! subscriber in fanin and fanout, one member of each group in sharedsub.
//! Each receiver (a *slot*) has a counter of the publisher's messages it
//! received, duplicates excluded; the publisher's outstanding count is
//! `sent - max(min(slot counters), written_off_below)`, and it may send while that is
//! below `--max-outstanding`. So no receiver ever lags a publisher by more
//! than the window, and what sits in socket buffers and broker queues for a
//! publisher is bounded by `max_outstanding x copies` messages.
//!
//! Reading the minimum costs one atomic load per slot, so it is re-read only
//! when the cached minimum says the window is half full or more.
//!
//! A lost message (QoS 0 under overload, a dropped queue) would keep the
//! window shut forever: when the minimum has not moved for
//! `--outstanding-timeout`, the outstanding messages are written off (they
//! still count as lost at the end if they never arrive) and the window opens.

#[derive(Debug, Clone)]
pub struct Window {
    max_outstanding: u64,
    timeout_ns: u64,
    /// Last minimum read over the slot counters (they only grow).
    min_delivered: u64,
    /// Messages below this sequence number count as done (written off).
    written_off_below: u64,
    /// Since when the window has been full without the minimum moving.
    stalled_since_ns: u64,
    stall_min: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Messages that may be sent now (0: the window is full).
    pub allowed: u64,
    /// The window was full for the timeout and was written off just now.
    pub timed_out: bool,
}

impl Window {
    pub fn new(max_outstanding: u64, timeout_ns: u64) -> Window {
        assert!(max_outstanding > 0);
        Window {
            max_outstanding,
            timeout_ns,
            min_delivered: 0,
            written_off_below: 0,
            stalled_since_ns: 0,
            stall_min: 0,
        }
    }

    fn outstanding(&self, sent: u64) -> u64 {
        sent.saturating_sub(self.min_delivered.max(self.written_off_below))
    }

    /// `sent`: messages written so far; `read_min`: the minimum over the
    /// slot counters now.
    pub fn poll(&mut self, sent: u64, now_ns: u64, read_min: impl FnOnce() -> u64) -> Decision {
        if self.outstanding(sent) * 2 >= self.max_outstanding {
            self.min_delivered = self.min_delivered.max(read_min());
        }
        let outstanding = self.outstanding(sent);
        if outstanding < self.max_outstanding {
            self.stalled_since_ns = now_ns;
            self.stall_min = self.min_delivered;
            return Decision {
                allowed: self.max_outstanding - outstanding,
                timed_out: false,
            };
        }
        if self.min_delivered != self.stall_min {
            self.stall_min = self.min_delivered;
            self.stalled_since_ns = now_ns;
        } else if now_ns.saturating_sub(self.stalled_since_ns) > self.timeout_ns {
            self.written_off_below = sent;
            self.stalled_since_ns = now_ns;
            return Decision {
                allowed: self.max_outstanding,
                timed_out: true,
            };
        }
        Decision {
            allowed: 0,
            timed_out: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_as_the_slowest_receiver_catches_up() {
        let mut w = Window::new(10, 1_000);
        assert_eq!(w.poll(0, 0, || 0).allowed, 10);
        assert_eq!(w.poll(10, 1, || 0).allowed, 0);
        // Two receivers at 7 and 3: the minimum (3) counts.
        let slots = [7u64, 3];
        let min = || *slots.iter().min().unwrap();
        assert_eq!(w.poll(10, 2, min).allowed, 3);
        assert_eq!(w.poll(13, 3, || 13).allowed, 10);
    }

    #[test]
    fn minimum_is_read_only_when_half_full() {
        let mut w = Window::new(10, 1_000);
        let mut reads = 0;
        w.poll(4, 0, || {
            reads += 1;
            0
        });
        assert_eq!(reads, 0);
        w.poll(5, 0, || {
            reads += 1;
            0
        });
        assert_eq!(reads, 1);
    }

    #[test]
    fn stalled_window_is_written_off_after_the_timeout() {
        let mut w = Window::new(10, 1_000);
        assert_eq!(w.poll(10, 0, || 0).allowed, 0);
        assert_eq!(w.poll(10, 500, || 0).allowed, 0);
        // Progress restarts the stall clock.
        assert_eq!(w.poll(11, 600, || 1).allowed, 0);
        assert_eq!(w.poll(11, 1_500, || 1).allowed, 0);
        let d = w.poll(11, 1_601, || 1);
        assert_eq!(
            d,
            Decision {
                allowed: 10,
                timed_out: true
            }
        );
        // The written-off messages arriving later do not open it beyond the window.
        assert_eq!(w.poll(21, 1_700, || 11).allowed, 0);
        assert_eq!(w.poll(21, 1_800, || 15).allowed, 4);
        assert_eq!(w.poll(21, 1_900, || 21).allowed, 10);
    }
}
