//! Back-pressure from a subscriber's queue to its publishers, sans-IO
//! (docs/adr/0002-subscriber-backpressure.md).
//!
//! `mqtt.max_mqueue_len` bounds the queue of an offline session and of an
//! online one that stopped reading. An online subscriber that is still
//! making progress may take QoS 1/2 messages beyond that bound (up to
//! [`MQUEUE_OVERSHOOT_MAX`] more): it is then *congested*, and the shard
//! pauses the publishers whose messages reach it, until the queue is back
//! at half the bound ([`Pressure`], `Connection::poll_relieved`). A
//! congested subscriber that makes no progress for
//! `mqtt.max_publisher_hold_ms` ([`StallClock`]) is *stalled*: publishers
//! resume and its new messages are dropped by the ordinary queue policy.

use std::time::{Duration, Instant};

pub use crate::limits::MQUEUE_OVERSHOOT_MAX;

/// Where an online subscriber's queue stands with respect to its bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pressure {
    /// Within the bound, or back under half of it since it last passed it.
    #[default]
    Free,
    /// Past the bound while reading: holds its publishers back.
    Congested,
    /// Made no progress for the hold time while congested: holds nobody
    /// back, and its queue is bounded by `mqtt.max_mqueue_len` again until
    /// it drains to half of it.
    Stalled,
}

/// The queue length at which a congested subscriber releases its
/// publishers: half its bound, so the publishers it released have room
/// to run before the next pause, and a queue near its bound does not pause
/// and release them on every message.
pub fn resume_len(queue_len_max: usize) -> usize {
    queue_len_max / 2
}

/// The most messages an online, congested subscriber's queue may hold:
/// the overshoot covers the publishes already on their way when the
/// pause was decided (one per local publisher, a shard channel's worth
/// from each other shard).
pub fn queue_len_hard_max(queue_len_max: usize) -> usize {
    queue_len_max.saturating_add(MQUEUE_OVERSHOOT_MAX)
}

/// Whether a congested subscriber still makes progress: `progress` is a
/// counter that grows whenever the subscriber's window admits a queued
/// message (an acknowledgement freed a slot), read on each shard tick.
#[derive(Debug, Clone, Copy)]
pub struct StallClock {
    progress: u64,
    progress_at: Instant,
}

impl StallClock {
    /// Starts the clock when the subscriber becomes congested.
    pub fn new(progress: u64, now: Instant) -> StallClock {
        StallClock {
            progress,
            progress_at: now,
        }
    }

    /// True once `progress` has not moved for `hold`.
    pub fn is_stalled(&mut self, progress: u64, now: Instant, hold: Duration) -> bool {
        if progress != self.progress {
            self.progress = progress;
            self.progress_at = now;
            return false;
        }
        now.saturating_duration_since(self.progress_at) >= hold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stalled_only_after_the_hold_without_progress() {
        let t0 = Instant::now();
        let hold = Duration::from_millis(500);
        let mut clock = StallClock::new(7, t0);
        assert!(!clock.is_stalled(7, t0 + Duration::from_millis(499), hold));
        // Progress restarts the clock.
        assert!(!clock.is_stalled(8, t0 + Duration::from_millis(499), hold));
        assert!(!clock.is_stalled(8, t0 + Duration::from_millis(998), hold));
        assert!(clock.is_stalled(8, t0 + Duration::from_millis(999), hold));
        // A clock read older than the last progress is not a stall.
        let mut clock = StallClock::new(1, t0 + hold);
        assert!(!clock.is_stalled(1, t0, hold));
    }

    #[test]
    fn watermarks() {
        assert_eq!(resume_len(1000), 500);
        assert_eq!(resume_len(1), 0);
        assert_eq!(queue_len_hard_max(1000), 1000 + MQUEUE_OVERSHOOT_MAX);
        assert_eq!(queue_len_hard_max(usize::MAX), usize::MAX);
    }
}
