//! JWT verification: HS256 with a shared secret, RS256 with an RSA public key.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{decode, decode_header, Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use super::cache::{Keyer, TtlCache};
use super::config::{JwtConfig, REDACTED};
use super::error::{JwtConfigError, KeyFileError};
use super::metrics::{count, Kind, Outcome};

/// Larger leeways are almost surely a configuration mistake.
const MAX_LEEWAY: Duration = Duration::from_secs(24 * 60 * 60);

/// What a valid token says about its holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    pub subject: String,
    pub roles: Vec<String>,
    pub expires_at: SystemTime,
}

/// A token whose signature was checked, with the claims that depend on the time or on
/// the settings, which are checked again on every use.
#[derive(Clone)]
struct Checked {
    token: VerifiedToken,
    exp: u64,
    nbf: Option<u64>,
    issuer: Option<String>,
    audience: Vec<String>,
}

/// Verifies tokens against the configured keys. Cheap enough to run on the async runtime;
/// a token seen before (same bytes, so same signature) skips the signature check until its
/// `exp`, the cache belonging to these keys.
pub struct JwtVerifier {
    hs256: Option<(DecodingKey, Validation)>,
    rs256: Option<(DecodingKey, Validation)>,
    roles_claim: String,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    cache: TtlCache<Checked>,
    keyer: Keyer,
}

impl JwtVerifier {
    /// Reads the key file and checks the settings. Errors name the setting.
    pub fn from_config(cfg: &JwtConfig, cache_size: usize) -> Result<JwtVerifier, JwtConfigError> {
        if cfg.hs256_secret.is_none() && cfg.rs256_public_key.is_none() {
            return Err(JwtConfigError::NoKey);
        }
        if cfg.leeway > MAX_LEEWAY {
            return Err(JwtConfigError::Leeway {
                leeway: cfg.leeway,
                max: MAX_LEEWAY,
            });
        }
        if cfg.roles_claim.is_empty() {
            return Err(JwtConfigError::EmptyRolesClaim);
        }
        for (setting, value) in [("issuer", &cfg.issuer), ("audience", &cfg.audience)] {
            if value.as_deref() == Some("") {
                return Err(JwtConfigError::EmptyFilter(setting));
            }
        }

        let hs256 = match &cfg.hs256_secret {
            None => None,
            Some(secret) => {
                if secret.is_empty() {
                    return Err(JwtConfigError::EmptySecret);
                }
                if secret == REDACTED {
                    return Err(JwtConfigError::PlaceholderSecret);
                }
                if secret.len() < 32 {
                    tracing::warn!(
                        "auth.jwt.hs256_secret is shorter than 32 bytes; HS256 secrets should be at least 32 random bytes"
                    );
                }
                let key = DecodingKey::from_secret(secret.as_bytes());
                Some((key, validation(cfg, Algorithm::HS256)))
            }
        };
        let rs256 = match &cfg.rs256_public_key {
            None => None,
            Some(path) => {
                let key =
                    load_rsa_public_key(path).map_err(|source| JwtConfigError::PublicKey {
                        path: path.clone(),
                        source,
                    })?;
                Some((key, validation(cfg, Algorithm::RS256)))
            }
        };
        Ok(JwtVerifier {
            hs256,
            rs256,
            roles_claim: cfg.roles_claim.clone(),
            issuer: cfg.issuer.clone(),
            audience: cfg.audience.clone(),
            leeway: leeway_secs(cfg.leeway),
            cache: TtlCache::new(cache_size),
            keyer: Keyer::random(),
        })
    }

    /// Forgets the tokens verified so far.
    pub fn invalidate(&self) {
        self.cache.clear();
    }

    /// Checks signature, algorithm and claims. `Err` is a short reason safe to show a client.
    pub fn verify(&self, token: &str) -> Result<VerifiedToken, String> {
        if !self.cache.is_enabled() {
            return self.verify_counted(token).map(|c| c.token);
        }
        let key = self.keyer.key(&[token.as_bytes()]);
        if let Some(cached) = self.cache.get(&key, Instant::now()) {
            self.recheck(&cached, jsonwebtoken::get_current_timestamp())?;
            count(Kind::Token, Outcome::CacheHit);
            return Ok(cached.token);
        }
        let checked = self.verify_counted(token)?;
        // Never past `exp`: the cache's clock is monotonic, so the deadline is the time
        // left until `exp` by the wall clock now.
        let left = checked
            .token
            .expires_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let now = Instant::now();
        self.cache.insert(key, checked.clone(), now + left, now);
        Ok(checked.token)
    }

    /// The claims that can change their verdict without the token changing: the time
    /// (`exp`, `nbf`, with the same leeway as a full check) and the accepted issuer and
    /// audience.
    fn recheck(&self, c: &Checked, now: u64) -> Result<(), String> {
        if c.exp < now.saturating_sub(self.leeway) {
            return Err(reason(&ErrorKind::ExpiredSignature));
        }
        if c.nbf.is_some_and(|nbf| nbf > now + self.leeway) {
            return Err(reason(&ErrorKind::ImmatureSignature));
        }
        if let Some(iss) = &self.issuer {
            if c.issuer.as_ref() != Some(iss) {
                return Err(reason(&ErrorKind::InvalidIssuer));
            }
        }
        if let Some(aud) = &self.audience {
            if !c.audience.contains(aud) {
                return Err(reason(&ErrorKind::InvalidAudience));
            }
        }
        Ok(())
    }

    fn verify_counted(&self, token: &str) -> Result<Checked, String> {
        let checked = self.verify_uncached(token);
        let outcome = match &checked {
            Ok(_) => Outcome::Verified,
            Err(_) => Outcome::Rejected,
        };
        count(Kind::Token, outcome);
        checked
    }

    fn verify_uncached(&self, token: &str) -> Result<Checked, String> {
        let header = decode_header(token).map_err(|e| match e.kind() {
            // An algorithm jsonwebtoken does not know, "none" included.
            ErrorKind::Json(_) if header_has_alg(token) => "token algorithm is not accepted",
            _ => "malformed token",
        })?;
        let (key, validation) = match header.alg {
            Algorithm::HS256 => self.hs256.as_ref(),
            Algorithm::RS256 => self.rs256.as_ref(),
            _ => None,
        }
        .ok_or_else(|| format!("token algorithm {:?} is not accepted", header.alg))?;

        let claims = decode::<Map<String, Value>>(token, key, validation)
            .map_err(|e| reason(e.kind()))?
            .claims;

        let subject = match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err("token has no subject (sub claim)".to_owned()),
        };
        let exp = claims
            .get("exp")
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.round() as u64)))
            .ok_or_else(|| "token has no valid expiry (exp claim)".to_owned())?;
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(exp))
            .ok_or_else(|| "token has no valid expiry (exp claim)".to_owned())?;
        let roles = roles(&claims, &self.roles_claim)?;
        let nbf = claims
            .get("nbf")
            .and_then(|v| v.as_u64().or_else(|| v.as_f64().map(|f| f.round() as u64)));
        let issuer = claims.get("iss").and_then(Value::as_str).map(str::to_owned);
        let audience = match claims.get("aud") {
            Some(Value::String(a)) => vec![a.clone()],
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        };
        Ok(Checked {
            token: VerifiedToken {
                subject,
                roles,
                expires_at,
            },
            exp,
            nbf,
            issuer,
            audience,
        })
    }
}

/// Whole seconds, rounded up, as jsonwebtoken takes the leeway.
fn leeway_secs(leeway: Duration) -> u64 {
    leeway.as_secs() + u64::from(leeway.subsec_nanos() > 0)
}

fn validation(cfg: &JwtConfig, alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.leeway = leeway_secs(cfg.leeway);
    v.validate_exp = true;
    v.validate_nbf = true;
    let mut required = vec!["exp", "sub"];
    if let Some(iss) = &cfg.issuer {
        v.set_issuer(&[iss]);
        required.push("iss");
    }
    match &cfg.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            required.push("aud");
        }
        // Without a configured audience, a token's `aud` is not checked.
        None => v.validate_aud = false,
    }
    v.set_required_spec_claims(&required);
    v
}

fn load_rsa_public_key(path: &Path) -> Result<DecodingKey, KeyFileError> {
    let pem = std::fs::read_to_string(path).map_err(KeyFileError::Read)?;
    if pem.contains("PRIVATE KEY-----") {
        return Err(KeyFileError::PrivateKey);
    }
    if !pem.contains("-----BEGIN PUBLIC KEY-----")
        && !pem.contains("-----BEGIN RSA PUBLIC KEY-----")
    {
        return Err(KeyFileError::NotPublicKeyPem);
    }
    let key = DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(KeyFileError::NotRsa)?;
    // from_rsa_pem only unwraps the PEM; parse the key itself now rather than on first use.
    let der = key.try_get_as_bytes().map_err(KeyFileError::NotRsa)?;
    let (modulus, _) = (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER
        .key_utils
        .rsa_pub_components_from_public_key)(der)
    .map_err(KeyFileError::NotRsa)?;
    let bits = modulus.iter().skip_while(|b| **b == 0).count() * 8;
    if bits < 2048 {
        tracing::warn!(
            path = %path.display(),
            bits,
            "auth.jwt.rs256_public_key is shorter than 2048 bits"
        );
    }
    Ok(key)
}

/// Whether the token's header names some algorithm (one jsonwebtoken may not know).
fn header_has_alg(token: &str) -> bool {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine;
    token
        .split('.')
        .next()
        .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
        .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
        .is_some_and(|header| header.get("alg").is_some_and(Value::is_string))
}

fn reason(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token expired".to_owned(),
        ErrorKind::ImmatureSignature => "token not yet valid".to_owned(),
        ErrorKind::InvalidSignature => "invalid token signature".to_owned(),
        ErrorKind::InvalidIssuer => "token issuer not accepted".to_owned(),
        ErrorKind::InvalidAudience => "token audience not accepted".to_owned(),
        ErrorKind::InvalidAlgorithm => "token algorithm is not accepted".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "sub" => "token has no subject (sub claim)".to_owned(),
            "exp" => "token has no valid expiry (exp claim)".to_owned(),
            "iss" => "token has no issuer (iss claim)".to_owned(),
            "aud" => "token has no audience (aud claim)".to_owned(),
            other => format!("token lacks the {other} claim"),
        },
        ErrorKind::InvalidClaimFormat(claim) => format!("token has a malformed {claim} claim"),
        _ => "malformed token".to_owned(),
    }
}

/// Roles from the configured claim: an array of strings or one space-separated string.
/// A claim name not found as such is tried as a dotted path (`realm_access.roles`).
fn roles(claims: &Map<String, Value>, claim: &str) -> Result<Vec<String>, String> {
    let value = claims.get(claim).or_else(|| {
        let mut parts = claim.split('.');
        let first = claims.get(parts.next()?)?;
        parts.try_fold(first, |v, part| v.get(part))
    });
    let malformed = || format!("token claim {claim:?} must be an array of strings");
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split_whitespace().map(str::to_owned).collect()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned).ok_or_else(malformed))
            .collect(),
        Some(_) => Err(malformed()),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    /// Test-only RSA key pair (2048 bits), made with `openssl genrsa` / `openssl rsa -pubout`.
    pub(crate) const TEST_RSA_PRIVATE: &str = "\
-----BEGIN RSA PRIVATE KEY-----
MIIEogIBAAKCAQEAk5eIDlwwXtv0BSVijCEh1OJ8Y4npiIbcDjz6lTOAb7phtZBr
hNgxJLvsLJdPSFcU4J1vWZ1de1zgKwSzcYqmvXbbBbu1Q86tT7z4IKjT8L6KezUp
B67z1pMLrcFaaEGVaCtgSGeS17WzssIKs/Ve4eCvNczS8VZGkHhFPoh3fHYK3qAM
60Ew18LxTFK+vRJIAysJ1iymJGR1BsdmSQ4aPRzjy+HfQRO6VMowwUKh0hjFZrOD
OIPjVi8ID2W6/LM77IUj+LJCsO7GaYOg1KUACu6qzSfRjNu4NAgIkHa9koHWohOk
kkkTECT29rnIaPG6CRu/seiY6hcClNa0B8BONwIDAQABAoIBAAaNvLEw8pLoi6B4
3wES7Y70hnDf3428IBeS9jUocsqpr4uhsvlUpXLL1DpmQ6AWNQUEtW+SXcn/DBMz
VvAZQVTGnmyJDIz+WrktaAuaafYJBMD6azmxapfVTFHCweV0PnkM+zsFbyjpI0zl
ceOfM/Kt7yNhid8rWHnMy8i+XY2As3XQuoUo+HpaFncWPcz/qgXyZQWLrQ2ZQJ2l
E9fsH17YOJM+fDDbZBqojQYFxfRvtxaMa3LPj7hQnK+dJb1hpfiZdCg1Dkizb+Rx
7MTgfXhJEE1NqPDnIYRo0z3r5khlLWhddCsjMkg9G860+7e2q03dmM6OM0vtbBDb
wP3lPpkCgYEAzmyNQEWanl529PydvenZGwpPs3S0GY5y+Z3NdPKw4vsSvZRhuVOj
H8l+YrmHWJN49ronh+9CZO43sujjDD4kkt4g/zyE19dyahoWFk3y5UeWNG8RsOaS
TLkFIvyB6ZsjJZy804o55lTkpnVkNN5Nmr5G2OWsXuUyVWQPkOvcSN8CgYEAtwnW
4VjoKuxGpPN6sHhhXfPZiW0HwTqYZOPey98E16NVq1pXCXT1XKK58baEuHsvYVKE
pSuOdKBBR5nRZJnkg5O3LoVNCM11YFvCe7QA68xeRzyDB6SirALpYZEcfjkPacMH
925Rbn6Nl3OD3RxYm5BRkwdVIE/eNhujF3UbLakCgYBS0a6iWMq+O3xSsn+/UHFw
reRoRax0jHiIuc1S3IQnrUBJm5zRtELAYCE7DuDEovZnVyzBFzd2MzVZrKJbqRsX
adOnU+qghqo685hk/oUzhFM5Wk6owPl1ms36yYB972ZcktQXs1+jj+/k8ThxFbfh
G/Jk11EfCan2JJ0yMc9B1QKBgAENjG/lbAh7LXjbcbQ8LQs2UOUKfIXvCVtjOC/i
C4wWA3Ml5ORICPVMdldenmrVQpODvwGYO4yOM3Hu/5ZdkEP1gJNC7wuC6w7v2DGP
+oVgupYcUgCkQM9OgPsvs4NCXsVT+uLAfrVtAvGBF5wZAqV6cg2veBzkeLnE9O44
nTxpAoGAR78I8U+TO0ZsZuQWmrvR81Ikd0LSDfXfTQNXFi8pPTOvDT4NqHbVX+Tl
xwUtUuSZaHrRtcvGK8vhBzMBb4Ya6xwQIpFgHzvDkM/IAYYgHtD0GGRB01SUXOqZ
93ps/9CCnXP/K8r9jmtA+ns/3+IIL69CShR5ExthP9r4x5Y9LRw=
-----END RSA PRIVATE KEY-----
";
    pub(crate) const TEST_RSA_PUBLIC: &str = "\
-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAk5eIDlwwXtv0BSVijCEh
1OJ8Y4npiIbcDjz6lTOAb7phtZBrhNgxJLvsLJdPSFcU4J1vWZ1de1zgKwSzcYqm
vXbbBbu1Q86tT7z4IKjT8L6KezUpB67z1pMLrcFaaEGVaCtgSGeS17WzssIKs/Ve
4eCvNczS8VZGkHhFPoh3fHYK3qAM60Ew18LxTFK+vRJIAysJ1iymJGR1BsdmSQ4a
PRzjy+HfQRO6VMowwUKh0hjFZrODOIPjVi8ID2W6/LM77IUj+LJCsO7GaYOg1KUA
Cu6qzSfRjNu4NAgIkHa9koHWohOkkkkTECT29rnIaPG6CRu/seiY6hcClNa0B8BO
NwIDAQAB
-----END PUBLIC KEY-----
";
    pub(crate) const TEST_HS_SECRET: &str = "an HS256 test secret of at least 32 bytes";

    pub(crate) fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    pub(crate) fn hs256(claims: &Value, secret: &str) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .expect("encode")
    }

    pub(crate) fn rs256(claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(TEST_RSA_PRIVATE.as_bytes()).expect("private key");
        encode(&Header::new(Algorithm::RS256), claims, &key).expect("encode")
    }

    /// Writes the test public key to a temp file; keep the returned dir alive.
    pub(crate) fn public_key_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jwt.pub.pem");
        std::fs::write(&path, TEST_RSA_PUBLIC).expect("write");
        (dir, path)
    }

    /// Every test runs with the token cache on, as the gateway does by default.
    fn verifier(cfg: &JwtConfig) -> Result<JwtVerifier, JwtConfigError> {
        JwtVerifier::from_config(cfg, 100)
    }

    fn hs_config() -> JwtConfig {
        JwtConfig {
            hs256_secret: Some(TEST_HS_SECRET.to_owned()),
            ..JwtConfig::default()
        }
    }

    fn hs_verifier() -> JwtVerifier {
        verifier(&hs_config()).expect("valid config")
    }

    fn claims(extra: Value) -> Value {
        let mut c = json!({ "sub": "alice", "exp": now() + 600, "roles": ["trader", "chat"] });
        if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
            for (k, v) in extra {
                if v.is_null() {
                    c.remove(&k);
                } else {
                    c.insert(k, v);
                }
            }
        }
        c
    }

    #[test]
    fn hs256_valid_token() {
        let exp = now() + 600;
        let token = hs256(&claims(json!({ "exp": exp })), TEST_HS_SECRET);
        let got = hs_verifier().verify(&token).expect("valid");
        assert_eq!(
            got,
            VerifiedToken {
                subject: "alice".to_owned(),
                roles: vec!["trader".to_owned(), "chat".to_owned()],
                expires_at: UNIX_EPOCH + Duration::from_secs(exp),
            }
        );
    }

    #[test]
    fn rs256_valid_token() {
        let (_dir, path) = public_key_file();
        let cfg = JwtConfig {
            rs256_public_key: Some(path),
            ..JwtConfig::default()
        };
        let v = verifier(&cfg).expect("valid config");
        let got = v.verify(&rs256(&claims(json!({})))).expect("valid");
        assert_eq!(got.subject, "alice");
        assert_eq!(got.roles, ["trader", "chat"]);
        // HS256 is not accepted when only an RSA key is configured, including the classic
        // confusion attack that uses the public key as an HMAC secret.
        let forged = hs256(&claims(json!({})), TEST_RSA_PUBLIC);
        assert_eq!(
            v.verify(&forged).expect_err("hs256 with rsa key"),
            "token algorithm HS256 is not accepted"
        );
    }

    #[test]
    fn rs256_wrong_signature() {
        let (_dir, path) = public_key_file();
        let cfg = JwtConfig {
            rs256_public_key: Some(path),
            ..JwtConfig::default()
        };
        let v = verifier(&cfg).expect("valid config");
        let token = rs256(&claims(json!({})));
        // Re-sign a different payload: take its header and signature but change the claims.
        let mut parts: Vec<&str> = token.split('.').collect();
        let other = rs256(&claims(json!({ "sub": "mallory" })));
        let other_payload = other.split('.').nth(1).expect("payload");
        parts[1] = other_payload;
        assert_eq!(
            v.verify(&parts.join(".")).expect_err("tampered"),
            "invalid token signature"
        );
    }

    #[test]
    fn both_keys_accept_either_algorithm() {
        let (_dir, path) = public_key_file();
        let cfg = JwtConfig {
            rs256_public_key: Some(path),
            ..hs_config()
        };
        let v = verifier(&cfg).expect("valid config");
        assert!(v.verify(&rs256(&claims(json!({})))).is_ok());
        assert!(v.verify(&hs256(&claims(json!({})), TEST_HS_SECRET)).is_ok());
        let hs384 = encode(
            &Header::new(Algorithm::HS384),
            &claims(json!({})),
            &EncodingKey::from_secret(TEST_HS_SECRET.as_bytes()),
        )
        .expect("encode");
        assert_eq!(
            v.verify(&hs384).expect_err("hs384"),
            "token algorithm HS384 is not accepted"
        );
    }

    #[test]
    fn hs256_wrong_secret() {
        let token = hs256(&claims(json!({})), "some other secret of enough length!!");
        assert_eq!(
            hs_verifier().verify(&token).expect_err("wrong secret"),
            "invalid token signature"
        );
    }

    #[test]
    fn alg_none_and_garbage_are_rejected() {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims(json!({})).to_string());
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}"),
        ] {
            let err = hs_verifier().verify(&token).expect_err("alg none");
            assert!(
                err == "token algorithm is not accepted" || err == "malformed token",
                "{err}"
            );
        }
        assert_eq!(
            hs_verifier()
                .verify(&format!("{header}.{payload}."))
                .expect_err("none"),
            "token algorithm is not accepted"
        );
        for token in ["", "abc", "a.b.c", "....", "é.é.é"] {
            assert_eq!(
                hs_verifier().verify(token).expect_err(token),
                "malformed token"
            );
        }
    }

    #[test]
    fn expired_token_and_leeway() {
        let token = hs256(&claims(json!({ "exp": now() - 30 })), TEST_HS_SECRET);
        assert_eq!(
            hs_verifier().verify(&token).expect_err("expired"),
            "token expired"
        );
        let lenient = verifier(&JwtConfig {
            leeway: Duration::from_secs(120),
            ..hs_config()
        })
        .expect("valid config");
        assert!(lenient.verify(&token).is_ok(), "within leeway");
        let old = hs256(&claims(json!({ "exp": now() - 600 })), TEST_HS_SECRET);
        assert_eq!(lenient.verify(&old).expect_err("expired"), "token expired");
    }

    #[test]
    fn not_before_is_honoured() {
        let token = hs256(&claims(json!({ "nbf": now() + 300 })), TEST_HS_SECRET);
        assert_eq!(
            hs_verifier().verify(&token).expect_err("nbf"),
            "token not yet valid"
        );
        let token = hs256(&claims(json!({ "nbf": now() - 5 })), TEST_HS_SECRET);
        assert!(hs_verifier().verify(&token).is_ok());
    }

    #[test]
    fn exp_and_sub_are_required() {
        let v = hs_verifier();
        let token = hs256(&claims(json!({ "exp": null })), TEST_HS_SECRET);
        assert_eq!(
            v.verify(&token).expect_err("no exp"),
            "token has no valid expiry (exp claim)"
        );
        let token = hs256(&claims(json!({ "exp": "tomorrow" })), TEST_HS_SECRET);
        assert!(v.verify(&token).is_err());
        for sub in [json!(null), json!(42), json!("")] {
            let token = hs256(&claims(json!({ "sub": sub })), TEST_HS_SECRET);
            assert_eq!(
                v.verify(&token).expect_err("no sub"),
                "token has no subject (sub claim)"
            );
        }
    }

    #[test]
    fn issuer_and_audience_when_configured() {
        let v = verifier(&JwtConfig {
            issuer: Some("https://idp.example".to_owned()),
            audience: Some("gateway".to_owned()),
            ..hs_config()
        })
        .expect("valid config");
        let good = json!({ "iss": "https://idp.example", "aud": ["other", "gateway"] });
        let token = hs256(&claims(good), TEST_HS_SECRET);
        assert!(v.verify(&token).is_ok());
        let cases = [
            (
                json!({ "iss": "https://evil.example", "aud": "gateway" }),
                "token issuer not accepted",
            ),
            (
                json!({ "iss": "https://idp.example", "aud": "other" }),
                "token audience not accepted",
            ),
            (
                json!({ "aud": "gateway" }),
                "token has no issuer (iss claim)",
            ),
            (
                json!({ "iss": "https://idp.example" }),
                "token has no audience (aud claim)",
            ),
        ];
        for (extra, want) in cases {
            let token = hs256(&claims(extra), TEST_HS_SECRET);
            assert_eq!(v.verify(&token).expect_err(want), want);
        }
        // Not configured: issuer and audience are not checked.
        let token = hs256(
            &claims(json!({ "iss": "anyone", "aud": "anything" })),
            TEST_HS_SECRET,
        );
        assert!(hs_verifier().verify(&token).is_ok());
    }

    #[test]
    fn roles_claim_shapes() {
        let v = verifier(&JwtConfig {
            roles_claim: "scope".to_owned(),
            ..hs_config()
        })
        .expect("valid config");
        let token = hs256(&claims(json!({ "scope": "read  write" })), TEST_HS_SECRET);
        assert_eq!(v.verify(&token).expect("valid").roles, ["read", "write"]);
        let token = hs256(&claims(json!({})), TEST_HS_SECRET);
        assert!(v.verify(&token).expect("valid").roles.is_empty());
        for bad in [json!(5), json!(["ok", 1]), json!({ "a": 1 })] {
            let token = hs256(&claims(json!({ "scope": bad })), TEST_HS_SECRET);
            assert!(v.verify(&token).expect_err("bad roles").contains("scope"));
        }
        let nested = verifier(&JwtConfig {
            roles_claim: "realm_access.roles".to_owned(),
            ..hs_config()
        })
        .expect("valid config");
        let token = hs256(
            &claims(json!({ "realm_access": { "roles": ["admin"] } })),
            TEST_HS_SECRET,
        );
        assert_eq!(nested.verify(&token).expect("valid").roles, ["admin"]);
    }

    #[test]
    fn config_errors_name_the_setting() {
        let err = |cfg: JwtConfig| verifier(&cfg).err().expect("error").to_string();
        assert_eq!(
            err(JwtConfig::default()),
            "auth.jwt: neither hs256_secret nor rs256_public_key is set; give at least one key"
        );
        let e = err(JwtConfig {
            hs256_secret: Some(String::new()),
            ..JwtConfig::default()
        });
        assert!(e.contains("auth.jwt.hs256_secret"), "{e}");
        let e = err(JwtConfig {
            hs256_secret: Some(REDACTED.to_owned()),
            ..JwtConfig::default()
        });
        assert_eq!(
            e,
            "auth.jwt.hs256_secret: \"<redacted>\" is the placeholder the gateway prints \
             instead of the secret; give the real secret"
        );
        let e = err(JwtConfig {
            leeway: Duration::from_secs(3 * 24 * 3600),
            ..hs_config()
        });
        assert_eq!(e, "auth.jwt.leeway: 3days is too large (at most 1day)");
        let e = err(JwtConfig {
            audience: Some(String::new()),
            ..hs_config()
        });
        assert_eq!(
            e,
            "auth.jwt.audience: must not be empty (leave it out to accept any)"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let e = err(JwtConfig {
            rs256_public_key: Some(missing.clone()),
            ..JwtConfig::default()
        });
        assert!(
            e.contains("auth.jwt.rs256_public_key") && e.contains("missing.pem"),
            "{e}"
        );
        for (name, text, needle) in [
            ("private.pem", TEST_RSA_PRIVATE, "private key"),
            ("garbage.pem", "hello", "PUBLIC KEY"),
            (
                "broken.pem",
                "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                "not a valid RSA public key",
            ),
        ] {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write");
            let e = err(JwtConfig {
                rs256_public_key: Some(path),
                ..JwtConfig::default()
            });
            assert!(e.contains(name) && e.contains(needle), "{e}");
        }
    }

    #[test]
    fn a_repeated_token_is_served_from_the_cache_until_its_exp() {
        let v = hs_verifier();
        let token = hs256(&claims(json!({ "exp": now() + 2 })), TEST_HS_SECRET);
        let first = v.verify(&token).expect("valid");
        assert_eq!(v.cache.len(), 1);
        assert_eq!(v.verify(&token).expect("cached"), first);
        assert_eq!(v.cache.len(), 1);
        let key = v.keyer.key(&[token.as_bytes()]);
        let past_exp = Instant::now() + Duration::from_secs(3);
        assert!(
            v.cache.get(&key, past_exp).is_none(),
            "an entry never outlives the token's exp"
        );
        // A forged token with the same claims is other bytes: a miss, and refused.
        let forged = hs256(
            &claims(json!({ "exp": now() + 2 })),
            "another secret entirely!!",
        );
        assert_eq!(
            v.verify(&forged).expect_err("forged"),
            "invalid token signature"
        );
        let other = hs_verifier();
        assert_ne!(
            other.keyer.key(&[token.as_bytes()]),
            key,
            "each verifier keys its cache with its own secret"
        );
    }

    #[test]
    fn time_claims_are_checked_again_on_every_hit() {
        let v = verifier(&JwtConfig {
            leeway: Duration::from_secs(10),
            ..hs_config()
        })
        .expect("valid config");
        let token = hs256(
            &claims(json!({ "exp": now() + 600, "nbf": now() - 1 })),
            TEST_HS_SECRET,
        );
        v.verify(&token).expect("valid");
        let key = v.keyer.key(&[token.as_bytes()]);
        let cached = v.cache.get(&key, Instant::now()).expect("cached");
        let exp = cached.exp;
        assert_eq!(v.recheck(&cached, exp + 10), Ok(()), "within leeway");
        assert_eq!(
            v.recheck(&cached, exp + 11).expect_err("expired"),
            "token expired"
        );
        let early = Checked {
            nbf: Some(exp - 100),
            ..cached.clone()
        };
        assert_eq!(
            v.recheck(&early, exp - 111).expect_err("nbf"),
            "token not yet valid"
        );
        assert_eq!(v.recheck(&early, exp - 110), Ok(()));
    }

    #[test]
    fn cached_issuer_and_audience_still_have_to_match() {
        let v = verifier(&JwtConfig {
            issuer: Some("https://id.example".to_owned()),
            audience: Some("gateway".to_owned()),
            ..hs_config()
        })
        .expect("valid config");
        let token = hs256(
            &claims(json!({ "iss": "https://id.example", "aud": ["x", "gateway"] })),
            TEST_HS_SECRET,
        );
        v.verify(&token).expect("valid");
        v.verify(&token).expect("cached");
        let key = v.keyer.key(&[token.as_bytes()]);
        let cached = v.cache.get(&key, Instant::now()).expect("cached");
        assert_eq!(cached.audience, ["x", "gateway"]);
        let wrong_iss = Checked {
            issuer: Some("https://evil.example".to_owned()),
            ..cached.clone()
        };
        assert_eq!(
            v.recheck(&wrong_iss, now()).expect_err("iss"),
            "token issuer not accepted"
        );
        let wrong_aud = Checked {
            audience: vec!["x".to_owned()],
            ..cached
        };
        assert_eq!(
            v.recheck(&wrong_aud, now()).expect_err("aud"),
            "token audience not accepted"
        );
    }

    #[test]
    fn a_zero_size_cache_verifies_every_time() {
        let v = JwtVerifier::from_config(&hs_config(), 0).expect("valid config");
        let token = hs256(&claims(json!({})), TEST_HS_SECRET);
        v.verify(&token).expect("valid");
        v.verify(&token).expect("valid");
        assert_eq!(v.cache.len(), 0);
        v.invalidate();
    }
}
