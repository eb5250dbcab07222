//! `[http_fallback]`: the server-sent events + POST transport beside WebSocket.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{bytesize, ConfigError, LimitsConfig};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpFallbackConfig {
    /// Serve `P/sessions...` beside every service path P.
    pub enabled: bool,
    /// The older name of `server.node` (see `config/node.rs`); empty once resolved.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// A session with no open event stream for this long ends.
    #[serde(with = "humantime_serde")]
    pub grace: Duration,
    /// `: keepalive` comment on an idle event stream this often.
    #[serde(with = "humantime_serde")]
    pub keepalive: Duration,
    /// An event stream ends (the client reconnects) after this many bytes.
    #[serde(with = "bytesize")]
    pub stream_bytes: usize,
    /// Sent but unacknowledged events kept per session for resumption.
    #[serde(with = "bytesize")]
    pub replay_bytes: usize,
    /// Largest POST body; unset: 4 × `limits.max_message_size`, at least 1 MiB.
    #[serde(with = "bytesize::option", skip_serializing_if = "Option::is_none")]
    pub max_post_bytes: Option<usize>,
    /// Open fallback sessions at most; unset: `limits.max_connections`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_sessions: Option<usize>,
}

impl Default for HttpFallbackConfig {
    fn default() -> Self {
        HttpFallbackConfig {
            enabled: true,
            node: None,
            grace: Duration::from_secs(30),
            keepalive: Duration::from_secs(15),
            stream_bytes: 1024 * 1024,
            replay_bytes: 256 * 1024,
            max_post_bytes: None,
            max_sessions: None,
        }
    }
}

impl HttpFallbackConfig {
    pub fn max_post_bytes(&self, limits: &LimitsConfig) -> usize {
        self.max_post_bytes
            .unwrap_or_else(|| limits.max_message_size.saturating_mul(4).max(1024 * 1024))
    }

    pub fn max_sessions(&self, limits: &LimitsConfig) -> usize {
        self.max_sessions.unwrap_or(limits.max_connections)
    }

    /// Values that parse but cannot work, named by key.
    pub fn validate(&self, limits: &LimitsConfig) -> Result<(), ConfigError> {
        let fail = |key: &str, message: String| {
            Err(ConfigError::Key {
                key: format!("http_fallback.{key}"),
                message,
            })
        };
        if self.grace.is_zero() {
            return fail("grace", "must be more than 0s".into());
        }
        if self.keepalive.is_zero() {
            return fail("keepalive", "must be more than 0s".into());
        }
        if self.stream_bytes < 1024 {
            return fail("stream_bytes", "must be at least 1024 bytes".into());
        }
        if self.replay_bytes < 1024 {
            return fail("replay_bytes", "must be at least 1024 bytes".into());
        }
        if self.max_post_bytes(limits) < 64 {
            return fail("max_post_bytes", "must be at least 64 bytes".into());
        }
        match self.max_sessions {
            Some(0) => return fail("max_sessions", "must be at least 1".into()),
            Some(n) if n > limits.max_connections => {
                return fail(
                    "max_sessions",
                    format!(
                        "{n} exceeds limits.max_connections ({})",
                        limits.max_connections
                    ),
                )
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_derived_limits() {
        let c = HttpFallbackConfig::default();
        let limits = LimitsConfig::default();
        assert!(c.enabled && c.node.is_none());
        assert_eq!(c.max_post_bytes(&limits), 16 * 1024 * 1024);
        let small = LimitsConfig {
            max_message_size: 1000,
            ..LimitsConfig::default()
        };
        assert_eq!(c.max_post_bytes(&small), 1024 * 1024);
        assert_eq!(c.max_sessions(&limits), limits.max_connections);
        assert!(c.validate(&limits).is_ok());
    }

    #[test]
    fn bad_values_name_their_key() {
        let limits = LimitsConfig::default();
        let err = |c: HttpFallbackConfig| c.validate(&limits).unwrap_err().to_string();
        let base = HttpFallbackConfig::default;
        assert!(err(HttpFallbackConfig {
            grace: Duration::ZERO,
            ..base()
        })
        .contains("http_fallback.grace"));
        assert!(err(HttpFallbackConfig {
            max_sessions: Some(limits.max_connections + 1),
            ..base()
        })
        .contains("http_fallback.max_sessions"));
    }
}
