//! Who may use `/api/...`: a bearer token from `[admin]`, compared in constant time.

use http::header::AUTHORIZATION;
use http::HeaderMap;
use subtle::ConstantTimeEq;

use super::reply::ApiError;

/// The configured admin API token.
pub struct AdminToken(Vec<u8>);

impl AdminToken {
    pub fn new(token: String) -> Self {
        AdminToken(token.into_bytes())
    }

    /// `Ok` when the request carries `Authorization: Bearer <token>`; else the 401 to send
    /// (RFC 6750: `invalid_token` when a token was presented and is wrong).
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        let presented = headers
            .get(AUTHORIZATION)
            .and_then(|v| bearer(v.as_bytes()));
        match presented {
            None => Err(ApiError::unauthorized(
                r#"Bearer realm="gateway admin""#,
                "this endpoint needs `Authorization: Bearer <admin token>`",
            )),
            Some(t) if self.matches(t) => Ok(()),
            Some(_) => Err(ApiError::unauthorized(
                r#"Bearer realm="gateway admin", error="invalid_token""#,
                "the bearer token is not the admin token",
            )),
        }
    }

    /// Time depends on the configured token's length only, not on where a guess differs
    /// or how long it is.
    fn matches(&self, presented: &[u8]) -> bool {
        let expected = &self.0[..];
        let mut same_length = vec![0u8; expected.len()];
        let n = presented.len().min(expected.len());
        same_length[..n].copy_from_slice(&presented[..n]);
        let equal =
            same_length.ct_eq(expected) & (presented.len() as u64).ct_eq(&(expected.len() as u64));
        equal.into()
    }
}

/// The token of an `Authorization: Bearer` header (the scheme is case-insensitive).
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at(value.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::WWW_AUTHENTICATE;
    use http::{HeaderValue, StatusCode};

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(auth).unwrap());
        h
    }

    #[test]
    fn only_the_exact_token_passes() {
        let t = AdminToken::new("s3cret-token".into());
        assert!(t.check(&headers("Bearer s3cret-token")).is_ok());
        assert!(t.check(&headers("bearer  s3cret-token ")).is_ok());
        for wrong in [
            "Bearer s3cret-toke",
            "Bearer s3cret-token2",
            "Bearer ",
            "Basic s3cret-token",
            "s3cret-token",
        ] {
            let resp = t.check(&headers(wrong)).unwrap_err().into_response();
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{wrong}");
            assert!(resp.headers()[WWW_AUTHENTICATE]
                .to_str()
                .unwrap()
                .starts_with("Bearer"));
        }
        let missing = t.check(&HeaderMap::new()).unwrap_err().into_response();
        assert!(!missing.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .contains("invalid_token"));
    }
}
