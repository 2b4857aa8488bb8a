//! [`Stamp`]: an instant in 8 bytes, for the instants every connection
//! keeps (`Connection::last_rx_at`, `last_now`). An `Instant` takes 16
//! (seconds and nanoseconds, padded), and the two of them took the
//! shard's `ConnHandle` past mimalloc's 224-byte size class
//! (docs/performance.md, idle connections round 5).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long before the first stamp the origin lies: instants read shortly
/// before it (a caller's `now` taken before its first connection existed)
/// still come after the origin, and convert exactly.
const ORIGIN_LEAD: Duration = Duration::from_secs(24 * 3600);

const NANOS_PER_S: u64 = 1_000_000_000;

/// Nanoseconds since a process-wide origin (`origin`); 64 bits cover 584
/// years from there. Converts to and from `Instant` exactly for any instant
/// after the origin; earlier ones (more than a day before the process's
/// first stamp) saturate to the origin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Stamp(u64);

fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(ORIGIN_LEAD).unwrap_or(now)
    })
}

impl Stamp {
    pub(crate) fn of(t: Instant) -> Stamp {
        let since = t.saturating_duration_since(origin());
        Stamp(since.as_secs() * NANOS_PER_S + u64::from(since.subsec_nanos()))
    }

    pub(crate) fn instant(self) -> Instant {
        origin() + Duration::from_nanos(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_exactly_and_keeps_order() {
        let before = Instant::now();
        for t in [
            before,
            before + Duration::from_nanos(1),
            before + Duration::from_secs(98_302),
            before + Duration::from_secs(40 * 365 * 24 * 3600),
        ] {
            assert_eq!(Stamp::of(t).instant(), t);
        }
        assert!(Stamp::of(before) < Stamp::of(before + Duration::from_nanos(1)));
        assert_eq!(std::mem::size_of::<Stamp>(), 8);
    }
}
