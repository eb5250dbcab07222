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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refill() {
        let mut limiter = RateLimiter::new(10, 3);
        let start = 1_000_000;
        assert!((0..3).all(|_| limiter.allow(start)));
        assert!(!limiter.allow(start));
        // One token per 100 ms.
        assert!(!limiter.allow(start + 99));
        assert!(limiter.allow(start + 100));
        assert!(!limiter.allow(start + 100));
        // A long pause refills only up to the burst.
        let later = start + 60_000;
        assert!((0..3).all(|_| limiter.allow(later)));
        assert!(!limiter.allow(later));
    }

    #[test]
    fn sustained_rate_is_per_second() {
        let mut limiter = RateLimiter::new(50, 1);
        let allowed = (0..10_000u64).filter(|ms| limiter.allow(*ms)).count();
        // The first token at 0 ms, then one every 20 ms up to 9980 ms.
        assert_eq!(allowed, 500);
    }

    #[test]
    fn clock_going_backwards_refills_nothing() {
        let mut limiter = RateLimiter::new(1, 1);
        assert!(limiter.allow(5_000));
        assert!(!limiter.allow(1_000));
        assert!(!limiter.allow(5_999));
        assert!(limiter.allow(6_000));
    }

    #[test]
    fn zero_burst_allows_nothing() {
        let mut limiter = RateLimiter::new(1000, 0);
        assert!(!limiter.allow(0));
        assert!(!limiter.allow(u64::MAX));
    }
}
