pub use bridge_api::Credentials;
use bridge_tls::TlsSettings;
use serde::Deserialize;

/// `[service.settings]` of an `amqp` service.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmqpSettings {
    /// RabbitMQ, as an AMQP URI: `amqp://user:pass@host:port/vhost` (`amqps://` for TLS).
    #[serde(default = "default_backend")]
    pub backend: String,
    /// `[service.settings.tls]`: trust and client certificate for an `amqps://` backend.
    #[serde(default)]
    pub tls: TlsSettings,
    /// Broker connections of the service; client channels are multiplexed on them.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    #[serde(default)]
    pub credentials: Credentials,
    /// Channel-max offered to clients; also what one client may hold of the pool's channels.
    #[serde(default = "default_max_channels")]
    pub max_channels: u16,
    /// Frame-max offered to clients, overhead included.
    #[serde(default = "default_frame_max")]
    pub frame_max: u32,
    #[serde(default = "default_max_body_size")]
    pub max_body_size: u64,
    /// Heart-beat offered to clients in seconds; a client may ask for less, 0 = none.
    #[serde(default = "default_heartbeat")]
    pub heartbeat: u16,
    /// Deliveries in flight from the broker to a no-ack consumer: the gateway acknowledges
    /// them itself as the client's queue takes them, so a stalled client holds at most this.
    #[serde(default = "default_no_ack_window")]
    pub no_ack_window: u16,
    /// The most unacknowledged deliveries a consumer may hold (basic.qos): a client asking
    /// for more, or for no limit, gets this, so a client that stops reading holds at most
    /// this many messages at the gateway per consumer.
    #[serde(default = "default_max_prefetch")]
    pub max_prefetch: u16,
    /// Plugin exchange types (`x-...`) clients may declare, beside direct, fanout, topic and
    /// headers. RabbitMQ answers an unknown type with a connection error, which would close
    /// a pooled connection shared by other clients, so only types the broker has are let
    /// through; the rest get 503 COMMAND_INVALID on the client's own connection.
    #[serde(default)]
    pub exchange_types: Vec<String>,
    /// Whether a broker outage turns the gateway's `/readyz` 503 (upgrades to this service
    /// are refused with 503 either way). Off for a service that is optional, such as the
    /// built-in default on a machine without RabbitMQ.
    #[serde(default = "yes")]
    pub gate_readiness: bool,
    #[serde(default)]
    pub acl: Vec<AclRule>,
}

/// RabbitMQ's permission model, per role: names matching `configure` may be declared and
/// deleted, `write` published to (exchanges) and bound to (queues), `read` consumed from
/// (queues) and bound from (exchanges).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AclRule {
    pub roles: Vec<String>,
    #[serde(default)]
    pub configure: Vec<String>,
    #[serde(default)]
    pub write: Vec<String>,
    #[serde(default)]
    pub read: Vec<String>,
}

fn default_backend() -> String {
    "amqp://guest:guest@127.0.0.1:5672/%2f".into()
}
fn default_pool_size() -> usize {
    4
}
fn default_max_channels() -> u16 {
    64
}
fn default_frame_max() -> u32 {
    131_072
}
fn default_max_body_size() -> u64 {
    16 * 1024 * 1024
}
fn default_heartbeat() -> u16 {
    60
}
fn default_no_ack_window() -> u16 {
    64
}
fn default_max_prefetch() -> u16 {
    1000
}
fn yes() -> bool {
    true
}

impl AmqpSettings {
    /// The first setting that makes no sense, as (key, why).
    pub fn validate(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, why: &str| Err((k.to_string(), why.to_string()));
        if self.pool_size == 0 || self.pool_size > 64 {
            return bad("pool_size", "must be 1 to 64");
        }
        if self.max_channels == 0 {
            return bad("max_channels", "must be at least 1");
        }
        if self.frame_max < protocol_amqp::FRAME_MIN_SIZE {
            return bad(
                "frame_max",
                "must be at least 4096 (the spec's frame-min-size)",
            );
        }
        if self.max_body_size == 0 {
            return bad("max_body_size", "must be at least 1");
        }
        if self.max_prefetch == 0 {
            return bad("max_prefetch", "must be at least 1");
        }
        if self.no_ack_window == 0 {
            return bad("no_ack_window", "must be at least 1");
        }
        Ok(())
    }
}
