//! Work a bridge runs beside its sessions (reconnect loops, probes, gauges), owned by the
//! gateway: it starts it after building the bridge and waits for it when it drains, so no
//! task dies mid-goodbye with the runtime.

use std::future::Future;
use std::sync::Arc;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// One service's background: a shutdown signal and the tasks that must see it. Clones
/// share both.
#[derive(Clone)]
pub struct Background {
    service: Arc<str>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
}

impl Background {
    pub fn new(service: impl Into<Arc<str>>) -> Self {
        Background {
            service: service.into(),
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
        }
    }

    /// The service this background belongs to, for logs and metric labels.
    pub fn service(&self) -> &Arc<str> {
        &self.service
    }

    /// Run `task` until it ends; the drain waits for it, so it should return soon after
    /// [`shutdown`](Self::shutdown) fires.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tasks.spawn(task)
    }

    /// Fires when the gateway drains, after the sessions have ended.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    /// For code that tracks its tasks itself (e.g. a connection pool).
    pub fn tracker(&self) -> &TaskTracker {
        &self.tasks
    }

    /// Fire the shutdown. Tasks spawned later still run and are still waited for.
    pub fn stop(&self) {
        self.shutdown.cancel();
        self.tasks.close();
    }

    /// Once [`stop`](Self::stop) was called and every task has ended.
    pub async fn stopped(&self) {
        self.tasks.wait().await;
    }

    /// Tasks still running.
    pub fn running(&self) -> usize {
        self.tasks.len()
    }
}

impl std::fmt::Debug for Background {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Background")
            .field("service", &self.service)
            .field("stopping", &self.shutdown.is_cancelled())
            .field("running", &self.tasks.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn stopped_waits_for_tasks_to_see_the_shutdown() {
        let bg = Background::new("s");
        let token = bg.shutdown().clone();
        bg.spawn(async move { token.cancelled().await });
        assert_eq!(bg.running(), 1);
        let early = tokio::time::timeout(Duration::from_millis(20), bg.stopped()).await;
        assert!(early.is_err(), "stopped before stop()");
        bg.stop();
        tokio::time::timeout(Duration::from_secs(1), bg.stopped())
            .await
            .expect("the task saw the shutdown");
        assert_eq!(bg.running(), 0);
        assert_eq!(&**bg.service(), "s");
    }
}
