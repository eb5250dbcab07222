//! Session ids: `<node>.<base64url of 16 random bytes>`. The random part comes from the
//! operating system's CSPRNG, so an id is a capability nobody can guess; the node part tells
//! a load balancer (and a misdirected gateway) which gateway owns the session.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Random bytes per id: 128 bits.
const RANDOM_BYTES: usize = 16;
/// Their base64url length without padding.
const RANDOM_CHARS: usize = 22;

/// A new id for a session owned by `node`, or `None` if the OS has no randomness to give.
pub fn new_id(node: &str) -> Option<String> {
    let mut raw = [0u8; RANDOM_BYTES];
    getrandom::fill(&mut raw).ok()?;
    let mut id = String::with_capacity(node.len() + 1 + RANDOM_CHARS);
    id.push_str(node);
    id.push('.');
    URL_SAFE_NO_PAD.encode_string(raw, &mut id);
    Some(id)
}

/// The node part of a well-formed id, else `None` (then the id is simply unknown).
pub fn node_of(id: &str) -> Option<&str> {
    let (node, random) = id.rsplit_once('.')?;
    let well_formed = !node.is_empty()
        && random.len() == RANDOM_CHARS
        && random
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    well_formed.then_some(node)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_and_node_prefix() {
        let id = new_id("gw-1.example").unwrap();
        assert!(id.starts_with("gw-1.example."), "{id}");
        assert_eq!(id.len(), "gw-1.example.".len() + RANDOM_CHARS);
        assert_eq!(node_of(&id), Some("gw-1.example"));
        let random = id.rsplit_once('.').unwrap().1;
        assert_eq!(URL_SAFE_NO_PAD.decode(random).unwrap().len(), 16);
    }

    #[test]
    fn ids_differ() {
        let a = new_id("n").unwrap();
        let b = new_id("n").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_ids_have_no_node() {
        assert_eq!(node_of("nodot"), None);
        assert_eq!(node_of(".AAAAAAAAAAAAAAAAAAAAAA"), None);
        assert_eq!(node_of("n.short"), None);
        assert_eq!(node_of("n.AAAAAAAAAAAAAAAAAAAA+/"), None);
        assert_eq!(node_of("other.AAAAAAAAAAAAAAAAAAAAAA"), Some("other"));
    }
}
