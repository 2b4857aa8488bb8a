//! Slowing down a burst of failed authentications from one address
//! (`limits::AUTHN_FAILURES_PER_IP_MAX` in `AUTHN_FAILURE_WINDOW`). Pure:
//! `now` is passed in; the password workers keep it behind a mutex (never
//! a shard).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use crate::limits::{AUTHN_FAILURES_PER_IP_MAX, AUTHN_FAILURE_WINDOW, AUTHN_TRACKED_ADDRS_MAX};

#[derive(Clone, Copy, Debug)]
struct Window {
    start: Instant,
    failures: u32,
}

impl Window {
    fn is_over(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.start) >= AUTHN_FAILURE_WINDOW
    }
}

/// Failures per address in the current window.
#[derive(Debug, Default)]
pub struct FailureLimiter {
    windows: HashMap<IpAddr, Window>,
}

impl FailureLimiter {
    /// Whether `addr` has failed [`AUTHN_FAILURES_PER_IP_MAX`] times in a
    /// window that has not passed yet.
    pub fn is_throttled(&self, addr: IpAddr, now: Instant) -> bool {
        self.windows
            .get(&addr)
            .is_some_and(|w| !w.is_over(now) && w.failures >= AUTHN_FAILURES_PER_IP_MAX)
    }

    /// Counts a failure of `addr`; a window that has passed restarts.
    pub fn record_failure(&mut self, addr: IpAddr, now: Instant) {
        if !self.windows.contains_key(&addr) && self.windows.len() >= AUTHN_TRACKED_ADDRS_MAX {
            self.windows.retain(|_, w| !w.is_over(now));
            if self.windows.len() >= AUTHN_TRACKED_ADDRS_MAX {
                let oldest = self
                    .windows
                    .iter()
                    .min_by_key(|(_, w)| w.start)
                    .map(|(a, _)| *a);
                if let Some(oldest) = oldest {
                    self.windows.remove(&oldest);
                }
            }
        }
        let w = self.windows.entry(addr).or_insert(Window {
            start: now,
            failures: 0,
        });
        if w.is_over(now) {
            *w = Window {
                start: now,
                failures: 0,
            };
        }
        w.failures = w.failures.saturating_add(1);
    }
}
