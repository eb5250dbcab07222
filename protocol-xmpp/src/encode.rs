//! Serialisation for each side. Everything sent to the browser is self-contained (its own
//! namespace declarations); everything sent to the server relies on the stream's
//! `jabber:client` default namespace and `stream` prefix.

use minidom::Element;

use crate::{Open, StreamError, StreamHeader};

/// `<open xmlns="urn:ietf:params:xml:ns:xmpp-framing" from=… id=… version="1.0" xml:lang=…/>`
/// answering the browser, built from the server's stream header.
pub fn client_open(header: &StreamHeader) -> String {
    todo!("{header:?}")
}

/// `<close xmlns="urn:ietf:params:xml:ns:xmpp-framing"/>`.
pub fn client_close() -> &'static str {
    todo!()
}

/// `<?xml version='1.0'?><stream:stream xmlns='jabber:client'
/// xmlns:stream='http://etherx.jabber.org/streams' to=… version='1.0' xml:lang=…>` opening
/// (or restarting) the server stream on the browser's behalf.
pub fn server_header(open: &Open) -> String {
    todo!("{open:?}")
}

/// `</stream:stream>`.
pub fn server_close() -> &'static str {
    todo!()
}

/// One WebSocket text message for the browser: stanzas carry `xmlns="jabber:client"`,
/// `stream:`-prefixed elements declare `xmlns:stream`.
pub fn to_client(element: &Element) -> String {
    todo!("{element:?}")
}

/// One top-level element written into the server stream.
pub fn to_server(element: &Element) -> String {
    todo!("{element:?}")
}

/// `<stream:error xmlns:stream=…><CONDITION xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>
/// <text xmlns='urn:ietf:params:xml:ns:xmpp-streams'>…</text></stream:error>` as a
/// self-contained WebSocket message.
pub fn stream_error_to_client(error: &StreamError) -> String {
    todo!("{error:?}")
}

/// The same stream error written into the server stream (before `</stream:stream>`).
pub fn stream_error_to_server(error: &StreamError) -> String {
    todo!("{error:?}")
}
