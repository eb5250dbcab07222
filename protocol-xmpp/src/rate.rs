//! A stanza rate limiter.

/// Token bucket: `burst` stanzas at once, refilled at `per_second`. Time comes from the caller
/// (milliseconds on any monotonic clock) so the codec stays free of clocks.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_second: u32,
    burst: u32,
    tokens_milli: u64,
    last_ms: u64,
}

impl RateLimiter {
    /// A full bucket. `burst` 0 allows nothing; `per_second` 0 never refills.
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimiter {
            per_second,
            burst,
            tokens_milli: u64::from(burst) * 1000,
            last_ms: 0,
        }
    }

    /// Takes one token; false when the peer is over its rate. A clock that goes backwards
    /// refills nothing.
    pub fn allow(&mut self, now_ms: u64) -> bool {
        // per_second tokens per 1000 ms is per_second thousandths of a token per ms.
        let elapsed = now_ms.saturating_sub(self.last_ms);
        self.last_ms = self.last_ms.max(now_ms);
        let full = u64::from(self.burst) * 1000;
        self.tokens_milli = self
            .tokens_milli
            .saturating_add(elapsed.saturating_mul(u64::from(self.per_second)))
            .min(full);
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }
}
