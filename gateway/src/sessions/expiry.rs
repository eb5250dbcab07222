//! One timer for every session's credential deadline (a JWT's `exp`): sessions are kept in
//! deadline order and the timer sleeps until the earliest, so a million sessions cost no
//! timer each. A refreshed credential schedules the session again; the stale entry is
//! recognised when it comes due (the session's deadline moved) and skipped.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use bridge_api::{ExpiryWatch, StopReason};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::SessionRegistry;

/// Wake at least this often, so a wall-clock jump is noticed without a new schedule.
const MAX_SLEEP: Duration = Duration::from_secs(30);

pub struct ExpiryTimer {
    due: Mutex<BTreeSet<(SystemTime, u64)>>,
    changed: Notify,
    registry: Weak<SessionRegistry>,
}

impl ExpiryTimer {
    pub(super) fn new(registry: Weak<SessionRegistry>) -> Arc<Self> {
        Arc::new(ExpiryTimer {
            due: Mutex::new(BTreeSet::new()),
            changed: Notify::new(),
            registry,
        })
    }

    pub(super) async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let now = SystemTime::now();
            let sleep = match self.lock().first() {
                Some((at, _)) => at.duration_since(now).unwrap_or(Duration::ZERO),
                None => MAX_SLEEP,
            }
            .min(MAX_SLEEP);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.changed.notified() => continue,
                _ = tokio::time::sleep(sleep) => {}
            }
            self.fire(SystemTime::now());
        }
    }

    /// End every session whose credential has expired by `now`.
    fn fire(&self, now: SystemTime) {
        let Some(registry) = self.registry.upgrade() else {
            return;
        };
        let due: Vec<u64> = {
            let mut set = self.lock();
            let mut ids = Vec::new();
            while let Some(&(at, id)) = set.first() {
                if at > now {
                    break;
                }
                set.pop_first();
                ids.push(id);
            }
            ids
        };
        for id in due {
            let Some(live) = registry.get(id) else {
                continue;
            };
            // A refresh moved the deadline: its own entry is still scheduled.
            if live.control.expires_at().is_some_and(|at| at <= now) {
                tracing::info!(session = id, "credential expired: ending the session");
                metrics::counter!("gateway_credential_expiries_total", "service" => live.info.service.to_string())
                    .increment(1);
                live.control.stop(StopReason::CredentialExpired);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeSet<(SystemTime, u64)>> {
        self.due.lock().unwrap_or_else(|p| p.into_inner())
    }

    #[cfg(test)]
    pub(super) fn scheduled(&self) -> usize {
        self.lock().len()
    }
}

impl ExpiryWatch for ExpiryTimer {
    fn expires(&self, session: u64, at: SystemTime) {
        let earliest = {
            let mut set = self.lock();
            set.insert((at, session));
            set.first() == Some(&(at, session))
        };
        if earliest {
            self.changed.notify_one();
        }
    }
}
