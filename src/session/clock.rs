//! [`WallClock`]: both clocks read at one moment, to convert deadlines
//! between this process's `Instant`s (which nothing outside it can read)
//! and wall-clock Unix milliseconds (what a snapshot or an event carries).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Both clocks read at one moment: converts deadlines between this
/// process's `Instant`s and wall-clock Unix milliseconds.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    pub instant: Instant,
    pub unix_ms: u64,
}

impl WallClock {
    /// Reads both clocks (for the I/O edge, never inside sans-IO code).
    pub fn now() -> WallClock {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        WallClock {
            instant: Instant::now(),
            unix_ms,
        }
    }

    /// `at` as Unix milliseconds (rounded down past `self`, up before it,
    /// so a deadline never moves earlier by more than a millisecond).
    pub fn to_unix_ms(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.instant) {
            Some(later) => self.unix_ms.saturating_add(millis(later)),
            None => self
                .unix_ms
                .saturating_sub(millis(self.instant.duration_since(at))),
        }
    }

    /// Unix milliseconds as an `Instant` of this process. A time before
    /// what `Instant` can hold becomes `self.instant` (due either way).
    pub fn to_instant(&self, unix_ms: u64) -> Instant {
        if unix_ms >= self.unix_ms {
            let later = Duration::from_millis(unix_ms - self.unix_ms);
            // Beyond what `Instant` holds: as good as never; a year is
            // longer than any deadline the broker keeps (u32 seconds).
            self.instant
                .checked_add(later)
                .unwrap_or_else(|| self.instant + Duration::from_secs(u64::from(u32::MAX)))
        } else {
            let earlier = Duration::from_millis(self.unix_ms - unix_ms);
            self.instant.checked_sub(earlier).unwrap_or(self.instant)
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
