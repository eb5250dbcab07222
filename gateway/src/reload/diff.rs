//! Which configuration keys a reload changes, and which of them only a restart can apply.
//! Services are compared by name elsewhere (`services/reconcile.rs`); everything else is
//! compared key by key through its serialized form.

use serde_json::Value;

use crate::config::GatewayConfig;

/// Keys (and sections) bound at start-up: the listening sockets, the admin listener and its
/// token, the HTTP fallback's session registry, the log's format.
const RESTART_ONLY: &[&str] = &[
    "server.listen",
    "server.node",
    "admin",
    "http_fallback",
    "log.format",
    "log.session_fields",
];

/// The dotted keys whose values differ, leaves only, in a stable order; `service` is left
/// out. Secrets serialize redacted, so they are compared here directly.
pub fn changed_keys(old: &GatewayConfig, new: &GatewayConfig) -> Vec<String> {
    let mut out = Vec::new();
    let (a, b) = (to_value(old), to_value(new));
    walk("", &a, &b, &mut out);
    out.retain(|k| k != "service" && !k.starts_with("service."));
    let secret = |c: &GatewayConfig| c.auth.jwt.as_ref().and_then(|j| j.hs256_secret.clone());
    if secret(old) != secret(new) && old.auth.jwt.is_some() && new.auth.jwt.is_some() {
        out.push("auth.jwt.hs256_secret".into());
    }
    if old.admin.token != new.admin.token && old.admin.token.is_some() && new.admin.token.is_some()
    {
        out.push("admin.token".into());
    }
    out.sort();
    out.dedup();
    out
}

fn to_value(c: &GatewayConfig) -> Value {
    serde_json::to_value(c).unwrap_or(Value::Null)
}

fn walk(at: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let path = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match (x.get(k), y.get(k)) {
                    (Some(p), Some(q)) => walk(&path, p, q, out),
                    _ => out.push(path),
                }
            }
        }
        _ if a != b => out.push(at.to_string()),
        _ => {}
    }
}

pub fn needs_restart(key: &str) -> bool {
    RESTART_ONLY.iter().any(|r| {
        key == *r
            || key
                .strip_prefix(r)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// Put back the start-up values of the restart-only keys, so the configuration in force
/// says what is really in force.
pub fn keep_restart_only(old: &GatewayConfig, new: &mut GatewayConfig) {
    new.server.listen = old.server.listen;
    new.admin = old.admin.clone();
    new.http_fallback = old.http_fallback.clone();
    new.log.format = old.log.format;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> GatewayConfig {
        toml::from_str(toml).expect("config")
    }

    #[test]
    fn leaves_that_differ_are_named() {
        let old =
            parse("[limits]\nmax_connections_per_ip = 10\n[server]\nlisten = \"127.0.0.1:1\"\n");
        let new = parse(
            "[limits]\nmax_connections_per_ip = 2\n[server]\nlisten = \"127.0.0.1:2\"\n\
             trusted_proxies = [\"10.0.0.0/8\"]\n[http_fallback]\ngrace = \"1s\"\n",
        );
        assert_eq!(
            changed_keys(&old, &new),
            [
                "http_fallback.grace",
                "limits.max_connections_per_ip",
                "server.listen",
                "server.trusted_proxies"
            ]
        );
        assert!(changed_keys(&old, &old.clone()).is_empty());
    }

    #[test]
    fn optional_sections_and_services_and_secrets() {
        let old = parse("[auth.jwt]\nhs256_secret = \"one secret of at least 32 bytes!!\"\n");
        let new = parse(
            "[auth.jwt]\nhs256_secret = \"another secret, also 32 bytes long\"\n\
             [server.tls]\ncert = \"c.pem\"\nkey = \"k.pem\"\n\
             [[service]]\nname = \"e\"\npath = \"/e\"\nbridge = \"echo\"\n",
        );
        assert_eq!(
            changed_keys(&old, &new),
            ["auth.jwt.hs256_secret", "server.tls"]
        );
    }

    #[test]
    fn restart_only_keys_are_recognised_and_kept() {
        assert!(needs_restart("server.listen"));
        assert!(
            needs_restart("server.node"),
            "queue and session names carry it"
        );
        assert!(needs_restart("admin.listen"));
        assert!(needs_restart("admin.token"));
        assert!(needs_restart("http_fallback.enabled"));
        assert!(needs_restart("http_fallback"));
        assert!(!needs_restart("server.listen_backlog"));
        assert!(!needs_restart("server.tls.cert"));
        assert!(!needs_restart("limits.max_connections"));
        let old = parse("[server]\nlisten = \"127.0.0.1:1\"\n");
        let mut new = parse(
            "[server]\nlisten = \"127.0.0.1:2\"\nstatic_dir = \"/srv\"\n\
             [http_fallback]\nenabled = false\n",
        );
        keep_restart_only(&old, &mut new);
        assert_eq!(changed_keys(&old, &new), ["server.static_dir"]);
    }
}
