//! A per-second rate spread over ticks: how many evictions a tick may do.

/// Tokens accrue at `rate_per_s`, in thousandths so that ticks shorter
/// than one eviction's share carry their fraction; at most one second's
/// worth is kept, so a stalled executor does not evict in a burst.
#[derive(Clone, Debug)]
pub struct Budget {
    rate_per_s: u64,
    milli_tokens: u64,
    last_ms: u64,
}

impl Budget {
    pub fn new(rate_per_s: u64, now_ms: u64) -> Budget {
        Budget {
            rate_per_s,
            milli_tokens: 0,
            last_ms: now_ms,
        }
    }

    /// Starts accruing from `now_ms`, with nothing saved.
    pub fn restart(&mut self, now_ms: u64) {
        self.milli_tokens = 0;
        self.last_ms = now_ms;
    }

    /// The evictions allowed since the last call.
    pub fn take(&mut self, now_ms: u64) -> u64 {
        let elapsed_ms = now_ms.saturating_sub(self.last_ms);
        self.last_ms = now_ms.max(self.last_ms);
        let cap = self.rate_per_s * 1000;
        self.milli_tokens = (self.milli_tokens + self.rate_per_s * elapsed_ms).min(cap);
        let n = self.milli_tokens / 1000;
        self.milli_tokens -= n * 1000;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::Budget;

    #[test]
    fn fractions_carry_and_bursts_are_capped() {
        let mut b = Budget::new(15, 0);
        // 1.5 per 100 ms tick: 1, 2, 1, 2...
        let got: Vec<u64> = (1..=4).map(|i| b.take(i * 100)).collect();
        assert_eq!(got, [1, 2, 1, 2]);
        assert_eq!(b.take(100_000), 15);
        assert_eq!(b.take(100_000), 0);
    }
}
