//! What every connection handler shares.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::fallback::Fallback;
use crate::handshake_rate::HandshakeRate;
use crate::limits::ConnectionLimits;
pub use crate::live::Live;
use crate::reload::{CurrentAuth, Hooks};
use crate::services::Retired;
use crate::sessions::SessionRegistry;

pub struct AppState {
    /// What a reload replaces; read through [`AppState::live`], once per connection or
    /// request.
    live: ArcSwap<Live>,
    /// Live counts survive a reload; only the caps change.
    pub connections: Arc<ConnectionLimits>,
    /// Per-IP handshake rate: its buckets survive a reload, only its limits change.
    pub handshake_rate: HandshakeRate,
    /// The HTTP fallback transport, when enabled (fixed at start-up).
    pub fallback: Option<Arc<Fallback>>,
    /// The authenticator bridges check protocol-level logins against: always the current one.
    pub credentials: Arc<CurrentAuth>,
    /// The file the configuration came from, which a reload reads again.
    pub config_path: Option<PathBuf>,
    /// One reload at a time (SIGHUP and the admin API may ask together).
    pub reloading: tokio::sync::Mutex<()>,
    /// Called after each successful reload (e.g. to apply the log level).
    pub reload_hooks: Hooks,
    /// Bridges a reload replaced, whose background work the drain must still wait for.
    retired: Mutex<Vec<Retired>>,
    /// Fired on SIGTERM/SIGINT; every session's shutdown signal descends from it.
    pub shutdown: CancellationToken,
    /// Live sessions, so shutdown can wait for them to close.
    pub sessions: TaskTracker,
    /// The same sessions by id, with their controls: for the admin API, reloads and the
    /// credential-expiry timer.
    pub live_sessions: Arc<SessionRegistry>,
    /// Fired when a drain is asked for other than by a signal (the admin API); the main
    /// task then runs the same shutdown as for SIGTERM.
    pub drain_requested: CancellationToken,
    draining: AtomicBool,
    next_session_id: AtomicU64,
}

impl AppState {
    pub fn new(
        live: Live,
        fallback: Option<Arc<Fallback>>,
        credentials: Arc<CurrentAuth>,
        config_path: Option<PathBuf>,
    ) -> Arc<Self> {
        credentials.set(live.auth.clone());
        metrics::describe_gauge!(
            "gateway_draining",
            "1 from the moment a drain starts (SIGTERM or the admin API) until the process exits"
        );
        metrics::gauge!("gateway_draining").set(0.0);
        let handshake_rate = HandshakeRate::new();
        handshake_rate.set_limits(live.limits.handshake_rate());
        Arc::new(AppState {
            connections: ConnectionLimits::new(
                live.limits.max_connections,
                live.limits.max_connections_per_ip,
            ),
            handshake_rate,
            live: ArcSwap::from_pointee(live),
            fallback,
            credentials,
            config_path,
            reloading: tokio::sync::Mutex::new(()),
            reload_hooks: Hooks::default(),
            retired: Mutex::new(Vec::new()),
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            live_sessions: SessionRegistry::new(),
            drain_requested: CancellationToken::new(),
            draining: AtomicBool::new(false),
            next_session_id: AtomicU64::new(1),
        })
    }

    /// The settings in force now. Take it once and keep it for the connection or request.
    pub fn live(&self) -> Arc<Live> {
        self.live.load_full()
    }

    /// Put `live` in force for every connection and request from now on; `retired` are
    /// the bridges it no longer uses. Returns the settings it replaced.
    pub fn install(&self, live: Live, retired: Vec<Retired>) -> Arc<Live> {
        self.credentials.set(live.auth.clone());
        self.connections.set_caps(
            live.limits.max_connections,
            live.limits.max_connections_per_ip,
        );
        self.handshake_rate.set_limits(live.limits.handshake_rate());
        let mut kept = self.retired.lock().unwrap_or_else(|p| p.into_inner());
        kept.retain(|r| !r.is_done());
        kept.extend(retired);
        drop(kept);
        self.live.swap(Arc::new(live))
    }

    /// Bridges replaced by reloads that may still be winding down.
    pub fn retired(&self) -> Vec<Retired> {
        self.retired
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
        metrics::gauge!("gateway_draining").set(1.0);
    }

    /// Unready at once, then the shutdown sequence. Returns false if a drain was already
    /// under way.
    pub fn request_drain(&self) -> bool {
        let first = !self.draining.swap(true, Ordering::Relaxed);
        metrics::gauge!("gateway_draining").set(1.0);
        self.drain_requested.cancel();
        first
    }

    pub fn next_session_id(&self) -> u64 {
        self.next_session_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Ready when not draining and every bridge can take sessions; else the reasons.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.is_draining() {
            problems.push("draining".to_string());
        }
        for s in self.live().services.all() {
            if s.bridge.gates_readiness() && !s.bridge.is_ready() {
                problems.push(format!("service {} not ready", s.name));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}
