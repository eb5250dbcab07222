//! The server side: an RFC 6120 XML stream read incrementally from TCP (or TLS) bytes.

use minidom::Element;

use crate::{Limits, StreamError};

/// The attributes of the server's `<stream:stream>` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamHeader {
    pub from: Option<String>,
    pub to: Option<String>,
    pub id: Option<String>,
    pub version: Option<String>,
    pub lang: Option<String>,
}

/// What the server's stream yields, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ServerEvent {
    /// `<stream:stream ...>` opened (once per stream, again after each restart).
    Header(StreamHeader),
    /// One complete top-level child of the stream: `stream:features`, a stanza, `proceed`,
    /// `success`, `stream:error`, ... Namespaces are resolved, so inherited `jabber:client` is
    /// the element's namespace even though the server did not repeat the declaration.
    Element(Element),
    /// `</stream:stream>`.
    End,
}

/// Incremental reader for a server stream. Whitespace between top-level elements
/// (keepalives) yields nothing. Memory is bounded by [`Limits::max_element_bytes`] plus the
/// parser's own small buffers.
pub struct StreamReader {
    limits: Limits,
}

impl StreamReader {
    pub fn new(limits: Limits) -> Self {
        todo!("{limits:?}")
    }

    /// Appends bytes read from the socket. Fails (with `policy-violation`) only when more
    /// than the limits allow would have to be buffered.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        todo!("{} {:?}", bytes.len(), self.limits)
    }

    /// The next complete event, or `Ok(None)` until more bytes are fed.
    pub fn next_event(&mut self) -> Result<Option<ServerEvent>, StreamError> {
        todo!()
    }

    /// Starts a new XML document: call after `<proceed/>` (STARTTLS) and after SASL
    /// `<success/>`, when the server will send a fresh stream header. Buffered bytes are
    /// discarded.
    pub fn restart(&mut self) {
        todo!()
    }
}
