//! What every connection handler shares.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use ipnet::IpNet;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Authenticator;
use crate::config::LimitsConfig;
use crate::fallback::Fallback;
use crate::handshake_rate::HandshakeRate;
use crate::limits::ConnectionLimits;
use crate::nets::SharedNets;
use crate::services::ServiceTable;
use crate::sessions::SessionRegistry;
use crate::static_files::StaticFiles;
use crate::transport::TransportSettings;

pub struct AppState {
    pub services: ServiceTable,
    pub auth: Arc<Authenticator>,
    pub limits: LimitsConfig,
    pub connections: Arc<ConnectionLimits>,
    pub trusted_proxies: Vec<IpNet>,
    /// Peers whose connections start with a PROXY protocol header; replaceable at run time.
    pub proxy_protocol: SharedNets,
    /// Per-IP handshake rate; its limits are replaceable at run time.
    pub handshake_rate: HandshakeRate,
    pub static_files: StaticFiles,
    pub ws_config: WebSocketConfig,
    pub transport: TransportSettings,
    /// The HTTP fallback transport, when enabled.
    pub fallback: Option<Arc<Fallback>>,
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
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        services: ServiceTable,
        auth: Arc<Authenticator>,
        limits: LimitsConfig,
        trusted_proxies: Vec<IpNet>,
        static_files: StaticFiles,
        fallback: Option<Arc<Fallback>>,
    ) -> Arc<Self> {
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(limits.read_buffer_size)
            // Flush threshold, not an allocation: writes are flushed per batch anyway.
            .write_buffer_size(16 * 1024)
            .max_message_size(Some(limits.max_message_size))
            .max_frame_size(Some(limits.max_frame_size));
        let transport = TransportSettings {
            idle_timeout: limits.idle_timeout,
            outgoing_queue: limits.outgoing_queue,
            linger: std::time::Duration::from_secs(2),
        };
        metrics::describe_gauge!(
            "gateway_draining",
            "1 from the moment a drain starts (SIGTERM or the admin API) until the process exits"
        );
        metrics::gauge!("gateway_draining").set(0.0);
        let handshake_rate = HandshakeRate::new();
        handshake_rate.set_limits(limits.handshake_rate());
        Arc::new(AppState {
            services,
            auth,
            connections: ConnectionLimits::new(
                limits.max_connections,
                limits.max_connections_per_ip,
            ),
            handshake_rate,
            limits,
            trusted_proxies,
            proxy_protocol: SharedNets::default(),
            static_files,
            ws_config,
            transport,
            fallback,
            shutdown: CancellationToken::new(),
            sessions: TaskTracker::new(),
            live_sessions: SessionRegistry::new(),
            drain_requested: CancellationToken::new(),
            draining: AtomicBool::new(false),
            next_session_id: AtomicU64::new(1),
        })
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
        for s in self.services.all() {
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
