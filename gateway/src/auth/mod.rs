//! Handshake authentication: who is opening this WebSocket?
//!
//! Credentials come from the request ([`credentials`]), are checked against the file realm
//! ([`realm`]) or as a JWT ([`jwt`]), and become a [`Principal`]. The realm also serves
//! bridges as a [`CredentialCheck`] for protocol-level logins.

mod cache;
mod config;
mod credentials;
mod error;
mod hashing;
mod jwt;
mod logins;
mod metrics;
mod realm;

use std::sync::Arc;

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::Argon2;
use bridge_api::{AuthMethod, CredentialCheck, LoginRefused, Principal};
use password_hash::rand_core::OsRng;

pub use config::{AuthConfig, REDACTED};
use credentials::Credentials;
pub use error::AuthConfigError;
use hashing::HashPool;
use jwt::JwtVerifier;
use logins::{LoginError, RealmLogins};
use realm::Realm;

/// Why presented credentials were refused. `reason` is a short sentence safe to show a client.
/// `busy`: not checked at all, because too many password checks are under way; the client
/// may retry shortly (HTTP 503).
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct AuthFailure {
    pub reason: String,
    pub busy: bool,
}

impl AuthFailure {
    fn new(reason: impl Into<String>) -> Self {
        AuthFailure {
            reason: reason.into(),
            busy: false,
        }
    }

    fn busy() -> Self {
        AuthFailure {
            reason: BUSY.to_owned(),
            busy: true,
        }
    }
}

const BAD_PASSWORD: &str = "invalid username or password";
const BUSY: &str = "too many logins are being checked; try again shortly";

/// Checks handshake credentials against the configured realm and JWT keys.
pub struct Authenticator {
    /// The realm with its own login cache: a new realm starts with an empty one.
    logins: Option<Arc<RealmLogins>>,
    jwt: Option<JwtVerifier>,
    cookie: String,
    /// Keys for [`Authenticator::fingerprint`], random per process.
    fingerprints: std::collections::hash_map::RandomState,
}

impl Authenticator {
    /// Reads the realm file and key files; errors name the offending setting/file and what is wrong.
    pub fn from_config(cfg: &AuthConfig) -> Result<Authenticator, AuthConfigError> {
        let cookie_ok = !cfg.cookie.is_empty()
            && cfg
                .cookie
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
        if !cookie_ok {
            return Err(AuthConfigError::Cookie(cfg.cookie.clone()));
        }
        if cfg.max_concurrent_hashes == Some(0) {
            return Err(AuthConfigError::NoHashThreads);
        }
        let pool = Arc::new(HashPool::new(
            cfg.hash_threads(),
            cfg.max_waiting_hashes,
            cfg.hash_wait_timeout,
        ));
        let logins = match &cfg.realm_file {
            Some(path) => {
                let realm = Realm::load(path)?;
                tracing::debug!(users = realm.len(), "auth realm loaded");
                Some(Arc::new(RealmLogins::new(
                    realm,
                    pool,
                    cfg.login_cache_size,
                    cfg.login_cache_ttl,
                )))
            }
            None => None,
        };
        let jwt = match &cfg.jwt {
            Some(jwt) => Some(JwtVerifier::from_config(jwt, cfg.token_cache_size)?),
            None => None,
        };
        Ok(Authenticator {
            logins,
            jwt,
            cookie: cfg.cookie.clone(),
            // The same keys for every authenticator of the process: an HTTP fallback session
            // opened before a configuration reload still recognises its credentials after.
            fingerprints: process_fingerprint_keys(),
        })
    }

    /// Forgets every cached login and token (e.g. after the users or keys behind them
    /// changed in place). A new `Authenticator` starts with empty caches anyway.
    #[allow(dead_code)] // for reloads that swap the realm or keys inside a running one
    pub fn invalidate_caches(&self) {
        if let Some(logins) = &self.logins {
            logins.invalidate();
        }
        if let Some(jwt) = &self.jwt {
            jwt.invalidate();
        }
    }

    /// Looks at the request's credentials. Ok(None) = none presented (anonymous).
    /// Err = credentials presented but wrong/expired/unsupported; the reason is safe to show a
    /// client.
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        query: Option<&str>,
    ) -> Result<Option<Principal>, AuthFailure> {
        let creds = credentials::extract(headers, query, &self.cookie).map_err(AuthFailure::new)?;
        let result = match creds {
            None => return Ok(None),
            // A cookie is ambient: browsers send it whether or not it was meant for us, so
            // without a JWT key it is not a credential at all.
            Some(Credentials::Token {
                method: AuthMethod::Cookie,
                ..
            }) if self.jwt.is_none() => return Ok(None),
            Some(Credentials::Basic { user, password }) => {
                if self.logins.is_none() {
                    Err(AuthFailure::new(
                        "basic credentials given but no user realm is configured",
                    ))
                } else {
                    match self
                        .check_password(&user, &password, AuthMethod::Basic)
                        .await
                    {
                        Ok(p) => Ok(p),
                        Err(LoginError::Rejected) => Err(AuthFailure::new(BAD_PASSWORD)),
                        Err(LoginError::Overloaded) => Err(AuthFailure::busy()),
                    }
                }
            }
            Some(Credentials::Token { token, method }) => self.check_token(&token, method),
        };
        match &result {
            Ok(p) => tracing::debug!(user = %p.name, method = ?p.method, "authenticated"),
            Err(e) => tracing::debug!(reason = %e.reason, "authentication failed"),
        }
        result.map(Some)
    }

    /// A keyed hash of the credentials a request presents (`None`: none, as
    /// `authenticate` sees it), so later requests of an HTTP fallback session presenting the
    /// same credentials need not be checked again (a password hash per POST would be slow).
    pub fn fingerprint(&self, headers: &http::HeaderMap, query: Option<&str>) -> Option<u64> {
        use std::hash::{BuildHasher, Hash, Hasher};
        let mut h = self.fingerprints.build_hasher();
        match credentials::extract(headers, query, &self.cookie) {
            Ok(None) => return None,
            Ok(Some(Credentials::Token {
                method: AuthMethod::Cookie,
                ..
            })) if self.jwt.is_none() => return None,
            Ok(Some(Credentials::Basic { user, password })) => (0u8, user, password).hash(&mut h),
            Ok(Some(Credentials::Token { token, .. })) => (1u8, token).hash(&mut h),
            Err(reason) => (2u8, reason).hash(&mut h),
        }
        Some(h.finish())
    }

    /// The realm as a password checker that bridges can use for protocol-level logins.
    pub fn credential_check(self: &Arc<Self>) -> Arc<dyn CredentialCheck> {
        Arc::new(RealmCheck(Arc::clone(self)))
    }

    pub fn has_realm(&self) -> bool {
        self.logins.is_some()
    }

    pub fn has_jwt(&self) -> bool {
        self.jwt.is_some()
    }

    /// The realm user's roles (`None`: no such user, or no realm), for a reload to tell
    /// which live sessions the new realm no longer allows.
    pub fn realm_roles(&self, user: &str) -> Option<&[String]> {
        self.logins.as_ref()?.realm().roles(user)
    }

    fn check_token(&self, token: &str, method: AuthMethod) -> Result<Principal, AuthFailure> {
        let Some(jwt) = &self.jwt else {
            let what = match method {
                AuthMethod::Bearer => "bearer token",
                AuthMethod::QueryToken => "access_token query parameter",
                _ => "token cookie",
            };
            return Err(AuthFailure::new(format!(
                "{what} given but no JWT key is configured"
            )));
        };
        let verified = jwt.verify(token).map_err(AuthFailure::new)?;
        Ok(Principal {
            name: verified.subject,
            roles: verified.roles,
            method,
            expires_at: Some(verified.expires_at),
        })
    }

    /// Checks a password against the realm (cache, else a bounded blocking thread).
    /// Rejected if there is no realm, the user is unknown or the password is wrong.
    async fn check_password(
        &self,
        user: &str,
        password: &str,
        method: AuthMethod,
    ) -> Result<Principal, LoginError> {
        let logins = self.logins.as_ref().ok_or(LoginError::Rejected)?;
        let roles = logins.check(user, password).await?;
        Ok(Principal {
            name: user.to_owned(),
            roles: roles.to_vec(),
            method,
            expires_at: None,
        })
    }
}

fn process_fingerprint_keys() -> std::collections::hash_map::RandomState {
    static KEYS: std::sync::OnceLock<std::collections::hash_map::RandomState> =
        std::sync::OnceLock::new();
    KEYS.get_or_init(Default::default).clone()
}

/// [`CredentialCheck`] over the realm, for bridges.
struct RealmCheck(Arc<Authenticator>);

#[async_trait::async_trait]
impl CredentialCheck for RealmCheck {
    async fn check_password(&self, user: &str, password: &str) -> Option<Principal> {
        self.check_login(user, password).await.ok()
    }

    async fn check_login(&self, user: &str, password: &str) -> Result<Principal, LoginRefused> {
        match self
            .0
            .check_password(user, password, AuthMethod::Bridge)
            .await
        {
            Ok(p) => Ok(p),
            Err(LoginError::Rejected) => Err(LoginRefused::Invalid),
            Err(LoginError::Overloaded) => Err(LoginRefused::Busy),
        }
    }

    async fn check_token(&self, token: &str) -> Result<Principal, String> {
        self.0
            .check_token(token, AuthMethod::Bridge)
            .map_err(|e| e.reason)
    }
}

/// Argon2id PHC string for a password (used by `gateway hash-password`).
pub fn hash_password(password: &str) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters hashes any password shorter than 4 GiB")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::config::JwtConfig;
    use std::time::{Duration, UNIX_EPOCH};

    use base64::Engine;
    use http::{HeaderMap, HeaderValue};
    use serde_json::json;

    use jwt::tests::{hs256, now, public_key_file, rs256, TEST_HS_SECRET};
    use realm::tests::realm_toml;

    const _: fn() = || {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Authenticator>();
    };

    struct Fixture {
        _dir: tempfile::TempDir,
        auth: Arc<Authenticator>,
    }

    fn full() -> Fixture {
        with_config(AuthConfig::default())
    }

    /// Realm and both JWT keys on top of `base`.
    fn with_config(base: AuthConfig) -> Fixture {
        let (dir, key) = public_key_file();
        let realm = dir.path().join("realm.toml");
        std::fs::write(&realm, realm_toml()).expect("write realm");
        let cfg = AuthConfig {
            realm_file: Some(realm),
            cookie: "jwt".to_owned(),
            jwt: Some(JwtConfig {
                hs256_secret: Some(TEST_HS_SECRET.to_owned()),
                rs256_public_key: Some(key),
                ..JwtConfig::default()
            }),
            ..base
        };
        let auth = Authenticator::from_config(&cfg).expect("valid config");
        Fixture {
            _dir: dir,
            auth: Arc::new(auth),
        }
    }

    fn with(name: &'static str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(name, HeaderValue::from_str(value).expect("header value"));
        h
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        with("authorization", &format!("Basic {encoded}"))
    }

    fn token() -> (String, u64) {
        let exp = now() + 600;
        let claims = json!({ "sub": "bob", "exp": exp, "roles": "chat" });
        (hs256(&claims, TEST_HS_SECRET), exp)
    }

    #[tokio::test]
    async fn anonymous_when_nothing_presented() {
        let f = full();
        let got = f.auth.authenticate(&HeaderMap::new(), None).await;
        assert_eq!(got.expect("ok"), None);
        let got = f.auth.authenticate(&HeaderMap::new(), Some("a=b")).await;
        assert_eq!(got.expect("ok"), None);
        assert!(f.auth.has_realm() && f.auth.has_jwt());
    }

    #[tokio::test]
    async fn basic_against_realm() {
        let f = full();
        let p = f
            .auth
            .authenticate(&basic("alice", "alice-pw"), None)
            .await
            .expect("ok")
            .expect("principal");
        assert_eq!(
            p,
            Principal {
                name: "alice".to_owned(),
                roles: vec!["trader".to_owned(), "chat".to_owned()],
                method: AuthMethod::Basic,
                expires_at: None,
            }
        );
        let wrong = f.auth.authenticate(&basic("alice", "nope"), None).await;
        let unknown = f
            .auth
            .authenticate(&basic("mallory", "alice-pw"), None)
            .await;
        assert_eq!(wrong.expect_err("wrong").reason, BAD_PASSWORD);
        assert_eq!(unknown.expect_err("unknown").reason, BAD_PASSWORD);
        let malformed = f
            .auth
            .authenticate(&with("authorization", "Basic %%%"), None)
            .await;
        assert_eq!(
            malformed.expect_err("malformed").reason,
            "malformed basic credentials"
        );
    }

    #[tokio::test]
    async fn tokens_from_each_source() {
        let f = full();
        let (tok, exp) = token();
        let expect = |method| Principal {
            name: "bob".to_owned(),
            roles: vec!["chat".to_owned()],
            method,
            expires_at: Some(UNIX_EPOCH + Duration::from_secs(exp)),
        };
        let bearer = with("authorization", &format!("Bearer {tok}"));
        let got = f.auth.authenticate(&bearer, None).await.expect("ok");
        assert_eq!(got, Some(expect(AuthMethod::Bearer)));
        let query = format!("x=1&access_token={tok}");
        let got = f
            .auth
            .authenticate(&HeaderMap::new(), Some(&query))
            .await
            .expect("ok");
        assert_eq!(got, Some(expect(AuthMethod::QueryToken)));
        let cookie = with("cookie", &format!("access_token=ignored; jwt={tok}"));
        let got = f.auth.authenticate(&cookie, None).await.expect("ok");
        assert_eq!(got, Some(expect(AuthMethod::Cookie)));
        let rs = rs256(&json!({ "sub": "carol", "exp": now() + 60 }));
        let bearer = with("authorization", &format!("Bearer {rs}"));
        let got = f.auth.authenticate(&bearer, None).await.expect("ok");
        assert_eq!(got.expect("principal").name, "carol");
    }

    #[tokio::test]
    async fn first_source_wins_even_when_it_fails() {
        let f = full();
        let (tok, _) = token();
        let mut h = basic("alice", "wrong");
        h.insert(
            "cookie",
            HeaderValue::from_str(&format!("jwt={tok}")).expect("value"),
        );
        let got = f
            .auth
            .authenticate(&h, Some(&format!("access_token={tok}")))
            .await;
        assert_eq!(
            got.expect_err("basic is checked first").reason,
            BAD_PASSWORD
        );
        let expired = hs256(&json!({ "sub": "bob", "exp": now() - 60 }), TEST_HS_SECRET);
        let h = with("authorization", &format!("Bearer {expired}"));
        let got = f
            .auth
            .authenticate(&h, Some(&format!("access_token={tok}")))
            .await;
        assert_eq!(got.expect_err("expired bearer").reason, "token expired");
    }

    #[tokio::test]
    async fn missing_backends_are_reported() {
        let auth = Authenticator::from_config(&AuthConfig::default()).expect("empty config");
        assert!(!auth.has_realm() && !auth.has_jwt());
        let (tok, _) = token();
        let bearer = with("authorization", &format!("Bearer {tok}"));
        let err = auth.authenticate(&bearer, None).await.expect_err("no jwt");
        assert_eq!(
            err.reason,
            "bearer token given but no JWT key is configured"
        );
        let err = auth
            .authenticate(&HeaderMap::new(), Some(&format!("access_token={tok}")))
            .await
            .expect_err("no jwt");
        assert!(err.reason.contains("no JWT key"), "{err}");
        let cookie = with("cookie", &format!("access_token={tok}"));
        let anonymous = auth
            .authenticate(&cookie, None)
            .await
            .expect("cookie ignored");
        assert_eq!(anonymous, None);
        let err = auth
            .authenticate(&basic("alice", "pw"), None)
            .await
            .expect_err("no realm");
        assert!(err.reason.contains("no user realm"), "{err}");
        let check = Arc::new(auth).credential_check();
        assert_eq!(check.check_password("alice", "pw").await, None);
    }

    #[tokio::test]
    async fn credential_check_for_bridges() {
        let f = full();
        let check = f.auth.credential_check();
        let p = check
            .check_password("alice", "alice-pw")
            .await
            .expect("principal");
        assert_eq!(p.method, AuthMethod::Bridge);
        assert!(p.has_role("trader"));
        assert_eq!(check.check_password("alice", "bad").await, None);
        assert_eq!(check.check_password("nobody", "alice-pw").await, None);

        let (tok, exp) = token();
        let p = check.check_token(&tok).await.expect("a valid token");
        assert_eq!(p.name, "bob");
        assert_eq!(p.method, AuthMethod::Bridge);
        assert_eq!(p.expires_at, Some(UNIX_EPOCH + Duration::from_secs(exp)));
        let expired = hs256(&json!({ "sub": "bob", "exp": now() - 60 }), TEST_HS_SECRET);
        assert_eq!(
            check.check_token(&expired).await,
            Err("token expired".to_owned())
        );
        assert!(check.check_token("not.a.jwt").await.is_err());
    }

    #[tokio::test]
    async fn hashed_password_round_trips_through_a_realm() {
        let hash = hash_password("s3cret pw");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert_ne!(hash, hash_password("s3cret pw"), "salts differ");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("realm.toml");
        let text = format!("[[user]]\nname = \"dana\"\npassword_hash = \"{hash}\"\n");
        std::fs::write(&path, text).expect("write");
        let auth = Authenticator::from_config(&AuthConfig {
            realm_file: Some(path),
            ..AuthConfig::default()
        })
        .expect("valid");
        let got = auth
            .authenticate(&basic("dana", "s3cret pw"), None)
            .await
            .expect("ok")
            .expect("principal");
        assert_eq!(got.name, "dana");
        assert!(got.roles.is_empty());
    }

    #[test]
    fn config_errors_name_the_setting() {
        let err = |cfg: AuthConfig| {
            Authenticator::from_config(&cfg)
                .err()
                .expect("error")
                .to_string()
        };
        let e = err(AuthConfig {
            cookie: "bad name;".to_owned(),
            ..AuthConfig::default()
        });
        assert_eq!(e, r#"auth.cookie: "bad name;" is not a valid cookie name"#);
        let e = err(AuthConfig {
            realm_file: Some("/nonexistent/realm.toml".into()),
            ..AuthConfig::default()
        });
        assert!(e.contains("auth.realm_file"), "{e}");
        let e = err(AuthConfig {
            jwt: Some(JwtConfig::default()),
            ..AuthConfig::default()
        });
        assert!(e.contains("auth.jwt"), "{e}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_hash_pool_is_not_a_wrong_password() {
        // One hashing slot, nobody may wait for it.
        let f = with_config(AuthConfig {
            max_concurrent_hashes: Some(1),
            max_waiting_hashes: 0,
            ..AuthConfig::default()
        });
        let logins = Arc::clone(f.auth.logins.as_ref().expect("realm"));
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let hold = {
            let pool = Arc::clone(&logins.pool_for_tests());
            tokio::spawn(async move { pool.run(move || rx.recv().ok()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let busy = f
            .auth
            .authenticate(&basic("alice", "alice-pw"), None)
            .await
            .expect_err("no slot");
        assert!(busy.busy, "{busy}");
        assert_eq!(busy.reason, BUSY);
        let check = f.auth.credential_check();
        assert_eq!(
            check.check_login("bob", "bob-pw").await,
            Err(LoginRefused::Busy)
        );
        assert_eq!(check.check_password("bob", "bob-pw").await, None);
        drop(tx);
        hold.await.expect("task").expect("ran");
        let ok = f
            .auth
            .authenticate(&basic("alice", "alice-pw"), None)
            .await
            .expect("ok");
        assert_eq!(ok.expect("principal").name, "alice");
        // Cached now: served even while the only slot is taken again.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let pool = Arc::clone(&logins.pool_for_tests());
        let hold = tokio::spawn(async move { pool.run(move || rx.recv().ok()).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        let cached = f.auth.authenticate(&basic("alice", "alice-pw"), None).await;
        assert!(cached.expect("cache hit").is_some());
        let wrong = f.auth.authenticate(&basic("alice", "nope"), None).await;
        assert!(wrong.expect_err("not cached").busy, "a miss needs a slot");
        f.auth.invalidate_caches();
        let after = f.auth.authenticate(&basic("alice", "alice-pw"), None).await;
        assert!(after.expect_err("cache cleared").busy);
        drop(tx);
        hold.await.expect("task").expect("ran");
    }

    #[test]
    fn zero_hash_threads_is_refused() {
        let err = Authenticator::from_config(&AuthConfig {
            max_concurrent_hashes: Some(0),
            ..AuthConfig::default()
        })
        .err()
        .expect("error")
        .to_string();
        assert!(err.starts_with("auth.max_concurrent_hashes:"), "{err}");
    }

    #[test]
    fn failure_displays_its_reason() {
        let f = AuthFailure::new("token expired");
        assert_eq!(f.to_string(), "token expired");
    }
}
