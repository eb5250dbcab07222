//! The server side: an RFC 6120 XML stream read incrementally from TCP (or TLS) bytes.

use minidom::Element;
use rxml::error::EndOrError;
use rxml::{Parse, RawParser};

use crate::guard::{is_xml_space, new_parser, parse_error, Guard, Root, Step};
use crate::{Limits, StreamError, StreamErrorCondition as C, NS_STREAM};

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
///
/// Feed what one socket read returned, then call [`next_event`](Self::next_event) until it
/// returns `Ok(None)`: [`feed`](Self::feed) refuses input once the bytes not yet parsed plus
/// the unfinished element would exceed `max_element_bytes`. Reads should therefore be much
/// smaller than that limit: a stanza always passes when it is at most `max_element_bytes`
/// minus one read. Errors are final: every later call returns the same error.
pub struct StreamReader {
    limits: Limits,
    /// Fed bytes; `pending[consumed..]` is not parsed yet.
    pending: Vec<u8>,
    consumed: usize,
    parser: RawParser,
    guard: Guard,
    /// Nothing of the current document has been parsed yet (leading whitespace is skipped).
    at_document_start: bool,
    ended: bool,
    failed: Option<StreamError>,
}

/// Text is handed on as it arrives rather than gathered up to rxml's token size: stray text
/// between stanzas (or an HTTP reply instead of a stream) fails at once, and keepalive
/// whitespace is dropped instead of buffered.
fn stream_parser(limits: &Limits) -> RawParser {
    let mut parser = new_parser(limits, None);
    parser.set_text_buffering(false);
    parser
}

impl StreamReader {
    pub fn new(limits: Limits) -> Self {
        StreamReader {
            pending: Vec::new(),
            consumed: 0,
            parser: stream_parser(&limits),
            guard: Guard::stream(&limits),
            at_document_start: true,
            ended: false,
            failed: None,
            limits,
        }
    }

    /// Appends bytes read from the socket. Fails (with `policy-violation`) only when more
    /// than the limits allow would have to be buffered.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.ended {
            // Whatever follows `</stream:stream>` is not part of the stream.
            return Ok(());
        }
        let held = (self.pending.len() - self.consumed)
            .saturating_add(bytes.len())
            .saturating_add(self.guard.element_bytes());
        if held > self.limits.max_element_bytes {
            return Err(self.fail(StreamError::new(
                C::PolicyViolation,
                format!(
                    "more than {} bytes buffered for one element",
                    self.limits.max_element_bytes
                ),
            )));
        }
        if self.consumed > 0 && self.consumed == self.pending.len() {
            self.pending.clear();
            self.consumed = 0;
        }
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    /// The next complete event, or `Ok(None)` until more bytes are fed. Errors carry the
    /// condition to report: `not-well-formed`, `restricted-xml` (DTD, entity, comment,
    /// processing instruction), `policy-violation` ([`Limits`]), `unsupported-encoding`
    /// (not UTF-8), `invalid-namespace` (a root other than `stream:stream`) or `bad-format`
    /// (text between stanzas).
    pub fn next_event(&mut self) -> Result<Option<ServerEvent>, StreamError> {
        if let Some(err) = &self.failed {
            return Err(err.clone());
        }
        if self.at_document_start {
            // XML allows whitespace before the root; rxml does not.
            let unparsed = &self.pending[self.consumed..];
            let skip = unparsed
                .iter()
                .position(|&b| !is_xml_space(b))
                .unwrap_or(unparsed.len());
            self.consumed += skip;
            // rxml reports junk before the root only once it has read enough of it, and
            // how much that is depends on the chunking; a stream that is not XML at all
            // (an HTTP reply, a TLS record) is refused at its first byte instead.
            match self.pending.get(self.consumed) {
                None | Some(b'<') => {}
                Some(&byte) => {
                    let err = if byte.is_ascii() {
                        StreamError::new(C::NotWellFormed, "the stream does not start with '<'")
                    } else {
                        StreamError::new(C::UnsupportedEncoding, "the stream is not UTF-8 XML")
                    };
                    return Err(self.fail(err));
                }
            }
        }
        while !self.ended {
            // Called even with no input left: one token can yield several events (`/>` is
            // a head close and a foot) and rxml queues the rest.
            let mut input = &self.pending[self.consumed..];
            let before = input.len();
            let result = self.parser.parse(&mut input, false);
            let consumed = before - input.len();
            self.consumed += consumed;
            self.at_document_start &= consumed == 0;
            if let Err(err) = self.guard.account(consumed) {
                return Err(self.fail(err));
            }
            let event = match result {
                Ok(Some(event)) => event,
                Err(EndOrError::NeedMoreData) => break,
                Ok(None) => {
                    return Err(self.fail(StreamError::new(C::NotWellFormed, "stream ended")))
                }
                Err(err) => return Err(self.fail(parse_error(err))),
            };
            match self.guard.process(event) {
                Ok(Step::Continue) => {}
                Ok(Step::RootOpened(root)) => match header(root) {
                    Ok(header) => return Ok(Some(ServerEvent::Header(header))),
                    Err(err) => return Err(self.fail(err)),
                },
                Ok(Step::Element(element)) => return Ok(Some(ServerEvent::Element(element))),
                Ok(Step::RootClosed) => {
                    self.ended = true;
                    self.release();
                    return Ok(Some(ServerEvent::End));
                }
                Err(err) => return Err(self.fail(err)),
            }
        }
        self.release();
        Ok(None)
    }

    /// Starts a new XML document: call after `<proceed/>` (STARTTLS) and after SASL
    /// `<success/>`, when the server will send a fresh stream header. Buffered bytes are
    /// discarded.
    pub fn restart(&mut self) {
        *self = StreamReader::new(self.limits.clone());
    }

    fn fail(&mut self, err: StreamError) -> StreamError {
        self.failed = Some(err.clone());
        self.pending = Vec::new();
        self.consumed = 0;
        err
    }

    /// Gives back memory a large element needed once the reader is waiting between
    /// elements, so thousands of idle streams stay small.
    fn release(&mut self) {
        if self.consumed == self.pending.len() {
            // Freed rather than kept for the next read: most streams are idle most of the
            // time, and the next element allocates anyway.
            self.pending = Vec::new();
            self.consumed = 0;
        }
        if self.guard.between_elements() {
            self.parser.release_temporaries();
            self.guard.shrink();
        }
    }
}

/// The stream header's attributes; the root must be `stream` in the streams namespace.
fn header(root: Root) -> Result<StreamHeader, StreamError> {
    if root.name.as_str() != "stream" || root.ns != NS_STREAM {
        return Err(StreamError::new(
            C::InvalidNamespace,
            format!("stream root <{}/> in namespace '{}'", root.name, root.ns),
        ));
    }
    let mut header = StreamHeader::default();
    for (prefix, name, value) in root.attributes {
        let field = match (prefix.as_ref().map(|p| p.as_str()), name.as_str()) {
            (None, "from") => &mut header.from,
            (None, "to") => &mut header.to,
            (None, "id") => &mut header.id,
            (None, "version") => &mut header.version,
            (Some("xml"), "lang") => &mut header.lang,
            _ => continue,
        };
        *field = Some(value);
    }
    Ok(header)
}

#[cfg(test)]
#[path = "server_tests.rs"]
mod tests;
