//! Password logins against one realm, with a short-lived cache of the ones that succeeded.
//!
//! A reconnect storm is thousands of clients presenting the same few user/password pairs
//! at once. The first check of a pair runs argon2 (or bcrypt) in the [`HashPool`]; checks
//! of the same pair arriving meanwhile wait for that one instead of hashing again; once it
//! succeeds, the pair's roles are served from the cache until `ttl` passes. Failures are
//! never cached. The cache belongs to this realm instance: a new realm starts empty.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};

use super::cache::{CacheKey, Keyer, TtlCache};
use super::hashing::{HashPool, Overloaded};
use super::metrics::{count, Kind, Outcome};
use super::realm::Realm;

/// Why a password was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginError {
    /// Unknown user or wrong password.
    Rejected,
    /// No hashing slot within the wait limits.
    Overloaded,
}

type Checked = Result<Arc<[String]>, LoginError>;

pub struct RealmLogins {
    realm: Arc<Realm>,
    pool: Arc<HashPool>,
    cache: TtlCache<Arc<[String]>>,
    ttl: Duration,
    keyer: Keyer,
    in_flight: Mutex<HashMap<CacheKey, Shared<BoxFuture<'static, Checked>>>>,
}

impl RealmLogins {
    /// `size` 0 or `ttl` zero turn the cache (and the sharing of checks under way) off.
    pub fn new(realm: Realm, pool: Arc<HashPool>, size: usize, ttl: Duration) -> RealmLogins {
        let size = if ttl.is_zero() { 0 } else { size };
        RealmLogins {
            realm: Arc::new(realm),
            pool,
            cache: TtlCache::new(size),
            ttl,
            keyer: Keyer::random(),
            in_flight: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets every cached login, e.g. when the users behind them may have changed.
    /// The realm this instance checks against.
    pub fn realm(&self) -> &Realm {
        &self.realm
    }

    pub fn invalidate(&self) {
        self.cache.clear();
    }

    #[cfg(test)]
    pub fn pool_for_tests(&self) -> Arc<HashPool> {
        Arc::clone(&self.pool)
    }

    #[cfg(test)]
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    /// The user's roles if the password is right.
    pub async fn check(self: &Arc<Self>, user: &str, password: &str) -> Checked {
        if !self.cache.is_enabled() {
            return self.verify(user.to_owned(), password.to_owned()).await;
        }
        let key = self.keyer.key(&[user.as_bytes(), password.as_bytes()]);
        if let Some(roles) = self.cache.get(&key, Instant::now()) {
            count(Kind::Password, Outcome::CacheHit);
            return Ok(roles);
        }
        let (check, joined) = {
            let mut in_flight = self.lock_in_flight();
            match in_flight.get(&key) {
                Some(check) => (check.clone(), true),
                None => {
                    let check = self.start(key, user.to_owned(), password.to_owned());
                    in_flight.insert(key, check.clone());
                    (check, false)
                }
            }
        };
        if joined {
            count(Kind::Password, Outcome::Joined);
        }
        check.await
    }

    /// One check of a pair as a task of its own, so that it finishes (and fills the cache)
    /// even if the client that asked goes away while others wait for it.
    fn start(
        self: &Arc<Self>,
        key: CacheKey,
        user: String,
        password: String,
    ) -> Shared<BoxFuture<'static, Checked>> {
        let this = Arc::clone(self);
        let task = tokio::spawn(async move {
            let checked = this.verify(user, password).await;
            if let Ok(roles) = &checked {
                let now = Instant::now();
                this.cache
                    .insert(key, Arc::clone(roles), now + this.ttl, now);
            }
            this.lock_in_flight().remove(&key);
            checked
        });
        async move {
            task.await.unwrap_or_else(|e| {
                tracing::error!(error = %e, "password check task failed");
                Err(LoginError::Rejected)
            })
        }
        .boxed()
        .shared()
    }

    async fn verify(&self, user: String, password: String) -> Checked {
        let realm = Arc::clone(&self.realm);
        let checked = self.pool.run(move || realm.verify(&user, &password)).await;
        match checked {
            Ok(Some(roles)) => {
                count(Kind::Password, Outcome::Verified);
                Ok(roles.into())
            }
            Ok(None) => {
                count(Kind::Password, Outcome::Rejected);
                Err(LoginError::Rejected)
            }
            Err(Overloaded) => {
                count(Kind::Password, Outcome::Overloaded);
                Err(LoginError::Overloaded)
            }
        }
    }

    fn lock_in_flight(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<CacheKey, Shared<BoxFuture<'static, Checked>>>> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::realm::tests::realm_toml;

    fn logins(size: usize, ttl: Duration, pool: HashPool) -> Arc<RealmLogins> {
        let realm = Realm::parse(&realm_toml()).expect("realm");
        Arc::new(RealmLogins::new(realm, Arc::new(pool), size, ttl))
    }

    fn pool() -> HashPool {
        HashPool::new(2, 100, Duration::from_secs(10))
    }

    #[tokio::test]
    async fn a_right_password_is_cached_and_a_wrong_one_never() {
        let l = logins(10, Duration::from_secs(60), pool());
        let roles = l.check("alice", "alice-pw").await.expect("ok");
        assert_eq!(&*roles, ["trader".to_owned(), "chat".to_owned()]);
        assert_eq!(l.cached(), 1);
        assert_eq!(l.check("alice", "alice-pw").await, Ok(roles));
        assert_eq!(l.check("alice", "wrong").await, Err(LoginError::Rejected));
        assert_eq!(l.check("alice", "wrong").await, Err(LoginError::Rejected));
        assert_eq!(
            l.check("nobody", "alice-pw").await,
            Err(LoginError::Rejected)
        );
        assert_eq!(l.cached(), 1, "failures are not cached");
        l.invalidate();
        assert_eq!(l.cached(), 0);
        assert!(l.check("alice", "alice-pw").await.is_ok());
    }

    #[tokio::test]
    async fn zero_size_or_ttl_caches_nothing() {
        for (size, ttl) in [(0, Duration::from_secs(60)), (10, Duration::ZERO)] {
            let l = logins(size, ttl, pool());
            assert!(l.check("bob", "bob-pw").await.is_ok());
            assert!(l.check("bob", "bob-pw").await.is_ok());
            assert_eq!(l.cached(), 0);
        }
    }

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let l = logins(10, Duration::from_millis(50), pool());
        assert!(l.check("alice", "alice-pw").await.is_ok());
        let key = l.keyer.key(&[b"alice", b"alice-pw"]);
        assert!(l.cache.get(&key, Instant::now()).is_some());
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert!(l.cache.get(&key, Instant::now()).is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_checks_of_one_pair_share_one_hash() {
        // One slot and no queue: a second hash at the same time would be refused.
        let l = logins(
            10,
            Duration::from_secs(60),
            HashPool::new(1, 0, Duration::ZERO),
        );
        let checks: Vec<_> = (0..50)
            .map(|_| {
                let l = Arc::clone(&l);
                tokio::spawn(async move { l.check("bob", "bob-pw").await })
            })
            .collect();
        for c in checks {
            assert_eq!(c.await.expect("task"), Ok(Arc::from(Vec::new())));
        }
    }

    #[tokio::test]
    async fn overload_is_not_a_rejection_and_is_not_cached() {
        let l = logins(
            10,
            Duration::from_secs(60),
            HashPool::new(1, 0, Duration::ZERO),
        );
        let slot = Arc::clone(&l.pool);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let hold = tokio::spawn(async move { slot.run(move || rx.recv().ok()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            l.check("alice", "alice-pw").await,
            Err(LoginError::Overloaded)
        );
        drop(tx);
        hold.await.expect("task").expect("ran");
        assert!(l.check("alice", "alice-pw").await.is_ok());
    }
}
