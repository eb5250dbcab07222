//! Namespaces and the kinds of top-level element the bridge counts.

use minidom::Element;

pub const NS_CLIENT: &str = "jabber:client";
pub const NS_FRAMING: &str = "urn:ietf:params:xml:ns:xmpp-framing";
pub const NS_STREAM: &str = "http://etherx.jabber.org/streams";
pub const NS_STREAMS: &str = "urn:ietf:params:xml:ns:xmpp-streams";
pub const NS_TLS: &str = "urn:ietf:params:xml:ns:xmpp-tls";
pub const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";

/// What a top-level element is, for metrics and policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StanzaKind {
    Message,
    Presence,
    Iq,
    /// Stream-level elements: features, SASL, STARTTLS, stream management, ...
    Other,
}

impl StanzaKind {
    pub fn of(element: &Element) -> Self {
        if !element.has_ns(NS_CLIENT) {
            return StanzaKind::Other;
        }
        match element.name() {
            "message" => StanzaKind::Message,
            "presence" => StanzaKind::Presence,
            "iq" => StanzaKind::Iq,
            _ => StanzaKind::Other,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            StanzaKind::Message => "message",
            StanzaKind::Presence => "presence",
            StanzaKind::Iq => "iq",
            StanzaKind::Other => "other",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let kind = |xml: &str| StanzaKind::of(&xml.parse::<Element>().unwrap());
        assert_eq!(
            kind("<message xmlns='jabber:client'/>"),
            StanzaKind::Message
        );
        assert_eq!(
            kind("<presence xmlns='jabber:client'/>"),
            StanzaKind::Presence
        );
        assert_eq!(kind("<iq xmlns='jabber:client'/>"), StanzaKind::Iq);
        assert_eq!(kind("<message xmlns='urn:other'/>"), StanzaKind::Other);
        assert_eq!(
            kind("<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>"),
            StanzaKind::Other
        );
        assert_eq!(kind("<r xmlns='urn:xmpp:sm:3'/>"), StanzaKind::Other);
        assert_eq!(StanzaKind::Iq.as_str(), "iq");
    }
}
