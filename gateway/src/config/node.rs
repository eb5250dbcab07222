//! `server.node`: this gateway's name among the gateways sharing a broker. It prefixes the
//! HTTP fallback's session ids (and is its `Gateway-Node` header), names the broker queues
//! and connections the bridges open, and is shown in `/metrics`, the admin API and the
//! start-up log. `http_fallback.node` is its older name and still accepted.

use super::{ConfigError, GatewayConfig};

/// Letters, digits, `-`, `_` and `.`: safe in a session id, an HTTP header, a broker
/// queue name and a Prometheus label.
pub fn valid_node(node: &str) -> bool {
    !node.is_empty()
        && node.len() <= 64
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The host name (`/proc/sys/kernel/hostname`, else `$HOSTNAME`), or `gateway` if neither
/// gives a usable one.
pub fn default_node() -> String {
    let from_proc = std::fs::read_to_string("/proc/sys/kernel/hostname").ok();
    let from_env = std::env::var("HOSTNAME").ok();
    [from_proc, from_env]
        .into_iter()
        .flatten()
        .map(|s| s.trim().to_string())
        .find(|s| valid_node(s))
        .unwrap_or_else(|| "gateway".into())
}

/// Settle the node name once: `server.node`, else `http_fallback.node`, else the host
/// name. Afterwards `server.node` holds it and `http_fallback.node` is empty, so the
/// configuration shown (`--check-config`, `/api/config`) names it in one place.
pub fn resolve(config: &mut GatewayConfig) -> Result<(), ConfigError> {
    let fail = |key: &str, message: String| ConfigError::Key {
        key: key.into(),
        message,
    };
    let bad =
        |node: &str| format!("`{node}` is not a node name (1-64 letters, digits, `-`, `_`, `.`)");
    let server = config.server.node.take();
    let fallback = config.http_fallback.node.take();
    if let Some(n) = server.as_deref().filter(|n| !valid_node(n)) {
        return Err(fail("server.node", bad(n)));
    }
    if let Some(n) = fallback.as_deref().filter(|n| !valid_node(n)) {
        return Err(fail("http_fallback.node", bad(n)));
    }
    let node = match (server, fallback) {
        (Some(s), Some(f)) if s != f => {
            return Err(fail(
                "http_fallback.node",
                format!(
                    "`{f}` differs from server.node `{s}`: http_fallback.node is the older \
                     name of server.node; set only server.node"
                ),
            ))
        }
        (Some(n), _) | (None, Some(n)) => n,
        (None, None) => default_node(),
    };
    config.server.node = Some(node);
    Ok(())
}

impl GatewayConfig {
    /// This gateway's node name (settled by [`resolve`] when the configuration is prepared).
    pub fn node(&self) -> &str {
        self.server.node.as_deref().unwrap_or("gateway")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(server: Option<&str>, fallback: Option<&str>) -> Result<String, String> {
        let mut c = GatewayConfig::default();
        c.server.node = server.map(Into::into);
        c.http_fallback.node = fallback.map(Into::into);
        resolve(&mut c).map_err(|e| e.to_string())?;
        assert_eq!(c.http_fallback.node, None, "one place only");
        Ok(c.node().to_string())
    }

    #[test]
    fn server_node_wins_and_the_older_name_still_works() {
        assert_eq!(with(Some("gw-a"), None).unwrap(), "gw-a");
        assert_eq!(with(None, Some("gw-b")).unwrap(), "gw-b");
        assert_eq!(with(Some("gw-c"), Some("gw-c")).unwrap(), "gw-c");
        let host = with(None, None).unwrap();
        assert!(valid_node(&host), "{host}");
    }

    #[test]
    fn bad_or_conflicting_names_name_their_key() {
        assert!(with(Some("a/b"), None).unwrap_err().contains("server.node"));
        assert!(with(None, Some("a b"))
            .unwrap_err()
            .contains("http_fallback.node"));
        let both = with(Some("gw-a"), Some("gw-b")).unwrap_err();
        assert!(
            both.contains("http_fallback.node") && both.contains("server.node"),
            "{both}"
        );
        assert!(with(Some(&"x".repeat(65)), None).is_err());
    }
}
