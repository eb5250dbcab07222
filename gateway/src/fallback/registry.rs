//! The fallback transport's shared part: its settings and the live sessions by id.
//!
//! There is no reaper task scanning the table: each session's own task holds a grace timer
//! (a timer-wheel entry) armed while it has no open stream, ends the session when it fires,
//! and removes its entry on the way out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::session::{SessionSettings, Shared};

/// What the routes need to know, fixed at start-up.
#[derive(Debug, Clone)]
pub struct RouteSettings {
    pub node: String,
    pub grace: Duration,
    pub keepalive: Duration,
    pub stream_bytes: usize,
    pub max_post_bytes: usize,
    pub max_message_size: usize,
}

pub struct Fallback {
    pub routes: RouteSettings,
    pub session_settings: SessionSettings,
    pub registry: Registry,
    pub streams_active: metrics::Gauge,
}

impl Fallback {
    pub fn new(
        routes: RouteSettings,
        session_settings: SessionSettings,
        max_sessions: usize,
    ) -> Arc<Self> {
        metrics::describe_gauge!(
            "gateway_http_fallback_streams_active",
            "Open server-sent-event streams of HTTP fallback sessions"
        );
        Arc::new(Fallback {
            routes,
            session_settings,
            registry: Registry::new(max_sessions),
            streams_active: metrics::gauge!("gateway_http_fallback_streams_active"),
        })
    }
}

pub struct Registry {
    sessions: Mutex<HashMap<Arc<str>, Arc<Shared>>>,
    count: Arc<AtomicUsize>,
    max: usize,
}

/// A place under `max_sessions`, held for the session's life.
pub struct SessionPermit(Arc<AtomicUsize>);

impl Drop for SessionPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Registry {
    fn new(max: usize) -> Self {
        Registry {
            sessions: Mutex::new(HashMap::new()),
            count: Arc::new(AtomicUsize::new(0)),
            max,
        }
    }

    /// A place for one more session, or `None` at `max_sessions`.
    pub fn reserve(&self) -> Option<SessionPermit> {
        let prev = self.count.fetch_add(1, Ordering::AcqRel);
        if prev >= self.max {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(SessionPermit(self.count.clone()))
    }

    pub fn insert(&self, id: Arc<str>, session: Arc<Shared>) {
        self.lock().insert(id, session);
    }

    pub fn get(&self, id: &str) -> Option<Arc<Shared>> {
        self.lock().get(id).cloned()
    }

    pub fn remove(&self, id: &str) {
        let mut map = self.lock();
        map.remove(id);
        if map.is_empty() && map.capacity() > 1024 {
            // After a burst of sessions, do not keep the table's memory.
            map.shrink_to(64);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Shared>>> {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_bounded_and_released() {
        let r = Registry::new(2);
        let a = r.reserve().unwrap();
        let _b = r.reserve().unwrap();
        assert!(r.reserve().is_none());
        drop(a);
        assert!(r.reserve().is_some());
    }
}
