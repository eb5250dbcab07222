//! Serialisation for each side. Everything sent to the browser is self-contained (its own
//! namespace declarations); everything sent to the server relies on the stream's
//! `jabber:client` default namespace and `stream` prefix.

use minidom::Element;

use crate::serialize::{push_attribute, push_escaped, write_element, Scope};
use crate::{Open, StreamError, StreamHeader, NS_CLIENT, NS_FRAMING, NS_STREAM, NS_STREAMS};

/// A WebSocket message stands alone: nothing is declared around it.
const CLIENT_SCOPE: Scope<'static> = Scope {
    default_ns: None,
    stream_prefix: false,
};

/// Inside `<stream:stream xmlns='jabber:client' xmlns:stream=…>`.
const SERVER_SCOPE: Scope<'static> = Scope {
    default_ns: Some(NS_CLIENT),
    stream_prefix: true,
};

/// `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from=… id=… version="1.0" xml:lang=…/>`
/// answering the browser, built from the server's stream header.
pub fn client_open(header: &StreamHeader) -> String {
    let mut out = String::with_capacity(160);
    out.push_str("<open");
    push_attribute(&mut out, "xmlns", NS_FRAMING);
    for (name, value) in [
        ("from", &header.from),
        ("to", &header.to),
        ("id", &header.id),
    ] {
        if let Some(value) = value {
            push_attribute(&mut out, name, value);
        }
    }
    push_attribute(
        &mut out,
        "version",
        header.version.as_deref().unwrap_or("1.0"),
    );
    if let Some(lang) = &header.lang {
        push_attribute(&mut out, "xml:lang", lang);
    }
    out.push_str("/>");
    out
}

/// `<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`.
pub fn client_close() -> &'static str {
    r#"<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>"#
}

/// `<?xml version='1.0'?><stream:stream xmlns='jabber:client'
/// xmlns:stream='http://etherx.jabber.org/streams' to=… version='1.0' xml:lang=…>` opening
/// (or restarting) the server stream on the browser's behalf.
pub fn server_header(open: &Open) -> String {
    let mut out = String::with_capacity(200);
    out.push_str("<?xml version='1.0'?><stream:stream");
    push_attribute(&mut out, "xmlns", NS_CLIENT);
    push_attribute(&mut out, "xmlns:stream", NS_STREAM);
    for (name, value) in [("to", &open.to), ("from", &open.from)] {
        if let Some(value) = value {
            push_attribute(&mut out, name, value);
        }
    }
    push_attribute(
        &mut out,
        "version",
        open.version.as_deref().unwrap_or("1.0"),
    );
    if let Some(lang) = &open.lang {
        push_attribute(&mut out, "xml:lang", lang);
    }
    out.push('>');
    out
}

/// `</stream:stream>`.
pub fn server_close() -> &'static str {
    "</stream:stream>"
}

/// One WebSocket text message for the browser: stanzas carry `xmlns="jabber:client"`,
/// `stream:`-prefixed elements declare `xmlns:stream`.
pub fn to_client(element: &Element) -> String {
    let mut out = String::with_capacity(256);
    write_element(&mut out, element, CLIENT_SCOPE);
    out
}

/// One top-level element written into the server stream.
pub fn to_server(element: &Element) -> String {
    let mut out = String::with_capacity(256);
    write_element(&mut out, element, SERVER_SCOPE);
    out
}

/// `<stream:error xmlns:stream=…><CONDITION xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>
/// <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>…</text></stream:error>` as a
/// self-contained WebSocket message.
pub fn stream_error_to_client(error: &StreamError) -> String {
    stream_error(error, true)
}

/// The same stream error written into the server stream (before `</stream:stream>`).
pub fn stream_error_to_server(error: &StreamError) -> String {
    stream_error(error, false)
}

fn stream_error(error: &StreamError, declare_stream: bool) -> String {
    let mut out = String::with_capacity(200 + error.text.len());
    out.push_str("<stream:error");
    if declare_stream {
        push_attribute(&mut out, "xmlns:stream", NS_STREAM);
    }
    out.push_str("><");
    out.push_str(error.condition.as_str());
    push_attribute(&mut out, "xmlns", NS_STREAMS);
    out.push_str("/>");
    if !error.text.is_empty() {
        out.push_str("<text");
        push_attribute(&mut out, "xmlns", NS_STREAMS);
        out.push('>');
        push_escaped(&mut out, &error.text, false);
        out.push_str("</text>");
    }
    out.push_str("</stream:error>");
    out
}

#[cfg(test)]
#[path = "encode_tests.rs"]
mod tests;
