//! Every live session of the process, by id, whatever its transport: what the admin API
//! lists and closes, what a realm reload re-checks, and what the credential-expiry timer
//! ends. A session registers when its task starts and leaves when the task ends (the
//! [`Registered`] guard), so the registry never holds a finished session.

mod expiry;
mod traffic;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use bridge_api::{QueueDepth, SessionControl, SessionInfo};
use tokio_util::sync::CancellationToken;

pub use expiry::ExpiryTimer;
pub use traffic::SessionTraffic;

/// Sharded so that session start and end on many workers do not queue on one lock.
const SHARDS: usize = 16;

/// One live session as the gateway sees it.
pub struct LiveSession {
    pub info: Arc<SessionInfo>,
    pub control: Arc<SessionControl>,
    pub started_at: SystemTime,
    pub started: Instant,
    pub traffic: Arc<SessionTraffic>,
    /// The session's outbox depth, read only when asked (the admin API).
    pub queue: QueueDepth,
}

type Shard = Mutex<HashMap<u64, Arc<LiveSession>>>;

pub struct SessionRegistry {
    shards: Box<[Shard]>,
    expiry: Arc<ExpiryTimer>,
}

impl SessionRegistry {
    pub fn new() -> Arc<Self> {
        Arc::new_cyclic(|weak| SessionRegistry {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            expiry: ExpiryTimer::new(weak.clone()),
        })
    }

    /// The control for a new session: `stop` becomes its shutdown token, and a credential
    /// with an expiry is scheduled to end it.
    pub fn control(
        &self,
        id: u64,
        stop: CancellationToken,
        info: &SessionInfo,
    ) -> Arc<SessionControl> {
        SessionControl::new(
            id,
            stop,
            info.principal.clone(),
            Some(self.expiry.clone() as Arc<dyn bridge_api::ExpiryWatch>),
        )
    }

    /// Add a starting session; it leaves when the guard drops.
    pub fn register(
        self: &Arc<Self>,
        info: Arc<SessionInfo>,
        control: Arc<SessionControl>,
        queue: QueueDepth,
    ) -> Registered {
        let id = info.id;
        let live = Arc::new(LiveSession {
            info,
            control,
            started_at: SystemTime::now(),
            started: Instant::now(),
            traffic: Arc::new(SessionTraffic::default()),
            queue,
        });
        self.shard(id).insert(id, live.clone());
        Registered {
            registry: self.clone(),
            live,
        }
    }

    pub fn get(&self, id: u64) -> Option<Arc<LiveSession>> {
        self.shard(id).get(&id).cloned()
    }

    /// A snapshot of every live session, in no particular order.
    pub fn all(&self) -> Vec<Arc<LiveSession>> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            out.extend(lock(shard).values().cloned());
        }
        out
    }

    #[allow(dead_code)] // beside `len`, as clippy wants
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn len(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// End, as revoked, every session whose current principal `judge` condemns (it returns
    /// the reason the client is told); e.g. after a realm reload removed or re-roled its
    /// user. Returns how many were ended.
    #[allow(dead_code)] // the realm reload's, not wired yet
    pub fn revoke_where(
        &self,
        mut judge: impl FnMut(&bridge_api::Principal) -> Option<String>,
    ) -> usize {
        let mut ended = 0;
        for live in self.all() {
            let Some(principal) = live.control.principal() else {
                continue;
            };
            if let Some(reason) = judge(&principal) {
                tracing::info!(session = live.info.id, user = %principal.name, %reason, "credentials revoked: ending the session");
                live.control
                    .stop(bridge_api::StopReason::CredentialRevoked { reason });
                ended += 1;
            }
        }
        ended
    }

    /// Run the credential-expiry timer until `shutdown`.
    pub fn start_expiry(&self, shutdown: CancellationToken) {
        tokio::spawn(self.expiry.clone().run(shutdown));
    }

    fn shard(&self, id: u64) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<LiveSession>>> {
        lock(&self.shards[(id as usize) % SHARDS])
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Held by the session's task; the session leaves the registry when it drops.
pub struct Registered {
    registry: Arc<SessionRegistry>,
    live: Arc<LiveSession>,
}

impl Registered {
    pub fn traffic(&self) -> &Arc<SessionTraffic> {
        &self.live.traffic
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry
            .shard(self.live.info.id)
            .remove(&self.live.info.id);
    }
}

#[cfg(test)]
mod tests;
