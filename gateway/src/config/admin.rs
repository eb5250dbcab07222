//! `[admin]`: the admin listener (metrics, health) and the token that opens its API.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize, Serializer};

use super::ConfigError;
use crate::auth::REDACTED;

#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// `/metrics`, `/healthz`, `/readyz` and the admin API, kept off the public port.
    pub listen: SocketAddr,
    /// Bearer token for `/api/...`; without it (or `token_file`) the API is off.
    #[serde(
        serialize_with = "serialize_redacted",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<String>,
    /// File holding the token (trailing whitespace ignored), so it stays out of the TOML.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: ([127, 0, 0, 1], 9090).into(),
            token: None,
            token_file: None,
        }
    }
}

impl std::fmt::Debug for AdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminConfig")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| REDACTED))
            .field("token_file", &self.token_file)
            .finish()
    }
}

impl AdminConfig {
    /// The API token, read from `token_file` if that is where it is; `None`: the API is off.
    pub fn resolve_token(&self) -> Result<Option<String>, ConfigError> {
        let (key, token) = match (&self.token, &self.token_file) {
            (Some(_), Some(_)) => {
                return Err(key_error(
                    "admin.token_file",
                    "admin.token is set too; give one of them",
                ))
            }
            (Some(t), None) => ("admin.token", t.clone()),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    key_error("admin.token_file", format!("{}: {e}", path.display()))
                })?;
                ("admin.token_file", text.trim_end().to_string())
            }
            (None, None) => return Ok(None),
        };
        check_token(&token).map_err(|m| key_error(key, m))?;
        Ok(Some(token))
    }
}

/// A bearer token travels in an HTTP header: visible ASCII, no spaces. Empty would let
/// anyone in, and the redaction marker is what a copied `--check-config` output holds.
fn check_token(token: &str) -> Result<(), &'static str> {
    if token.is_empty() {
        return Err("the token is empty");
    }
    if token == REDACTED {
        return Err("the token is the redaction marker: put the real token here");
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "the token must be visible ASCII without spaces (it is sent in an HTTP header)",
        );
    }
    Ok(())
}

fn key_error(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Key {
        key: key.into(),
        message: message.into(),
    }
}

fn serialize_redacted<S: Serializer>(secret: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
    match secret {
        Some(_) => s.serialize_some(REDACTED),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn cfg(token: Option<&str>, file: Option<PathBuf>) -> AdminConfig {
        AdminConfig {
            token: token.map(str::to_string),
            token_file: file,
            ..AdminConfig::default()
        }
    }

    #[test]
    fn no_token_no_api() {
        assert_eq!(cfg(None, None).resolve_token().unwrap(), None);
    }

    #[test]
    fn token_from_the_file_without_its_newline() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        writeln!(f, "s3cret-token").unwrap();
        let got = cfg(None, Some(f.path().into())).resolve_token().unwrap();
        assert_eq!(got.as_deref(), Some("s3cret-token"));
    }

    #[test]
    fn bad_tokens_name_their_key() {
        let err = |c: AdminConfig| c.resolve_token().unwrap_err().to_string();
        assert!(err(cfg(Some(""), None)).contains("admin.token"));
        assert!(err(cfg(Some("two words"), None)).contains("visible ASCII"));
        assert!(err(cfg(Some(REDACTED), None)).contains("redaction marker"));
        assert!(err(cfg(Some("a"), Some("/x".into()))).contains("admin.token_file"));
        let missing = err(cfg(None, Some("/nonexistent/token".into())));
        assert!(missing.contains("admin.token_file") && missing.contains("/nonexistent/token"));
    }

    #[test]
    fn the_token_is_never_printed() {
        let c = cfg(Some("s3cret-token"), None);
        let json = serde_json::to_string(&c).unwrap();
        assert!(
            !json.contains("s3cret") && json.contains(REDACTED),
            "{json}"
        );
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
