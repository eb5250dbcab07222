//! The broker's addresses: one URI, or the nodes of a cluster as a comma-separated list of
//! URIs (`amqp://u:p@h1:5672/vhost,amqp://u:p@h2:5672/vhost`). The nodes serve the same
//! vhost over the same scheme; each may have its own credentials and query.

use lapin::uri::{AMQPUri, AMQPUserInfo};

/// Split `raw` on commas and parse each with `parse` (the bridge's own URI checks). A
/// comma inside a password is written `%2C`.
pub fn parse_nodes(
    raw: &str,
    parse: impl Fn(&str) -> Result<AMQPUri, String>,
) -> Result<Vec<AMQPUri>, String> {
    let mut nodes: Vec<AMQPUri> = Vec::new();
    for (i, part) in raw.split(',').map(str::trim).enumerate() {
        if part.is_empty() {
            return Err(format!(
                "node {} of the list is empty (a list is \"amqp://u:p@h1:5672/,amqp://u:p@h2:5672/\")",
                i + 1
            ));
        }
        let uri = parse(part).map_err(|e| {
            if raw.contains(',') {
                format!("node {} ({}): {e}", i + 1, redacted(part))
            } else {
                e
            }
        })?;
        if let Some(first) = nodes.first() {
            if first.scheme != uri.scheme {
                return Err(format!(
                    "node {} ({}): every node uses the same scheme (amqp:// or amqps://)",
                    i + 1,
                    crate::endpoint(&uri)
                ));
            }
            if first.vhost != uri.vhost {
                return Err(format!(
                    "node {} ({}): vhost {:?} differs from {:?}: the nodes of one backend serve one vhost",
                    i + 1,
                    crate::endpoint(&uri),
                    uri.vhost,
                    first.vhost
                ));
            }
        }
        if nodes
            .iter()
            .any(|n| crate::endpoint(n) == crate::endpoint(&uri))
        {
            return Err(format!(
                "node {} ({}) is listed twice",
                i + 1,
                crate::endpoint(&uri)
            ));
        }
        nodes.push(uri);
    }
    Ok(nodes)
}

/// `host:port` of each node, for messages: `h1:5672, h2:5672`.
pub fn endpoints(nodes: &[AMQPUri]) -> String {
    nodes
        .iter()
        .map(crate::endpoint)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every node with a client's own login in place of the configured one (pass-through
/// credentials: the broker authorises each client).
pub fn as_user(nodes: &[AMQPUri], username: &str, password: &str) -> Vec<AMQPUri> {
    nodes
        .iter()
        .map(|n| {
            let mut uri = n.clone();
            uri.authority.userinfo = AMQPUserInfo {
                username: username.to_string(),
                password: password.to_string(),
            };
            uri
        })
        .collect()
}

/// A URI as it may be shown (no password).
fn redacted(raw: &str) -> String {
    match (raw.split_once("://"), raw.rfind('@')) {
        (Some((scheme, _)), Some(at)) => format!("{scheme}://…@{}", &raw[at + 1..]),
        _ => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<Vec<AMQPUri>, String> {
        parse_nodes(raw, |s| s.parse::<AMQPUri>().map_err(|e| e.to_string()))
    }

    #[test]
    fn one_uri_is_one_node() {
        let n = parse("amqp://u:p@h:5672/%2f").unwrap();
        assert_eq!(n.len(), 1);
        assert_eq!(endpoints(&n), "h:5672");
    }

    #[test]
    fn a_list_keeps_its_order_and_credentials() {
        let n = parse("amqp://a:x@h1:5672/v, amqp://b:y@h2:5673/v").unwrap();
        assert_eq!(endpoints(&n), "h1:5672, h2:5673");
        assert_eq!(n[1].authority.userinfo.username, "b");
    }

    #[test]
    fn mixed_lists_are_refused() {
        let e = parse("amqp://h1/v,amqps://h2/v").unwrap_err();
        assert!(e.contains("same scheme"), "{e}");
        let e = parse("amqp://h1/a,amqp://h2/b").unwrap_err();
        assert!(e.contains("vhost"), "{e}");
        let e = parse("amqp://h1/a,,amqp://h2/a").unwrap_err();
        assert!(e.contains("node 2") && e.contains("empty"), "{e}");
        let e = parse("amqp://h1:5672/a,amqp://h1:5672/a").unwrap_err();
        assert!(e.contains("twice"), "{e}");
    }

    #[test]
    fn a_bad_node_is_named_without_its_password() {
        let e = parse("amqp://u:secret@h1/a,amqp://u:secret@h2:notaport/a").unwrap_err();
        assert!(e.starts_with("node 2 (amqp://…@h2:notaport/a)"), "{e}");
        assert!(!e.contains("secret"), "{e}");
    }
}
