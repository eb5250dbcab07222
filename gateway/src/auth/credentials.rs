//! Finding the credentials a request presents.
//!
//! Sources, first present wins: `Authorization: Basic`, `Authorization: Bearer`, the
//! `access_token` query parameter, then the configured cookie.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use bridge_api::AuthMethod;
use http::header::{AUTHORIZATION, COOKIE};
use http::HeaderMap;
use percent_encoding::percent_decode_str;

/// The query parameter that may carry a token.
pub const QUERY_PARAM: &str = "access_token";

/// Standard base64, padding optional (some clients leave it off).
const BASIC_B64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Credentials taken from a request. `Debug` never shows the secret part.
pub enum Credentials {
    Basic { user: String, password: String },
    Token { token: String, method: AuthMethod },
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credentials::Basic { user, .. } => f
                .debug_struct("Basic")
                .field("user", user)
                .field("password", &"<redacted>")
                .finish(),
            Credentials::Token { method, .. } => f
                .debug_struct("Token")
                .field("method", method)
                .field("token", &"<redacted>")
                .finish(),
        }
    }
}

/// The first credentials present, `Ok(None)` if none, `Err(reason)` if malformed.
pub fn extract(
    headers: &HeaderMap,
    query: Option<&str>,
    cookie_name: &str,
) -> Result<Option<Credentials>, String> {
    if let Some(creds) = from_authorization(headers)? {
        return Ok(Some(creds));
    }
    if let Some(token) = query.and_then(query_token) {
        return Ok(Some(Credentials::Token {
            token,
            method: AuthMethod::QueryToken,
        }));
    }
    if let Some(token) = cookie_token(headers, cookie_name) {
        return Ok(Some(Credentials::Token {
            token,
            method: AuthMethod::Cookie,
        }));
    }
    Ok(None)
}

fn from_authorization(headers: &HeaderMap) -> Result<Option<Credentials>, String> {
    let mut values = headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err("more than one Authorization header".to_owned());
    }
    let value = value
        .to_str()
        .map_err(|_| "malformed Authorization header".to_owned())?
        .trim();
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        parse_basic(rest).map(Some)
    } else if scheme.eq_ignore_ascii_case("bearer") {
        if rest.is_empty() || rest.contains(' ') {
            return Err("malformed bearer token".to_owned());
        }
        Ok(Some(Credentials::Token {
            token: rest.to_owned(),
            method: AuthMethod::Bearer,
        }))
    } else {
        Err("unsupported Authorization scheme (use Basic or Bearer)".to_owned())
    }
}

fn parse_basic(encoded: &str) -> Result<Credentials, String> {
    const MALFORMED: &str = "malformed basic credentials";
    let bytes = BASIC_B64
        .decode(encoded)
        .map_err(|_| MALFORMED.to_owned())?;
    let text = String::from_utf8(bytes).map_err(|_| MALFORMED.to_owned())?;
    let (user, password) = text.split_once(':').ok_or_else(|| MALFORMED.to_owned())?;
    if user.is_empty() {
        return Err(MALFORMED.to_owned());
    }
    Ok(Credentials::Basic {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// The first non-empty `access_token` parameter, percent-decoded (`+` is a space).
fn query_token(query: &str) -> Option<String> {
    let query = query.strip_prefix('?').unwrap_or(query);
    query
        .split('&')
        .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
        .filter(|(name, _)| form_decode(name) == QUERY_PARAM)
        .map(|(_, value)| form_decode(value))
        .find(|value| !value.is_empty())
}

fn form_decode(s: &str) -> String {
    let s = s.replace('+', " ");
    percent_decode_str(&s).decode_utf8_lossy().into_owned()
}

/// The first non-empty value of the named cookie, across all `Cookie` headers.
fn cookie_token(headers: &HeaderMap, cookie_name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, _)| name.trim() == cookie_name)
        .map(|(_, value)| {
            let value = value.trim();
            value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value)
                .to_owned()
        })
        .find(|value| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
                HeaderValue::from_str(value).expect("value"),
            );
        }
        map
    }

    fn basic(user_pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(user_pass)
        )
    }

    fn token_of(c: Option<Credentials>) -> (String, AuthMethod) {
        match c {
            Some(Credentials::Token { token, method }) => (token, method),
            other => panic!("expected a token, got {other:?}"),
        }
    }

    #[test]
    fn nothing_presented_is_anonymous() {
        let got = extract(&HeaderMap::new(), None, "access_token").expect("ok");
        assert!(got.is_none());
        let h = headers(&[("cookie", "other=1; session=abc")]);
        let got = extract(&h, Some("foo=bar&access_token="), "access_token").expect("ok");
        assert!(got.is_none(), "empty values count as absent");
    }

    #[test]
    fn basic_credentials() {
        let h = headers(&[("authorization", &basic("alice:pa:ss word"))]);
        match extract(&h, None, "c").expect("ok") {
            Some(Credentials::Basic { user, password }) => {
                assert_eq!(user, "alice");
                assert_eq!(password, "pa:ss word");
            }
            other => panic!("{other:?}"),
        }
        // Scheme is case-insensitive and padding is optional.
        let h = headers(&[("authorization", "bAsIc   YWxpY2U6eA")]);
        assert!(matches!(
            extract(&h, None, "c"),
            Ok(Some(Credentials::Basic { .. }))
        ));
    }

    #[test]
    fn malformed_basic_is_an_error() {
        for value in [
            "Basic !!!notbase64",
            "Basic",
            &basic("no-colon"),
            &basic(":emptyuser"),
        ] {
            let h = headers(&[("authorization", value)]);
            let err = extract(&h, None, "c").expect_err(value);
            assert_eq!(err, "malformed basic credentials");
        }
        let h = headers(&[(
            "authorization",
            &format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode([0xff, b':', b'x'])
            ),
        )]);
        assert!(extract(&h, None, "c").is_err(), "non-UTF-8 credentials");
    }

    #[test]
    fn bearer_token() {
        let h = headers(&[("authorization", "bearer abc.def.ghi")]);
        assert_eq!(
            token_of(extract(&h, None, "c").expect("ok")),
            ("abc.def.ghi".to_owned(), AuthMethod::Bearer)
        );
        for value in ["Bearer", "Bearer   ", "Bearer a b"] {
            let h = headers(&[("authorization", value)]);
            assert_eq!(
                extract(&h, None, "c").expect_err(value),
                "malformed bearer token"
            );
        }
    }

    #[test]
    fn other_schemes_and_duplicates_are_errors() {
        let h = headers(&[("authorization", "Digest username=\"x\"")]);
        assert!(extract(&h, None, "c")
            .expect_err("digest")
            .contains("unsupported"));
        let h = headers(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]);
        assert!(extract(&h, None, "c")
            .expect_err("two headers")
            .contains("more than one"));
        let mut h = HeaderMap::new();
        h.insert(
            AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").expect("opaque bytes"),
        );
        assert!(extract(&h, None, "c").is_err());
    }

    #[test]
    fn query_token_is_percent_decoded() {
        let got = extract(
            &HeaderMap::new(),
            Some("?x=1&access%5Ftoken=a%2Eb.c&access_token=second"),
            "c",
        )
        .expect("ok");
        assert_eq!(token_of(got), ("a.b.c".to_owned(), AuthMethod::QueryToken));
        let got = extract(&HeaderMap::new(), Some("access_token"), "c").expect("ok");
        assert!(got.is_none(), "a parameter without a value is absent");
    }

    #[test]
    fn cookie_token_found_among_others() {
        let h = headers(&[
            ("cookie", "a=1; theme=dark"),
            ("cookie", "jwt=\"tok.en.x\"; b=2"),
        ]);
        assert_eq!(
            token_of(extract(&h, None, "jwt").expect("ok")),
            ("tok.en.x".to_owned(), AuthMethod::Cookie)
        );
        let h = headers(&[("cookie", "xjwt=1; jwtx=2")]);
        assert!(extract(&h, None, "jwt").expect("ok").is_none());
    }

    #[test]
    fn precedence_basic_bearer_query_cookie() {
        let all = |auth: Option<&str>| {
            let mut pairs = vec![("cookie", "access_token=cookie")];
            if let Some(a) = auth {
                pairs.push(("authorization", a));
            }
            headers(&pairs)
        };
        let b = basic("u:p");
        let got = extract(&all(Some(&b)), Some("access_token=q"), "access_token");
        assert!(matches!(got, Ok(Some(Credentials::Basic { .. }))));
        let got = extract(
            &all(Some("Bearer hdr")),
            Some("access_token=q"),
            "access_token",
        );
        assert_eq!(
            token_of(got.expect("ok")),
            ("hdr".to_owned(), AuthMethod::Bearer)
        );
        let got = extract(&all(None), Some("access_token=q"), "access_token");
        assert_eq!(
            token_of(got.expect("ok")),
            ("q".to_owned(), AuthMethod::QueryToken)
        );
        let got = extract(&all(None), None, "access_token");
        assert_eq!(
            token_of(got.expect("ok")),
            ("cookie".to_owned(), AuthMethod::Cookie)
        );
    }

    #[test]
    fn debug_hides_secrets() {
        let c = Credentials::Basic {
            user: "alice".to_owned(),
            password: "hunter2".to_owned(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = Credentials::Token {
            token: "secret.token".to_owned(),
            method: AuthMethod::Bearer,
        };
        assert!(!format!("{c:?}").contains("secret.token"));
    }
}
