//! The one clock of the load generator: CLOCK_MONOTONIC in nanoseconds.
//!
//! Every thread of the process (publishers stamping payloads, subscribers
//! measuring latency) reads the same system-wide clock, so a timestamp taken
//! on one thread is comparable on another; CLOCK_MONOTONIC is also shared by
//! processes on one host, so a `pub` run and a `sub` run on the same machine
//! measure latency correctly too. On Linux it is a vDSO call (~20 ns).

/// Nanoseconds on CLOCK_MONOTONIC.
#[inline]
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out pointer; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC)");
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

pub const NS_PER_S: u64 = 1_000_000_000;
pub const NS_PER_MS: u64 = 1_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic() {
        let a = now_ns();
        let b = now_ns();
        assert!(b >= a);
        assert!(a > 0);
    }
}
