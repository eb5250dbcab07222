//! `GET /api/config`: the effective configuration (file, environment and defaults merged,
//! the default services filled in) with every secret replaced by `<redacted>`.
//!
//! Bridge settings are free-form JSON each bridge checks for itself, so secrets are found
//! by shape rather than by a list of known keys: values under names that say password,
//! passcode, secret or token; key material under names ending in `key` unless the value
//! is a file path; and the password part of any `scheme://user:password@host` URI.

use http::{Response, StatusCode};
use serde_json::Value;

use super::{reply, AdminApi};
use crate::response::Body;

use crate::auth::REDACTED;
use crate::config::GatewayConfig;

/// The configuration in force now (a reload changes it), redacted.
pub fn show(api: &AdminApi) -> Response<Body> {
    reply::json(StatusCode::OK, &redacted(&api.state.live().config))
}

pub fn redacted(config: &GatewayConfig) -> Value {
    let mut value = serde_json::to_value(config).unwrap_or_else(|e| {
        tracing::error!("admin API: cannot render the configuration: {e}");
        Value::Null
    });
    redact(&mut value, None);
    value
}

/// The redacted configuration as TOML, for `--check-config`: what it prints may land in a
/// terminal log or a CI transcript, so it hides what the admin API hides.
pub fn redacted_toml(config: &GatewayConfig) -> Result<String, toml::ser::Error> {
    let mut value = redacted(config);
    drop_nulls(&mut value);
    toml::to_string_pretty(&value)
}

/// TOML has no null: an unset option is an absent key.
fn drop_nulls(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

fn redact(value: &mut Value, name: Option<&str>) {
    if let Some(name) = name {
        if secret_name(name, value) {
            *value = Value::String(REDACTED.into());
            return;
        }
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                redact(v, Some(k));
            }
        }
        // An array's items are what its name says (a list of tokens is a list of secrets).
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, name)),
        Value::String(s) => {
            if let Some(clean) = redact_uri_password(s) {
                *s = clean;
            }
        }
        _ => {}
    }
}

/// Names that are paths to secrets, not secrets: fine to show.
const PATH_SUFFIXES: [&str; 3] = ["_file", "_path", "_dir"];

/// Key-named settings that hold no key material: a header or field name.
const NOT_KEY_MATERIAL: [&str; 1] = ["conflate_key"];

fn secret_name(name: &str, value: &Value) -> bool {
    let name = name.to_ascii_lowercase();
    if PATH_SUFFIXES.iter().any(|s| name.ends_with(s)) || value.is_null() {
        return false;
    }
    if ["password", "passwd", "passcode", "secret", "token"]
        .iter()
        .any(|w| name.contains(w))
    {
        // A switch, or a size or a bound under such a name, is a setting about secrets
        // (`token_cache_size`, `allow_token`); a numeric passcode is still a secret.
        let bound = name.ends_with("_size") || name.starts_with("max_");
        return !(value.is_boolean() || (value.is_number() && bound));
    }
    let keyish = name == "key" || name.ends_with("_key") || name.ends_with("key");
    keyish && !NOT_KEY_MATERIAL.contains(&name.as_str()) && !is_path(value)
}

/// `server.tls.key = "/etc/gw/key.pem"` names a file: showing it tells where the key is,
/// not what it is.
fn is_path(value: &Value) -> bool {
    match value {
        Value::String(s) => {
            !s.contains('\n')
                && (s.contains('/')
                    || s.contains('\\')
                    || [".pem", ".key", ".der", ".crt"]
                        .iter()
                        .any(|ext| s.ends_with(ext)))
        }
        Value::Array(items) => items.iter().all(is_path),
        _ => false,
    }
}

/// `amqp://user:pass@host/vhost` → `amqp://user:<redacted>@host/vhost`; `None` when there
/// is no password in it. Only the authority part (before the first `/`, `?` or `#` after
/// `://`) can hold one.
fn redact_uri_password(s: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = s;
    let mut changed = false;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let end = tail.find(['/', '?', '#', ' ', ',']).unwrap_or(tail.len());
        let authority = &tail[..end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.find(':') {
                    Some(colon) => {
                        out.push_str(&userinfo[..colon + 1]);
                        out.push_str(REDACTED);
                        changed = true;
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[end..];
    }
    out.push_str(rest);
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn passwords_in_uris_go_and_the_rest_stays() {
        assert_eq!(
            redact_uri_password("amqp://gw:s3cret@rabbit:5672/%2f").as_deref(),
            Some("amqp://gw:<redacted>@rabbit:5672/%2f")
        );
        assert_eq!(
            redact_uri_password("stomp://u:p%40ss@a:61613,stomp://v:q@b").as_deref(),
            Some("stomp://u:<redacted>@a:61613,stomp://v:<redacted>@b")
        );
        assert_eq!(redact_uri_password("amqp://guest@host/"), None);
        assert_eq!(redact_uri_password("http://host/a:b@c"), None);
        assert_eq!(redact_uri_password("embedded"), None);
    }

    #[test]
    fn secrets_by_name_paths_and_ordinary_keys_kept() {
        let mut v = json!({
            "auth": {"jwt": {"hs256_secret": "hs", "rs256_public_key": "/etc/gw/jwt.pem",
                             "roles_claim": "roles"}},
            "admin": {"token": "tok", "token_file": "/run/secrets/admin"},
            "limits": {"token_cache_size": 10000},
            "server": {"tls": {"key": "/etc/gw/key.pem", "cert": "/etc/gw/cert.pem"}},
            "service": [{"settings": {
                "backend": "amqp://gw:pw@rabbit/",
                "password": "xmpp-pw", "passcode": 1234, "api_key": "abc123",
                "signing_key": "-----BEGIN PRIVATE KEY-----\nMII\n-----END PRIVATE KEY-----",
                "tokens": ["t1", "t2"], "require_login": true, "credentials": "service",
                "policy": [{"destination": "/topic/x", "conflate_key": "symbol"}],
                "snapshot_keys": 10000, "client_key": null
            }}]
        });
        redact(&mut v, None);
        let text = v.to_string();
        for secret in [
            "\"hs\"", "tok\"", ":pw@", "xmpp-pw", "1234", "abc123", "PRIVATE", "t1", "t2",
        ] {
            assert!(!text.contains(secret), "{secret} in {text}");
        }
        let s = &v["service"][0]["settings"];
        assert_eq!(s["backend"], "amqp://gw:<redacted>@rabbit/");
        assert_eq!(s["require_login"], true);
        assert_eq!(s["credentials"], "service");
        assert_eq!(s["policy"][0]["conflate_key"], "symbol");
        assert_eq!(s["snapshot_keys"], 10000);
        assert_eq!(v["limits"]["token_cache_size"], 10000);
        assert_eq!(s["client_key"], Value::Null);
        assert_eq!(v["server"]["tls"]["key"], "/etc/gw/key.pem");
        assert_eq!(v["admin"]["token_file"], "/run/secrets/admin");
        assert_eq!(v["auth"]["jwt"]["rs256_public_key"], "/etc/gw/jwt.pem");
    }
}
