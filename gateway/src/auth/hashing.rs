//! Where password hashes are computed: on blocking threads, at most `max_concurrent` at a
//! time, with at most `max_waiting` more queued for at most `wait_timeout`. Anything beyond
//! is refused at once as [`Overloaded`], so a flood of logins costs a bounded amount of CPU
//! and memory and never occupies the async workers that carry other sessions' traffic.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

/// Too many hashes running and waiting; try again later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded;

pub struct HashPool {
    running: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    wait_timeout: Duration,
}

/// Removes one waiter from the count and the gauge however the wait ends.
struct Waiting<'a>(&'a HashPool);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        let now = self.0.waiting.fetch_sub(1, Ordering::Relaxed) - 1;
        metrics::gauge!("gateway_auth_verifications_waiting").set(now as f64);
    }
}

impl HashPool {
    pub fn new(max_concurrent: usize, max_waiting: usize, wait_timeout: Duration) -> HashPool {
        HashPool {
            running: Arc::new(Semaphore::new(max_concurrent.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting,
            wait_timeout,
        }
    }

    /// Runs `work` on a blocking thread once a slot is free.
    pub async fn run<T, F>(&self, work: F) -> Result<T, Overloaded>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = match Arc::clone(&self.running).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                let queued = self.waiting.fetch_add(1, Ordering::Relaxed) + 1;
                let _waiting = Waiting(self);
                if queued > self.max_waiting {
                    return Err(Overloaded);
                }
                metrics::gauge!("gateway_auth_verifications_waiting").set(queued as f64);
                let acquire = Arc::clone(&self.running).acquire_owned();
                match tokio::time::timeout(self.wait_timeout, acquire).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) | Err(_) => return Err(Overloaded),
                }
            }
        };
        let joined = tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await;
        match joined {
            Ok(v) => Ok(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // Only when the runtime is shutting down.
            Err(_) => Err(Overloaded),
        }
    }

    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[tokio::test]
    async fn runs_work_and_returns_its_value() {
        let pool = HashPool::new(2, 10, Duration::from_secs(1));
        assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
    }

    /// Holds `n` slots until the returned senders are dropped.
    fn occupy(pool: &Arc<HashPool>, n: usize) -> Vec<mpsc::Sender<()>> {
        (0..n)
            .map(|_| {
                let (tx, rx) = mpsc::channel::<()>();
                let pool = Arc::clone(pool);
                tokio::spawn(async move { pool.run(move || rx.recv().ok()).await });
                tx
            })
            .collect()
    }

    async fn settle(pool: &HashPool, free: usize) {
        for _ in 0..200 {
            if pool.running.available_permits() == free {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("slots never settled at {free} free");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once() {
        let pool = Arc::new(HashPool::new(1, 1, Duration::from_secs(30)));
        let hold = occupy(&pool, 1);
        settle(&pool, 0).await;
        let queued = {
            let pool = Arc::clone(&pool);
            tokio::spawn(async move { pool.run(|| "queued").await })
        };
        for _ in 0..200 {
            if pool.waiting() == 1 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(pool.waiting(), 1);
        let started = std::time::Instant::now();
        assert_eq!(pool.run(|| "refused").await, Err(Overloaded));
        assert!(started.elapsed() < Duration::from_secs(1));
        drop(hold);
        assert_eq!(queued.await.expect("task"), Ok("queued"));
        assert_eq!(pool.waiting(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wait_past_the_timeout_is_refused() {
        let pool = Arc::new(HashPool::new(1, 10, Duration::from_millis(100)));
        let hold = occupy(&pool, 1);
        settle(&pool, 0).await;
        let started = std::time::Instant::now();
        assert_eq!(pool.run(|| ()).await, Err(Overloaded));
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert_eq!(pool.waiting(), 0);
        drop(hold);
        settle(&pool, 1).await;
        assert_eq!(pool.run(|| 1).await, Ok(1));
    }
}
