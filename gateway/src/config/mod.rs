//! Configuration: TOML through the `config` crate, every key overridable from the
//! environment as `GATEWAY__SECTION__KEY`, unknown keys rejected by name.

mod admin;
mod bytesize;
mod defaults;
mod http_fallback;
mod load;
mod log;
mod node;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::auth::AuthConfig;

pub use admin::AdminConfig;
pub use defaults::default_services;
pub use http_fallback::HttpFallbackConfig;
pub use load::{load, ConfigError};
#[cfg(test)]
pub use log::LogLevel;
pub use log::{LogConfig, LogFormat};
pub use node::resolve as resolve_node;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub server: ServerConfig,
    pub admin: AdminConfig,
    pub limits: LimitsConfig,
    pub auth: AuthConfig,
    pub http_fallback: HttpFallbackConfig,
    pub log: LogConfig,
    #[serde(rename = "service")]
    pub services: Vec<ServiceConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// This gateway's name among those sharing a broker (default: the host name); see
    /// `node.rs`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// `ws://` and `http://` (or `wss://` and `https://` with `tls`) on this one address.
    pub listen: SocketAddr,
    /// Directory served at `/`; the embedded demo pages when absent.
    pub static_dir: Option<PathBuf>,
    /// Proxies whose `Forwarded` / `X-Forwarded-For` headers are believed. With
    /// `proxy_protocol`, this is matched against the address the PROXY header gives.
    pub trusted_proxies: Vec<IpNet>,
    /// Load balancers that start every connection with a PROXY protocol header (v1 or v2,
    /// HAProxy's `send-proxy` / `send-proxy-v2`, AWS NLB's proxy protocol v2): connections
    /// from these networks must carry one and are closed without it; the client it names is
    /// the peer from then on. Connections from elsewhere are taken as direct.
    pub proxy_protocol: Vec<IpNet>,
    pub tls: Option<TlsConfig>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            node: None,
            listen: ([127, 0, 0, 1], 8080).into(),
            static_dir: None,
            trusted_proxies: Vec::new(),
            proxy_protocol: Vec::new(),
            tls: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientAuth {
    #[default]
    None,
    Optional,
    Required,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM CA bundle that client certificates must chain to.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    #[serde(default)]
    pub client_auth: ClientAuth,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Open client TCP connections, all kinds; over it new connections get HTTP 503.
    pub max_connections: usize,
    /// WebSocket sessions per client IP; over it the handshake gets HTTP 429.
    pub max_connections_per_ip: usize,
    /// The PROXY header and TLS handshake must complete within this, and so must the HTTP
    /// request head.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Largest request head (request line and headers) in bytes.
    pub max_header_bytes: usize,
    /// Largest WebSocket message in bytes (close 1009 beyond it).
    pub max_message_size: usize,
    /// Largest single WebSocket frame payload in bytes.
    pub max_frame_size: usize,
    /// Per-connection read buffer; small on purpose so idle connections stay cheap.
    pub read_buffer_size: usize,
    /// `SO_SNDBUF` of every accepted client socket, in bytes (Linux doubles it for its own
    /// bookkeeping and caps it at `net.core.wmem_max`). Small, so a stalled client's backlog
    /// waits in the gateway's bounded queues instead of kernel memory; 0 leaves the
    /// kernel's autotuning (up to `net.ipv4.tcp_wmem`'s maximum, 4 MiB by default).
    pub socket_send_buffer: usize,
    /// Silence after which the gateway pings; after twice this with no answer it closes.
    /// Zero disables.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Messages queued for one client before the bridge is held back or told it is full.
    pub outgoing_queue: usize,
    /// How long shutdown waits for sessions to finish before exiting.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Session handshakes (WebSocket upgrades and HTTP fallback session opens) one client
    /// IP may start per second, on average; over it they get HTTP 429 with `Retry-After`.
    /// 0 turns the limit off.
    pub handshakes_per_ip_per_second: f64,
    /// Handshakes one client IP may start at once after being quiet (the bucket's size).
    pub handshake_burst_per_ip: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_connections: 19_500,
            max_connections_per_ip: 19_500,
            handshake_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_message_size: 4 * 1024 * 1024,
            max_frame_size: 4 * 1024 * 1024,
            read_buffer_size: 1024,
            socket_send_buffer: 64 * 1024,
            idle_timeout: Duration::from_secs(60),
            outgoing_queue: 256,
            drain_timeout: Duration::from_secs(10),
            // Off: many clients behind one NAT, or a dashboard fleet reconnecting after a
            // restart, would be refused by a default they never chose.
            handshakes_per_ip_per_second: 0.0,
            handshake_burst_per_ip: 20,
        }
    }
}

impl LimitsConfig {
    /// Values that parse but cannot work, named by key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let rate = self.handshakes_per_ip_per_second;
        if !rate.is_finite() || rate < 0.0 {
            return Err(ConfigError::Key {
                key: "limits.handshakes_per_ip_per_second".into(),
                message: format!("must be 0 (off) or a positive number, not {rate}"),
            });
        }
        if rate > 0.0 && self.handshake_burst_per_ip == 0 {
            return Err(ConfigError::Key {
                key: "limits.handshake_burst_per_ip".into(),
                message: "must be at least 1 while handshakes_per_ip_per_second is on".into(),
            });
        }
        Ok(())
    }

    pub fn handshake_rate(&self) -> crate::handshake_rate::RateLimits {
        crate::handshake_rate::RateLimits {
            per_second: self.handshakes_per_ip_per_second,
            burst: self.handshake_burst_per_ip,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    /// Names the service in logs and metrics; unique.
    pub name: String,
    /// URL path; several services may share one and are told apart by subprotocol.
    pub path: String,
    /// The bridge kind serving it (`echo`, `tcp`, ...).
    pub bridge: String,
    /// Accept clients that offer no subprotocol.
    #[serde(default)]
    pub allow_no_subprotocol: bool,
    /// Origins allowed besides the page's own: exact (`https://a.example.com`),
    /// wildcard (`https://*.example.com`) or `*`.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Accept clients that send no Origin header (non-browser clients).
    #[serde(default)]
    pub allow_missing_origin: bool,
    #[serde(default)]
    pub require_auth: bool,
    /// The principal must hold every one of these roles; implies `require_auth`.
    #[serde(default)]
    pub require_roles: Vec<String>,
    /// The bridge's own settings; it rejects keys it does not know.
    #[serde(default = "empty_table")]
    pub settings: serde_json::Value,
    /// permessage-deflate; off without this table.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<crate::deflate::CompressionConfig>,
}

fn empty_table() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}
