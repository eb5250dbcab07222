use serde::de::DeserializeOwned;
use serde::Deserialize;

/// A bridge's settings did not parse; `path` names the offending key.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct SettingsError {
    pub path: String,
    pub message: String,
}

impl SettingsError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        SettingsError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Deserialize a bridge's settings table, naming the key when it fails. Bridges declare
/// their settings with `#[serde(deny_unknown_fields)]` so typos are errors, not silence.
pub fn parse_settings<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, SettingsError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        SettingsError::new(
            if path == "." { String::new() } else { path },
            e.into_inner().to_string(),
        )
    })
}

/// Who logs in to a broker behind a bridge (`credentials = "service" | "pass-through"`), the
/// same choice in every bridge that has a broker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credentials {
    /// The gateway logs in once per pooled connection as the backend URI's user and checks
    /// clients' logins itself (its realm, or the handshake's identity).
    #[default]
    Service,
    /// Each client's login is the broker's to check, on a broker connection of its own.
    PassThrough,
}
