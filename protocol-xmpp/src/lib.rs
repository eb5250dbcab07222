//! Sans-IO XMPP framing for a WebSocket-to-TCP translator.
//!
//! Two directions, two framings:
//! - the browser side speaks RFC 7395: every WebSocket text message is one complete element
//!   (`<open/>`, `<close/>`, or a top-level element such as a stanza or SASL element);
//! - the server side speaks RFC 6120: one long XML document per stream, restarted after
//!   STARTTLS and after SASL success.
//!
//! XML is parsed by rxml (no DTDs, no entity expansion) and built into minidom elements;
//! [`Limits`] bound depth, attributes, element size and text before any allocation grows
//! with attacker input. Nothing here does IO or knows about sockets or time sources.

mod client;
mod encode;
mod error;
mod fuzz;
mod guard;
mod limits;
mod rate;
mod sasl;
mod serialize;
mod server;
mod stanza;

pub use client::{parse_client_message, ClientFrame, Open};
pub use encode::{
    client_close, client_open, server_close, server_header, stream_error_to_client,
    stream_error_to_server, to_client, to_server,
};
pub use error::{StreamError, StreamErrorCondition};
pub use fuzz::{fuzz_client_message, fuzz_stream};
pub use limits::Limits;
pub use minidom::Element;
pub use rate::RateLimiter;
pub use sasl::{sasl_identity, SaslIdentity};
pub use server::{ServerEvent, StreamHeader, StreamReader};
pub use stanza::{StanzaKind, NS_CLIENT, NS_FRAMING, NS_SASL, NS_STREAM, NS_STREAMS, NS_TLS};

/// The `xml:lang` attribute, which minidom keeps in the XML namespace.
fn xml_lang(element: &Element) -> Option<String> {
    element.attr_ns(rxml::XMLNS_XML, "lang").map(str::to_owned)
}
