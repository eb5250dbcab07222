//! Per-IP handshake rate: a token bucket per client address, refilled at `per_second` up to
//! `burst`. The buckets live in a sharded map of bounded size; a bucket that has refilled
//! is the same as none, so sweeps drop those, and a full shard evicts to make room (the
//! evicted address starts again with a full bucket, the worst a flood of addresses buys).

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Addresses tracked at once, all shards together (~64 bytes each).
pub const MAX_TRACKED: usize = 65_536;
/// How often a shard drops its refilled buckets, checked when it is used.
const SWEEP_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimits {
    /// Refill rate in handshakes per second; 0 turns the limit off.
    pub per_second: f64,
    /// Handshakes allowed at once from an address that has been quiet.
    pub burst: u32,
}

impl RateLimits {
    fn is_off(&self) -> bool {
        self.per_second <= 0.0 || self.burst == 0
    }
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn tokens_at(&self, now: Instant, limits: &RateLimits) -> f64 {
        let refill = now.saturating_duration_since(self.updated).as_secs_f64() * limits.per_second;
        (self.tokens + refill).min(limits.burst as f64)
    }
}

struct Shard {
    buckets: HashMap<IpAddr, Bucket>,
    swept: Instant,
}

impl Shard {
    fn sweep(&mut self, now: Instant, limits: &RateLimits) {
        let full = limits.burst as f64;
        self.buckets.retain(|_, b| b.tokens_at(now, limits) < full);
        self.swept = now;
    }
}

impl Default for HandshakeRate {
    fn default() -> Self {
        Self::new()
    }
}

pub struct HandshakeRate {
    limits: RwLock<RateLimits>,
    shards: Box<[Mutex<Shard>]>,
    hasher: RandomState,
    per_shard: usize,
}

impl HandshakeRate {
    /// Off until `set_limits`.
    pub fn new() -> Self {
        Self::with_capacity(MAX_TRACKED)
    }

    fn with_capacity(max_tracked: usize) -> Self {
        let now = Instant::now();
        HandshakeRate {
            limits: RwLock::new(RateLimits {
                per_second: 0.0,
                burst: 0,
            }),
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::new(),
                        swept: now,
                    })
                })
                .collect(),
            hasher: RandomState::new(),
            per_shard: (max_tracked / SHARDS).max(1),
        }
    }

    /// New limits, in force from the next handshake; buckets keep their tokens (capped at
    /// a smaller burst), so a reload does not hand every address a fresh burst.
    pub fn set_limits(&self, limits: RateLimits) {
        *self.limits.write().unwrap_or_else(|p| p.into_inner()) = limits;
        if limits.is_off() {
            for shard in self.shards.iter() {
                let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
                shard.buckets = HashMap::new();
            }
        }
    }

    pub fn limits(&self) -> RateLimits {
        *self.limits.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Take one handshake from `ip`'s bucket, or say how long until one is there.
    pub fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        self.check_at(ip, Instant::now())
    }

    fn check_at(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let limits = self.limits();
        if limits.is_off() {
            return Ok(());
        }
        let index = self.hasher.hash_one(ip) as usize % self.shards.len();
        let mut shard = self.shards[index].lock().unwrap_or_else(|p| p.into_inner());
        if now.saturating_duration_since(shard.swept) >= SWEEP_EVERY {
            shard.sweep(now, &limits);
        }
        let tokens = match shard.buckets.get(&ip) {
            Some(b) => b.tokens_at(now, &limits),
            None => {
                if shard.buckets.len() >= self.per_shard {
                    shard.sweep(now, &limits);
                }
                if shard.buckets.len() >= self.per_shard {
                    if let Some(victim) = shard.buckets.keys().next().copied() {
                        shard.buckets.remove(&victim);
                    }
                }
                limits.burst as f64
            }
        };
        if tokens >= 1.0 {
            shard.buckets.insert(
                ip,
                Bucket {
                    tokens: tokens - 1.0,
                    updated: now,
                },
            );
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - tokens) / limits.per_second))
        }
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap().buckets.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::from(0x0a00_0000 + n))
    }

    fn rate(per_second: f64, burst: u32) -> HandshakeRate {
        let r = HandshakeRate::new();
        r.set_limits(RateLimits { per_second, burst });
        r
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let r = rate(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(r.check_at(ip(1), t0), Ok(()));
        }
        let wait = r.check_at(ip(1), t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        // Other addresses have their own bucket.
        assert_eq!(r.check_at(ip(2), t0), Ok(()));
        // Half a second buys one more, not two.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(r.check_at(ip(1), t1), Ok(()));
        assert!(r.check_at(ip(1), t1).is_err());
        // Long quiet refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(r.check_at(ip(1), t2), Ok(()));
        }
        assert!(r.check_at(ip(1), t2).is_err());
    }

    #[test]
    fn refusals_do_not_spend_tokens() {
        let r = rate(1.0, 1);
        let t0 = Instant::now();
        assert!(r.check_at(ip(1), t0).is_ok());
        for ms in [100, 200, 900] {
            let wait = r
                .check_at(ip(1), t0 + Duration::from_millis(ms))
                .unwrap_err();
            assert_eq!(wait, Duration::from_millis(1000 - ms));
        }
        assert!(r.check_at(ip(1), t0 + Duration::from_secs(1)).is_ok());
    }

    #[test]
    fn off_tracks_nothing() {
        let r = rate(0.0, 10);
        for n in 0..1000 {
            assert!(r.check(ip(n)).is_ok());
        }
        assert_eq!(r.tracked(), 0);
    }

    #[test]
    fn new_limits_apply_to_the_next_handshake() {
        let r = rate(1.0, 1);
        let t0 = Instant::now();
        assert!(r.check_at(ip(1), t0).is_ok());
        assert!(r.check_at(ip(1), t0).is_err());
        r.set_limits(RateLimits {
            per_second: 100.0,
            burst: 1,
        });
        assert!(r.check_at(ip(1), t0 + Duration::from_millis(10)).is_ok());
        r.set_limits(RateLimits {
            per_second: 0.0,
            burst: 1,
        });
        assert_eq!(r.tracked(), 0);
        assert!(r.check_at(ip(1), t0).is_ok());
    }

    #[test]
    fn map_stays_bounded_under_many_addresses() {
        let cap = SHARDS * 8;
        let limits = RateLimits {
            per_second: 1.0,
            burst: 5,
        };
        let r = HandshakeRate::with_capacity(cap);
        r.set_limits(limits);
        let t0 = Instant::now();
        for n in 0..10_000 {
            // New addresses are never refused for want of room.
            assert!(r.check_at(ip(n), t0).is_ok());
            assert!(r.tracked() <= cap);
        }
        assert!(r.tracked() > cap / 2, "{}", r.tracked());
    }

    #[test]
    fn refilled_buckets_are_swept() {
        let r = rate(10.0, 2);
        let t0 = Instant::now();
        for n in 0..100 {
            r.check_at(ip(n), t0).unwrap();
        }
        assert_eq!(r.tracked(), 100);
        // After the sweep interval, using a shard drops its refilled buckets; a thousand
        // addresses use every shard (a miss has odds of about 1e-27).
        let later = t0 + SWEEP_EVERY;
        for n in 1_000..2_000 {
            r.check_at(ip(n), later).unwrap();
        }
        assert_eq!(r.tracked(), 1_000);
    }
}
