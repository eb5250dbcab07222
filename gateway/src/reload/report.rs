//! What a reload did, or why it was refused; both serialize as the admin API's answer.

use serde::Serialize;

use crate::error::StartupError;
use crate::services::ServiceChanges;

#[derive(Debug, Clone, Serialize)]
pub struct ReloadReport {
    /// Keys whose new values are in force (besides services), e.g. `limits.max_connections`.
    /// Files named by the configuration (certificate, key, realm, JWT public key) are read
    /// again on every reload, changed keys or not.
    pub applied: Vec<String>,
    /// Keys whose new values wait for a restart; the old ones stay in force.
    pub restart_required: Vec<String>,
    pub services: ServiceChanges,
    /// Live sessions the new realm ended (a user removed or given other roles).
    pub sessions_revoked: usize,
}

/// A new configuration refused; the old one stays in force entirely.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct ReloadError {
    /// The configuration key at fault, when the error names one (e.g. `server.tls.cert`).
    pub key: Option<String>,
    /// The same text start-up would print for this configuration.
    pub message: String,
}

/// The HTTP answer to a reload request (the admin API's `POST`): 200 with the report, or
/// 422 with `{"error", "key"}`; the configuration in force is unchanged in that case.
pub fn answer(result: &Result<ReloadReport, ReloadError>) -> (http::StatusCode, serde_json::Value) {
    match result {
        Ok(report) => (
            http::StatusCode::OK,
            serde_json::to_value(report).unwrap_or_default(),
        ),
        Err(e) => (
            http::StatusCode::UNPROCESSABLE_ENTITY,
            serde_json::json!({ "error": e.message, "key": e.key }),
        ),
    }
}

impl From<StartupError> for ReloadError {
    fn from(e: StartupError) -> Self {
        ReloadError {
            key: failing_key(&e),
            message: e.to_string(),
        }
    }
}

/// Every start-up error text begins with the key it is about (`server.tls.cert: ...`,
/// `auth.realm_file /etc/realm.toml: ...`); the typed ones say it outright.
fn failing_key(e: &StartupError) -> Option<String> {
    match e {
        StartupError::Config(crate::config::ConfigError::Key { key, .. }) => Some(key.clone()),
        StartupError::Config(crate::config::ConfigError::Source(_)) => None,
        StartupError::Service(s) => Some(s.at.clone()),
        other => leading_key(&other.to_string()),
    }
}

fn leading_key(text: &str) -> Option<String> {
    let head = text.split([':', ' ']).next()?;
    let looks_like_key = head.contains('.')
        && head.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| {
                    b.is_ascii_lowercase()
                        || b.is_ascii_digit()
                        || b == b'_'
                        || b == b'['
                        || b == b']'
                })
        });
    looks_like_key.then(|| head.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn keys_come_from_the_error() {
        let key = |e: StartupError| ReloadError::from(e).key;
        assert_eq!(
            key(StartupError::StaticDir(PathBuf::from("/nope"))).as_deref(),
            Some("server.static_dir")
        );
        assert_eq!(
            key(StartupError::Config(crate::config::ConfigError::Key {
                key: "limits.max_connections".into(),
                message: "invalid type".into()
            }))
            .as_deref(),
            Some("limits.max_connections")
        );
        assert_eq!(
            key(StartupError::Tls(crate::tls::TlsError::NoPrivateKey(
                "k.pem".into()
            )))
            .as_deref(),
            Some("server.tls.key")
        );
        assert_eq!(
            leading_key("auth.realm_file /x: bad"),
            Some("auth.realm_file".into())
        );
        assert_eq!(
            leading_key("service[2].settings.target: bad"),
            Some("service[2].settings.target".into())
        );
        assert_eq!(leading_key("cannot print configuration: x"), None);
    }
}
