//! The browser side: RFC 7395, one complete element per WebSocket text message.

use minidom::Element;
use rxml::error::EndOrError;
use rxml::Parse;

use crate::guard::{is_xml_space, new_parser, parse_error, Guard, Step};
use crate::{Limits, StreamError, StreamErrorCondition as C, NS_CLIENT, NS_FRAMING};

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
/// the wrong namespace (or an `open`/`close` in any other), `unsupported-encoding` for an XML
/// declaration naming an encoding other than UTF-8.
pub fn parse_client_message(text: &str, limits: &Limits) -> Result<ClientFrame, StreamError> {
    if text.len() > limits.max_element_bytes {
        return Err(StreamError::new(
            C::PolicyViolation,
            format!("message larger than {} bytes", limits.max_element_bytes),
        ));
    }
    let element = parse_element(text.as_bytes(), limits)?;
    if element.is("open", NS_FRAMING) {
        Ok(ClientFrame::Open(Open {
            to: element.attr("to").map(str::to_owned),
            from: element.attr("from").map(str::to_owned),
            id: element.attr("id").map(str::to_owned),
            version: element.attr("version").map(str::to_owned),
            lang: crate::xml_lang(&element),
        }))
    } else if element.is("close", NS_FRAMING) {
        Ok(ClientFrame::Close)
    } else if element.has_ns(NS_FRAMING) || matches!(element.name(), "open" | "close") {
        Err(StreamError::new(
            C::InvalidNamespace,
            format!("<{}/> in namespace '{}'", element.name(), element.ns()),
        ))
    } else {
        Ok(ClientFrame::Element(element))
    }
}

/// The single element `bytes` hold, unprefixed names defaulting to `jabber:client`.
fn parse_element(bytes: &[u8], limits: &Limits) -> Result<Element, StreamError> {
    // XML allows whitespace before the root; rxml does not.
    let start = bytes
        .iter()
        .position(|&b| !is_xml_space(b))
        .unwrap_or(bytes.len());
    let mut input = &bytes[start..];
    let mut parser = new_parser(limits, Some(input.len()));
    let mut guard = Guard::message(limits, NS_CLIENT);
    let mut element = None;
    loop {
        let before = input.len();
        let result = parser.parse(&mut input, true);
        guard.account(before - input.len())?;
        match result {
            Ok(Some(event)) => {
                if let Step::Element(done) = guard.process(event)? {
                    element = Some(done);
                }
            }
            // rxml refuses anything but whitespace after the root, so a second element or
            // trailing text fails above.
            Ok(None) => break,
            Err(EndOrError::NeedMoreData) => break,
            Err(err) => return Err(parse_error(err)),
        }
    }
    element.ok_or_else(|| StreamError::new(C::NotWellFormed, "no complete element"))
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
