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
//!
//! # Memory
//!
//! - An idle [`StreamReader`] (between stanzas) is about 840 bytes inline plus well under
//!   2 KiB of heap: the stream root's namespace declarations, the parser's one-entry element
//!   stack and at most 1 KiB of input buffer. rxml's 8 KiB token scratch space and anything
//!   a large stanza needed are given back as soon as the reader waits between stanzas
//!   (`tests/idle_memory.rs` measures about 2 KiB resident per idle reader).
//! - While a stanza is read, the reader holds at most `max_element_bytes` of input (fed but
//!   not parsed, plus bytes the parser has taken of the unfinished stanza, counted as it
//!   takes them: [`StreamReader::feed`] refuses more), rxml's token scratch (at most 8 KiB)
//!   and the stanza's minidom tree. The stream header is bounded the same way.
//! - [`parse_client_message`] refuses a message longer than `max_element_bytes` before
//!   parsing it, and holds only the message's tree.
//! - A minidom tree is much larger than its XML when the XML is mostly markup: for 250 KB
//!   of text about 0.4 MB, of roster items about 7 MB, of `<a/>` about 14 MB and of
//!   `<a b=''/>` about 34 MB (every attribute map is a pair of B-trees). `max_element_bytes`
//!   bounds the XML, so it should be chosen with that factor in mind.
//! - Nesting is bounded by `max_depth` while parsing; minidom's tree (and its `Drop`) and
//!   the serialisers recurse once per level, so `max_depth` must stay small (tens).

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
