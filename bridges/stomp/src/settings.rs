//! The STOMP bridge's settings (`[service.settings]` of a `bridge = "stomp"` service).

use std::time::Duration;

pub use bridge_api::Credentials;
use bridge_tls::TlsSettings;
use serde::Deserialize;

use crate::backend::uri::BackendUri;
use crate::inbox::{ConflateKey, Policy};

fn heart_beat_floor() -> u64 {
    1000
}
fn grace() -> f64 {
    2.0
}
fn max_frame_size() -> usize {
    8 * 1024 * 1024
}
fn max_subscriptions() -> usize {
    512
}
fn subscription_queue() -> usize {
    1024
}
fn max_queue_depth() -> usize {
    100_000
}
fn max_transaction_frames() -> usize {
    10_000
}
fn pool_size() -> usize {
    2
}

/// Whose identity the RabbitMQ backend uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StompSettings {
    /// `embedded` (the in-process broker), `amqp://user:pass@host:port/vhost` (RabbitMQ) or
    /// `stomp://user:pass@host:port` (a STOMP broker such as ActiveMQ).
    #[serde(default)]
    pub backend: BackendUri,
    /// `[service.settings.tls]`: trust and client certificate for an `amqps://` or
    /// `stomp+ssl://` backend, this service's alone.
    #[serde(default)]
    pub tls: TlsSettings,
    /// RabbitMQ: connections per service; channels are multiplexed on them.
    #[serde(default = "pool_size")]
    pub pool_size: usize,
    /// RabbitMQ or STOMP broker: `service` (the URI's user) or `pass-through` (each client's login).
    #[serde(default)]
    pub credentials: Credentials,
    /// Refuse CONNECT without valid login/passcode when the handshake carried no identity.
    #[serde(default)]
    pub require_login: bool,
    /// `[sx, sy]` in ms, the gateway's own side of the heart-beat negotiation (STOMP 1.1
    /// §Heart-beating): it can send every `sx`, wants to hear from the client every `sy`;
    /// 0 = never. Unset: `[heart_beat_floor, heart_beat_floor]`, so a client gets the
    /// intervals it asks for, but none shorter than the floor. See [`Self::heart_beat`].
    #[serde(default, rename = "heart_beat")]
    pub heart_beat_setting: Option<[u64; 2]>,
    /// ms: the shortest heart-beat interval the gateway grants or asks for, either way.
    #[serde(default = "heart_beat_floor")]
    pub heart_beat_floor: u64,
    /// A client silent for this many heart-beat intervals is disconnected.
    #[serde(default = "grace")]
    pub heart_beat_grace: f64,
    #[serde(default = "max_frame_size")]
    pub max_frame_size: usize,
    #[serde(default = "max_subscriptions")]
    pub max_subscriptions: usize,
    /// Messages queued per subscription before its slow-consumer policy applies.
    #[serde(default = "subscription_queue")]
    pub subscription_queue: usize,
    /// Messages an embedded queue holds before SENDs to it are refused.
    #[serde(default = "max_queue_depth")]
    pub max_queue_depth: usize,
    /// Frames one transaction may hold before COMMIT.
    #[serde(default = "max_transaction_frames")]
    pub max_transaction_frames: usize,
    /// Slow-consumer policies by destination prefix; the first matching rule wins.
    #[serde(default, rename = "policy")]
    pub policies: Vec<PolicyRule>,
    /// Topic prefixes whose messages the gateway numbers and remembers, for last-value
    /// snapshots and resume after a reconnect (see `crate::stream`).
    #[serde(default, rename = "stream")]
    pub streams: Vec<StreamRule>,
    /// The built-in demo price feed.
    #[serde(default)]
    pub demo: Option<DemoSettings>,
    /// RabbitMQ: the queue type `/queue/` destinations are declared with, by prefix
    /// (`{ "/queue/orders." = "quorum" }`; the longest prefix wins).
    #[serde(default)]
    pub queue_types: crate::queue_types::QueueTypes,
    /// Destination ACL: which roles may SEND and SUBSCRIBE where. None configured: all
    /// allowed; otherwise a frame needs a rule for one of the client's roles.
    #[serde(default)]
    pub acl: Vec<crate::acl::AclRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PolicyKind {
    Disconnect,
    DropOldest,
    Conflate,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// Destination prefix, e.g. `/topic/prices.` or `/queue/`.
    pub destination: String,
    pub policy: PolicyKind,
    /// Queue bound for matching subscriptions (default: `subscription_queue`).
    #[serde(default)]
    pub queue: Option<usize>,
    /// For `conflate`: `destination`, or the name of a header such as `symbol`.
    #[serde(default)]
    pub conflate_key: Option<String>,
}

fn stream_history() -> usize {
    10_000
}
fn stream_history_age() -> Duration {
    Duration::from_secs(300)
}
fn stream_snapshot_keys() -> usize {
    10_000
}

/// Whether a subscription inside a stream gets the snapshot without asking.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SnapshotMode {
    /// Only with the SUBSCRIBE header `snapshot:true`.
    #[default]
    OnRequest,
    Always,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamRule {
    /// Topic prefix ending at a word boundary, e.g. `/topic/prices.` (or `/topic/` for all).
    pub destination: String,
    /// Messages kept for resume, at most...
    #[serde(default = "stream_history")]
    pub history: usize,
    /// ...and for at most this long.
    #[serde(with = "humantime_serde", default = "stream_history_age")]
    pub history_age: Duration,
    /// Last values kept for snapshots (one per conflation key); the least recently
    /// updated key goes first.
    #[serde(default = "stream_snapshot_keys")]
    pub snapshot_keys: usize,
    /// `destination` (the default) or a header name such as `symbol`.
    #[serde(default)]
    pub conflate_key: Option<String>,
    #[serde(default)]
    pub snapshot: SnapshotMode,
}

impl StreamRule {
    /// The routing-key prefix under `/topic/` ("prices." for `/topic/prices.`).
    pub fn key_prefix(&self) -> &str {
        self.destination.strip_prefix("/topic/").unwrap_or("")
    }
}

fn demo_symbols() -> Vec<String> {
    [
        "AAPL", "MSFT", "GOOG", "AMZN", "NVDA", "TSLA", "META", "IBM",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
fn demo_interval() -> Duration {
    Duration::from_millis(250)
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoSettings {
    /// Publishes simulated prices to `/topic/prices.SYMBOL`.
    #[serde(default = "demo_symbols")]
    pub symbols: Vec<String>,
    #[serde(with = "humantime_serde", default = "demo_interval")]
    pub interval: Duration,
}

impl StompSettings {
    pub fn validate(&self) -> Result<(), (String, String)> {
        if !self.tls.is_default() && !self.backend.is_tls() {
            return Err((
                "tls".into(),
                format!(
                    "TLS settings apply to an amqps:// or stomp+ssl:// backend; the backend is {:?}",
                    self.backend
                ),
            ));
        }
        if !self.backend.is_embedded() && self.demo.is_some() {
            return Err((
                "demo".into(),
                "the demo feed runs on the embedded backend only".into(),
            ));
        }
        for (i, rule) in self.streams.iter().enumerate() {
            let at = |field: &str| format!("stream[{i}].{field}");
            let Some(key) = rule.destination.strip_prefix("/topic/") else {
                return Err((at("destination"), "a stream is a /topic/ prefix".into()));
            };
            if !(key.is_empty() || key.ends_with('.'))
                || key.split('.').any(|w| w.contains('*') || w.contains('#'))
            {
                return Err((
                    at("destination"),
                    "a stream prefix ends at a word boundary (e.g. /topic/prices.) and has no wildcards".into(),
                ));
            }
            if rule.history == 0 && rule.snapshot_keys == 0 {
                return Err((
                    at("history"),
                    "a stream keeps history, snapshots or both".into(),
                ));
            }
            if let Some(other) = self.streams[..i].iter().find(|o| {
                o.destination.starts_with(&rule.destination)
                    || rule.destination.starts_with(&o.destination)
            }) {
                return Err((
                    at("destination"),
                    format!(
                        "overlaps stream {:?}: a destination belongs to one stream",
                        other.destination
                    ),
                ));
            }
            if !self.backend.is_embedded() && self.credentials == Credentials::PassThrough {
                return Err((
                    at("destination"),
                    "streams on a broker backend need credentials = \"service\" (the gateway's own upstream subscription keeps them)".into(),
                ));
            }
        }
        self.queue_types
            .validate(matches!(self.backend, BackendUri::RabbitMq(_)))?;
        if !(1..=64).contains(&self.pool_size) {
            return Err(("pool_size".into(), "must be between 1 and 64".into()));
        }
        for (i, rule) in self.policies.iter().enumerate() {
            if !rule.destination.starts_with('/') {
                return Err((
                    format!("policy[{i}].destination"),
                    "must start with / (e.g. /topic/prices.)".into(),
                ));
            }
            if rule.policy == PolicyKind::Conflate && rule.conflate_key.is_none() {
                return Err((
                    format!("policy[{i}].conflate_key"),
                    "conflate needs a key: \"destination\" or a header name".into(),
                ));
            }
        }
        if self.heart_beat_floor == 0 {
            return Err((
                "heart_beat_floor".into(),
                "must be at least 1 (ms); heart_beat = [0, 0] turns heart-beats off".into(),
            ));
        }
        if let Some(hb) = self.heart_beat_setting {
            for (i, v) in hb.into_iter().enumerate() {
                if v != 0 && v < self.heart_beat_floor {
                    return Err((
                        format!("heart_beat[{i}]"),
                        format!(
                            "{v} ms is below heart_beat_floor ({} ms); lower the floor too, or use 0 for never",
                            self.heart_beat_floor
                        ),
                    ));
                }
            }
        }
        if self.heart_beat_grace < 1.0 {
            return Err(("heart_beat_grace".into(), "must be at least 1.0".into()));
        }
        Ok(())
    }

    /// The gateway's `[sx, sy]` for the heart-beat negotiation: the `heart_beat` setting, or
    /// the floor both ways when it is unset.
    pub fn heart_beat(&self) -> [u64; 2] {
        self.heart_beat_setting
            .unwrap_or([self.heart_beat_floor, self.heart_beat_floor])
    }

    /// The queue bound and policy for a subscription to `destination`.
    pub fn policy_for(&self, destination: &str) -> (usize, Policy) {
        if let Some(rule) = self
            .policies
            .iter()
            .find(|r| destination.starts_with(&r.destination))
        {
            let policy = match rule.policy {
                PolicyKind::Disconnect => Policy::Disconnect,
                PolicyKind::DropOldest => Policy::DropOldest,
                PolicyKind::Conflate => Policy::Conflate(match rule.conflate_key.as_deref() {
                    None | Some("destination") => ConflateKey::Destination,
                    Some(h) => ConflateKey::Header(h.to_string()),
                }),
            };
            return (rule.queue.unwrap_or(self.subscription_queue), policy);
        }
        // Queues never lose messages (the broker keeps them); a topic subscriber that
        // falls behind loses the oldest ones rather than slowing everyone.
        let policy = if destination.starts_with("/topic/") {
            Policy::DropOldest
        } else {
            Policy::Disconnect
        };
        (self.subscription_queue, policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(v: serde_json::Value) -> StompSettings {
        bridge_api::parse_settings(v).expect("settings parse")
    }

    #[test]
    fn heart_beat_defaults_to_the_floor_both_ways() {
        let s = settings(serde_json::json!({}));
        assert_eq!(s.heart_beat_floor, 1000);
        assert_eq!(s.heart_beat(), [1000, 1000]);
        assert!(s.validate().is_ok());
        let s = settings(serde_json::json!({ "heart_beat_floor": 2500 }));
        assert_eq!(s.heart_beat(), [2500, 2500]);
        let s = settings(serde_json::json!({ "heart_beat": [10000, 0] }));
        assert_eq!(s.heart_beat(), [10_000, 0]);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn heart_beat_settings_are_checked() {
        let err = |v| settings(v).validate().unwrap_err();
        let (key, msg) = err(serde_json::json!({ "heart_beat_floor": 0 }));
        assert_eq!(key, "heart_beat_floor");
        assert!(msg.contains("at least 1"), "{msg}");
        let (key, msg) = err(serde_json::json!({ "heart_beat": [500, 500] }));
        assert_eq!(key, "heart_beat[0]");
        assert!(msg.contains("below heart_beat_floor (1000 ms)"), "{msg}");
        let (key, _) = err(serde_json::json!({ "heart_beat": [0, 999] }));
        assert_eq!(key, "heart_beat[1]");
        let ok = settings(serde_json::json!({ "heart_beat": [500, 0], "heart_beat_floor": 500 }));
        assert!(ok.validate().is_ok());
    }
}
