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
        todo!("{element:?}")
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

/// Who a SASL `<auth/>` element says is logging in (PLAIN's authzid/authcid, SCRAM's `n=`),
/// so a gateway can match it against the user it already authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslIdentity {
    pub mechanism: String,
    /// Authorization identity (a JID) when the client gave one.
    pub authzid: Option<String>,
    /// Authentication identity: the username (local part).
    pub authcid: String,
}

/// `None` when the element is not a SASL `<auth/>`, or its mechanism is one whose initial
/// response names no user (e.g. EXTERNAL, ANONYMOUS) or the payload is malformed.
pub fn sasl_identity(auth: &Element) -> Option<SaslIdentity> {
    todo!("{auth:?}")
}
