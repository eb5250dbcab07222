//! `[log]`: how the gateway writes its log to stderr.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Fixed at start-up: a reload does not switch formats mid-stream, so a log shipper
    /// never sees two kinds of lines from one process.
    pub format: LogFormat,
    /// Which events are written; `RUST_LOG`, when set, takes its place.
    pub level: LogLevel,
    /// Put every line a session's bridge logs in a span with the session's id, service,
    /// principal and peer. Unset: on for `json`, off for `text`. The span costs about
    /// 2.5 KiB per open session (tracing's span storage), a third of an idle
    /// connection's memory, so the default human-readable log does without it (the
    /// gateway's own session lines name the session either way). Fixed at start-up.
    pub session_fields: Option<bool>,
}

impl LogConfig {
    pub fn session_fields(&self) -> bool {
        self.session_fields
            .unwrap_or(self.format == LogFormat::Json)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event, with the session's fields in front.
    #[default]
    Text,
    /// One JSON object per line, session fields flattened into it.
    Json,
}

/// An `EnvFilter` directive list (`info`, `warn,bridge_stomp=debug`), checked when the
/// configuration is read so a typo is refused with its key instead of silencing the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogLevel(String);

impl LogLevel {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for LogLevel {
    fn default() -> Self {
        LogLevel("info".into())
    }
}

impl TryFrom<String> for LogLevel {
    type Error = crate::logging::LogError;

    fn try_from(spec: String) -> Result<Self, Self::Error> {
        crate::logging::check_level(&spec)?;
        Ok(LogLevel(spec))
    }
}

impl From<LogLevel> for String {
    fn from(level: LogLevel) -> String {
        level.0
    }
}
