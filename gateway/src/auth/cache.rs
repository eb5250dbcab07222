//! A small bounded cache of verified credentials, each entry good until its own deadline.
//!
//! Entries are keyed by a [`CacheKey`]: an HMAC-SHA256 of the credentials under a key drawn
//! at random when the cache is made, so neither a password nor a plain hash of one is ever
//! held, and a key seen in one process (or one cache) means nothing in another.
//!
//! When full, the entry inserted first goes: with one TTL for all (passwords) that is also
//! the one closest to expiry. Expired entries are dropped as they are met.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The keyed hash of one set of credentials.
pub type CacheKey = [u8; 32];

/// Makes [`CacheKey`]s with a secret key of its own.
pub struct Keyer {
    mac: Hmac<Sha256>,
}

impl Keyer {
    /// A keyer with a fresh random key.
    pub fn random() -> Keyer {
        let mut key = [0u8; 32];
        // Without the OS generator nothing else here is secure either; a fixed key would
        // only make entries guessable offline, so refuse to run rather than fall back.
        getrandom::fill(&mut key).expect("the operating system's random number generator");
        Keyer {
            mac: Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length"),
        }
    }

    /// The key of `parts`, each length-prefixed so ("ab", "c") and ("a", "bc") differ.
    pub fn key(&self, parts: &[&[u8]]) -> CacheKey {
        let mut mac = self.mac.clone();
        for part in parts {
            mac.update(&(part.len() as u64).to_le_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }
}

struct Entry<V> {
    value: V,
    deadline: Instant,
    /// Tells this entry from a later one under the same key in `order`.
    seq: u64,
}

struct Inner<V> {
    map: HashMap<CacheKey, Entry<V>>,
    /// Keys in insertion order, with the `seq` they were inserted with.
    order: VecDeque<(CacheKey, u64)>,
    next_seq: u64,
}

/// At most `capacity` entries; capacity 0 holds nothing.
pub struct TtlCache<V> {
    capacity: usize,
    inner: Mutex<Inner<V>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(capacity: usize) -> TtlCache<V> {
        TtlCache {
            capacity,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                next_seq: 0,
            }),
        }
    }

    pub fn is_enabled(&self) -> bool {
        self.capacity > 0
    }

    /// The value under `key` if its deadline is still ahead of `now`.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Option<V> {
        if !self.is_enabled() {
            return None;
        }
        let mut inner = self.lock();
        match inner.map.get(key) {
            Some(e) if e.deadline > now => Some(e.value.clone()),
            Some(_) => {
                inner.map.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` until `deadline`, pushing out expired entries, then the oldest, to
    /// stay within capacity.
    pub fn insert(&self, key: CacheKey, value: V, deadline: Instant, now: Instant) {
        if !self.is_enabled() || deadline <= now {
            return;
        }
        let mut inner = self.lock();
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.map.insert(
            key,
            Entry {
                value,
                deadline,
                seq,
            },
        );
        inner.order.push_back((key, seq));
        while let Some(&(old, old_seq)) = inner.order.front() {
            let live = inner.map.get(&old).filter(|e| e.seq == old_seq);
            let stale = match live {
                None => true,
                Some(e) if e.deadline <= now => {
                    inner.map.remove(&old);
                    true
                }
                Some(_) if inner.map.len() > self.capacity => {
                    inner.map.remove(&old);
                    true
                }
                Some(_) => false,
            };
            if !stale {
                break;
            }
            inner.order.pop_front();
        }
        // Re-inserted keys leave dead `order` slots behind; keep them from piling up.
        if inner.order.len() > 2 * self.capacity.max(16) {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(k, s)| map.get(k).is_some_and(|e| e.seq == *s));
        }
    }

    /// Forgets everything (the realm changed).
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.map.clear();
        inner.order.clear();
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<V>> {
        // A panic while holding the lock leaves at worst a stale entry; keep serving.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn k(n: u8) -> CacheKey {
        [n; 32]
    }

    #[test]
    fn entries_live_until_their_deadline() {
        let c = TtlCache::new(10);
        let t0 = Instant::now();
        c.insert(k(1), "a", t0 + Duration::from_secs(60), t0);
        assert_eq!(c.get(&k(1), t0), Some("a"));
        assert_eq!(c.get(&k(1), t0 + Duration::from_secs(59)), Some("a"));
        assert_eq!(c.get(&k(1), t0 + Duration::from_secs(60)), None);
        assert_eq!(c.len(), 0, "an expired entry is dropped when met");
        c.insert(k(2), "b", t0, t0);
        assert_eq!(c.get(&k(2), t0), None, "an entry already due is not stored");
    }

    #[test]
    fn size_is_bounded_and_the_oldest_goes_first() {
        let c = TtlCache::new(3);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(60);
        for n in 1..=5 {
            c.insert(k(n), n, later, t0);
            assert!(c.len() <= 3);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.get(&k(1), t0), None);
        assert_eq!(c.get(&k(2), t0), None);
        for n in 3..=5 {
            assert_eq!(c.get(&k(n), t0), Some(n));
        }
    }

    #[test]
    fn expired_entries_make_room_before_live_ones_are_evicted() {
        let c = TtlCache::new(2);
        let t0 = Instant::now();
        c.insert(k(1), 1, t0 + Duration::from_secs(1), t0);
        c.insert(k(2), 2, t0 + Duration::from_secs(100), t0);
        let t1 = t0 + Duration::from_secs(5);
        c.insert(k(3), 3, t1 + Duration::from_secs(100), t1);
        assert_eq!(c.get(&k(2), t1), Some(2));
        assert_eq!(c.get(&k(3), t1), Some(3));
    }

    #[test]
    fn reinserting_a_key_keeps_one_entry_and_the_bound() {
        let c = TtlCache::new(2);
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(60);
        for round in 0..100 {
            c.insert(k(1), round, later, t0);
        }
        c.insert(k(2), 2, later, t0);
        assert_eq!(c.get(&k(1), t0), Some(99));
        assert_eq!(c.len(), 2);
        c.insert(k(3), 3, later, t0);
        assert_eq!(c.len(), 2);
        assert_eq!(c.get(&k(1), t0), None, "k1 was inserted (last) before k2");
        assert!(c.lock().order.len() <= 2 * 16 + 1);
    }

    #[test]
    fn zero_capacity_holds_nothing_and_clear_empties() {
        let off = TtlCache::new(0);
        let t0 = Instant::now();
        off.insert(k(1), 1, t0 + Duration::from_secs(60), t0);
        assert!(!off.is_enabled());
        assert_eq!(off.get(&k(1), t0), None);
        let on = TtlCache::new(5);
        on.insert(k(1), 1, t0 + Duration::from_secs(60), t0);
        on.clear();
        assert_eq!(on.get(&k(1), t0), None);
    }

    #[test]
    fn keys_depend_on_the_secret_and_on_part_boundaries() {
        let a = Keyer::random();
        let b = Keyer::random();
        let parts: [&[u8]; 2] = [b"alice", b"pw"];
        assert_eq!(a.key(&parts), a.key(&parts));
        assert_ne!(
            a.key(&parts),
            b.key(&parts),
            "each keyer has its own random key"
        );
        assert_ne!(a.key(&[b"ab", b"c"]), a.key(&[b"a", b"bc"]));
        assert_ne!(a.key(&parts), a.key(&[b"alice", b"pw2"]));
        // Not a plain hash of the password either.
        use sha2::Digest;
        let plain: [u8; 32] = Sha256::digest(b"pw").into();
        assert_ne!(a.key(&parts), plain);
    }
}
