//! Just enough XMPP-over-WebSocket (RFC 7395) text for a load generator: the generator
//! talks to servers whose replies it knows, so it reads them by tag and attribute rather than
//! with a full XML parser (the gateway's own codec is what is being measured).

use base64::Engine;

pub const FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";

pub fn open(domain: &str) -> String {
    format!(r#"<open xmlns="{FRAMING}" to="{domain}" version="1.0"/>"#)
}

pub fn close() -> String {
    format!(r#"<close xmlns="{FRAMING}"/>"#)
}

pub fn auth_plain(user: &str, password: &str) -> String {
    let payload = base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
    format!(r#"<auth xmlns="urn:ietf:params:xml:ns:xmpp-sasl" mechanism="PLAIN">{payload}</auth>"#)
}

pub fn bind(resource: &str) -> String {
    format!(
        r#"<iq xmlns="jabber:client" type="set" id="bind"><bind xmlns="urn:ietf:params:xml:ns:xmpp-bind"><resource>{resource}</resource></bind></iq>"#
    )
}

pub fn presence() -> &'static str {
    r#"<presence xmlns="jabber:client"/>"#
}

pub fn message(to: &str, id: &str, body: &str) -> String {
    format!(
        r#"<message xmlns="jabber:client" to="{to}" id="{id}" type="chat"><body>{body}</body></message>"#
    )
}

/// The element name of the message's root, without a prefix (`stream:features` → `features`).
pub fn root_name(xml: &str) -> &str {
    let start = xml.find('<').map_or(xml.len(), |i| i + 1);
    let rest = &xml[start..];
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
        .unwrap_or(rest.len());
    let name = &rest[..end];
    name.rsplit(':').next().unwrap_or(name)
}

/// An attribute of the root element, whichever quote the server used.
pub fn root_attr<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let tag_end = xml.find('>')?;
    let tag = &xml[..tag_end];
    for quote in ['\'', '"'] {
        let needle = format!(" {name}={quote}");
        if let Some(i) = tag.find(&needle) {
            let v = &tag[i + needle.len()..];
            return v.find(quote).map(|j| &v[..j]);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_roots_and_attributes_in_either_quote_style() {
        let m = "<message xmlns='jabber:client' from='u1@localhost/lg' id=\"m7\" type='chat'><body>7</body></message>";
        assert_eq!(root_name(m), "message");
        assert_eq!(root_attr(m, "from"), Some("u1@localhost/lg"));
        assert_eq!(root_attr(m, "id"), Some("m7"));
        assert_eq!(root_attr(m, "to"), None);
        assert_eq!(root_name("<stream:features xmlns:stream='x'/>"), "features");
        assert_eq!(
            root_name("<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"),
            "success"
        );
    }

    #[test]
    fn plain_carries_user_and_password() {
        // base64("\0alice\0pw")
        assert!(auth_plain("alice", "pw").contains(">AGFsaWNlAHB3<"));
    }
}
