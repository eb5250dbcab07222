//! The settings a configuration reload replaces, as one value: services, authentication,
//! limits, trusted proxies, the TLS acceptor, static files. `AppState` holds the current
//! one behind an atomic pointer; each connection and each request takes one snapshot when
//! it starts and uses only that, so nothing ever sees half of two configurations, and a
//! reload never touches what a running session already holds.

use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use tokio_rustls::TlsAcceptor;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::auth::Authenticator;
use crate::config::{GatewayConfig, LimitsConfig};
use crate::nets::SharedNets;
use crate::services::ServiceTable;
use crate::static_files::StaticFiles;
use crate::transport::TransportSettings;

pub struct Live {
    /// The configuration in force (keys that need a restart keep their start-up values).
    pub config: GatewayConfig,
    pub services: ServiceTable,
    pub auth: Arc<Authenticator>,
    pub limits: LimitsConfig,
    pub trusted_proxies: Vec<IpNet>,
    /// Peers whose connections start with a PROXY protocol header.
    pub proxy_protocol: SharedNets,
    pub static_files: StaticFiles,
    /// New handshakes use it; sessions already open keep the TLS session they have.
    pub tls: Option<TlsAcceptor>,
    /// What a new WebSocket session is given; it keeps them for its life.
    pub ws_config: WebSocketConfig,
    pub transport: TransportSettings,
}

impl Live {
    pub fn new(
        config: GatewayConfig,
        services: ServiceTable,
        auth: Arc<Authenticator>,
        tls: Option<TlsAcceptor>,
    ) -> Live {
        let limits = config.limits.clone();
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(limits.read_buffer_size)
            // Flush threshold, not an allocation: writes are flushed per batch anyway.
            .write_buffer_size(16 * 1024)
            .max_message_size(Some(limits.max_message_size))
            .max_frame_size(Some(limits.max_frame_size));
        let transport = TransportSettings {
            idle_timeout: limits.idle_timeout,
            outgoing_queue: limits.outgoing_queue,
            linger: Duration::from_secs(2),
            deflate: None,
        };
        let static_files = match &config.server.static_dir {
            Some(dir) => StaticFiles::Disk(dir.clone()),
            None => StaticFiles::Embedded,
        };
        let proxy_protocol = SharedNets::default();
        proxy_protocol.replace(config.server.proxy_protocol.clone());
        Live {
            trusted_proxies: config.server.trusted_proxies.clone(),
            proxy_protocol,
            limits,
            config,
            services,
            auth,
            static_files,
            tls,
            ws_config,
            transport,
        }
    }
}
