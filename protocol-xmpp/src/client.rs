//! The browser side: RFC 7395, one complete element per WebSocket text message.

use minidom::Element;

use crate::{Limits, StreamError};

/// The attributes of a framing `<open/>` (RFC 7395 section 3.3.1).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Open {
    pub to: Option<String>,
    pub from: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
}

/// One message from the browser.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientFrame {
    Open(Open),
    Close,
    /// Any other top-level element (stanza, SASL, STARTTLS, stream management ...), with its
    /// namespace resolved; an element with no namespace declaration is put in `jabber:client`.
    Element(Element),
}

/// Parses one WebSocket text message. Errors carry the stream error condition to send:
/// `not-well-formed` for broken XML (including several elements or trailing text in one
/// message), `restricted-xml` for DTDs/entities/comments/processing instructions,
/// `policy-violation` for exceeded [`Limits`], `invalid-namespace` for a framing element in
/// the wrong namespace.
pub fn parse_client_message(text: &str, limits: &Limits) -> Result<ClientFrame, StreamError> {
    todo!("{text} {limits:?}")
}
