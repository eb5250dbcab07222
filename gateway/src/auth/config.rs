//! The `[auth]` configuration section.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize, Serializer};

/// What `Serialize` prints instead of a secret, so the effective configuration can be shown.
pub const REDACTED: &str = "<redacted>";

/// Handshake authentication settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// TOML file of `[[user]]` entries (name, password_hash, roles).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm_file: Option<PathBuf>,
    /// Name of the cookie that may carry a JWT.
    pub cookie: String,
    /// JWT verification; `None` disables bearer, query and cookie tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtConfig>,
    /// How long a successful realm login is remembered (keyed by a keyed hash of user and
    /// password), so a repeat login skips the password hash. Zero turns the cache off.
    #[serde(with = "humantime_serde")]
    pub login_cache_ttl: Duration,
    /// Most realm logins remembered at once; 0 turns the cache off.
    pub login_cache_size: usize,
    /// Most verified JWTs remembered (each until its `exp`); 0 turns the cache off.
    pub token_cache_size: usize,
    /// Password hashes computed at once; default: one per CPU.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrent_hashes: Option<usize>,
    /// Logins allowed to wait for a hashing slot; beyond that they are refused at once
    /// (HTTP 503, or the bridge's "try again").
    pub max_waiting_hashes: usize,
    /// Longest a login waits for a hashing slot before it is refused the same way.
    #[serde(with = "humantime_serde")]
    pub hash_wait_timeout: Duration,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            realm_file: None,
            cookie: "access_token".to_owned(),
            jwt: None,
            login_cache_ttl: Duration::from_secs(60),
            login_cache_size: 10_000,
            token_cache_size: 10_000,
            max_concurrent_hashes: None,
            max_waiting_hashes: 1_000,
            hash_wait_timeout: Duration::from_secs(5),
        }
    }
}

impl AuthConfig {
    /// `max_concurrent_hashes`, or the number of CPUs.
    pub fn hash_threads(&self) -> usize {
        self.max_concurrent_hashes
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(4, |n| n.get()))
    }
}

/// JWT verification settings. At least one key must be given.
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Shared secret for HS256 tokens (raw bytes of the string). Serialized as `<redacted>`.
    #[serde(
        serialize_with = "serialize_redacted",
        skip_serializing_if = "Option::is_none"
    )]
    pub hs256_secret: Option<String>,
    /// PEM file holding an RSA public key (SPKI `PUBLIC KEY`) for RS256 tokens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rs256_public_key: Option<PathBuf>,
    /// Required `iss` value, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Required `aud` value (one of the token's audiences), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Claim holding the roles: an array of strings or one space-separated string.
    pub roles_claim: String,
    /// Clock skew allowed when checking `exp` and `nbf`.
    #[serde(with = "humantime_serde")]
    pub leeway: Duration,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            hs256_secret: None,
            rs256_public_key: None,
            issuer: None,
            audience: None,
            roles_claim: "roles".to_owned(),
            leeway: Duration::ZERO,
        }
    }
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtConfig")
            .field(
                "hs256_secret",
                &self.hs256_secret.as_ref().map(|_| REDACTED),
            )
            .field("rs256_public_key", &self.rs256_public_key)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("roles_claim", &self.roles_claim)
            .field("leeway", &self.leeway)
            .finish()
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

    #[test]
    fn defaults() {
        let cfg = AuthConfig::default();
        assert_eq!(cfg.cookie, "access_token");
        assert!(cfg.realm_file.is_none() && cfg.jwt.is_none());
        let jwt = JwtConfig::default();
        assert_eq!(jwt.roles_claim, "roles");
        assert_eq!(jwt.leeway, Duration::ZERO);
    }

    #[test]
    fn deserializes_with_defaults_and_humantime_leeway() {
        let cfg: AuthConfig = toml::from_str(
            r#"
            realm_file = "/etc/gw/realm.toml"
            [jwt]
            hs256_secret = "s3cret"
            leeway = "30s"
            "#,
        )
        .expect("valid config");
        assert_eq!(cfg.cookie, "access_token");
        let jwt = cfg.jwt.expect("jwt section");
        assert_eq!(jwt.leeway, Duration::from_secs(30));
        assert_eq!(jwt.roles_claim, "roles");
        assert_eq!(jwt.hs256_secret.as_deref(), Some("s3cret"));
    }

    #[test]
    fn login_cache_and_hashing_settings() {
        let cfg = AuthConfig::default();
        assert_eq!(cfg.login_cache_ttl, Duration::from_secs(60));
        assert_eq!(
            (cfg.login_cache_size, cfg.token_cache_size),
            (10_000, 10_000)
        );
        assert!(cfg.hash_threads() >= 1);
        let cfg: AuthConfig = toml::from_str(
            r#"
            login_cache_ttl = "5m"
            login_cache_size = 0
            token_cache_size = 50
            max_concurrent_hashes = 3
            max_waiting_hashes = 7
            hash_wait_timeout = "250ms"
            "#,
        )
        .expect("valid config");
        assert_eq!(cfg.login_cache_ttl, Duration::from_secs(300));
        assert_eq!((cfg.login_cache_size, cfg.token_cache_size), (0, 50));
        assert_eq!((cfg.hash_threads(), cfg.max_waiting_hashes), (3, 7));
        assert_eq!(cfg.hash_wait_timeout, Duration::from_millis(250));
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml::from_str::<AuthConfig>("cookies = \"x\"").expect_err("unknown key");
        assert!(err.to_string().contains("cookies"), "{err}");
        let err = toml::from_str::<AuthConfig>("[jwt]\nsecret = \"x\"").expect_err("unknown key");
        assert!(err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn secret_is_redacted_when_printed() {
        let cfg = AuthConfig {
            jwt: Some(JwtConfig {
                hs256_secret: Some("topsecret".to_owned()),
                leeway: Duration::from_secs(5),
                ..JwtConfig::default()
            }),
            ..AuthConfig::default()
        };
        let json = serde_json::to_string(&cfg).expect("serializes");
        assert!(!json.contains("topsecret"), "{json}");
        assert!(json.contains(REDACTED) && json.contains("\"5s\""), "{json}");
        let text = toml::to_string(&cfg).expect("serializes as TOML");
        assert!(!text.contains("topsecret"), "{text}");
        let debug = format!("{cfg:?}");
        assert!(!debug.contains("topsecret"), "{debug}");
    }
}
