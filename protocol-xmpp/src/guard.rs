//! rxml events into minidom elements, with [`Limits`] checked on each event before the tree
//! grows. Both sides share it: the browser's messages (the element is the document root) and
//! the server's stream (elements are children of `<stream:stream>`).

use minidom::tree_builder::TreeBuilder;
use minidom::Element;
use rxml::error::EndOrError;
use rxml::{RawEvent, RawParser, RawQName, WithOptions};

use crate::{Limits, StreamError, StreamErrorCondition as C};

/// What one event completed.
pub(crate) enum Step {
    Continue,
    /// The root's start tag is complete (server side: the stream header).
    RootOpened,
    /// A top-level element closed.
    Element(Element),
    /// The root closed (server side: `</stream:stream>`).
    RootClosed,
}

pub(crate) struct Guard {
    tree: TreeBuilder,
    limits: Limits,
    /// Document depth of the elements handed out: 1 when the element is the root, 2 when
    /// it is a child of the stream.
    element_depth: usize,
    /// Open elements, counting one whose start tag is still being read.
    depth: usize,
    /// Attribute names of the start tag being read: rxml's raw parser leaves duplicate
    /// detection to its consumer.
    attributes: Vec<RawQName>,
    /// XML bytes of the top-level element read so far.
    element_bytes: usize,
}

impl Guard {
    pub(crate) fn new(limits: &Limits, element_depth: usize, tree: TreeBuilder) -> Self {
        Guard {
            tree,
            limits: limits.clone(),
            element_depth,
            depth: 0,
            attributes: Vec::new(),
            element_bytes: 0,
        }
    }

    /// Bytes of the unfinished top-level element, for the reader's buffering bound.
    pub(crate) fn element_bytes(&self) -> usize {
        self.element_bytes
    }

    /// True between top-level elements, where nothing stanza-sized is held.
    pub(crate) fn between_elements(&self) -> bool {
        self.depth < self.element_depth
    }

    /// The root element while it is open (server side: the stream header's attributes).
    pub(crate) fn root(&mut self) -> Option<&Element> {
        self.tree.top()
    }

    pub(crate) fn process(&mut self, event: RawEvent) -> Result<Step, StreamError> {
        let len = event.metrics().len();
        let opens_element = matches!(event, RawEvent::ElementHeadOpen(..));
        if self.depth >= self.element_depth
            || (opens_element && self.depth + 1 == self.element_depth)
        {
            self.element_bytes = self.element_bytes.saturating_add(len);
            if self.element_bytes > self.limits.max_element_bytes {
                return Err(StreamError::new(
                    C::PolicyViolation,
                    format!(
                        "element larger than {} bytes",
                        self.limits.max_element_bytes
                    ),
                ));
            }
        }
        match event {
            RawEvent::XmlDeclaration(..) => Ok(Step::Continue),
            RawEvent::ElementHeadOpen(..) => {
                self.depth += 1;
                let nesting = (self.depth + 1).saturating_sub(self.element_depth);
                if nesting > self.limits.max_depth {
                    return Err(StreamError::new(
                        C::PolicyViolation,
                        format!("elements nested deeper than {}", self.limits.max_depth),
                    ));
                }
                self.attributes.clear();
                self.build(event)?;
                Ok(Step::Continue)
            }
            RawEvent::Attribute(_, ref name, _) => {
                if self.attributes.len() >= self.limits.max_attributes {
                    return Err(StreamError::new(
                        C::PolicyViolation,
                        format!(
                            "more than {} attributes on one element",
                            self.limits.max_attributes
                        ),
                    ));
                }
                if self.attributes.contains(name) {
                    return Err(StreamError::new(C::NotWellFormed, "duplicate attribute"));
                }
                self.attributes.push(name.clone());
                self.build(event)?;
                Ok(Step::Continue)
            }
            RawEvent::ElementHeadClose(..) => {
                self.build(event)?;
                if self.depth == 1 && self.element_depth > 1 {
                    Ok(Step::RootOpened)
                } else {
                    Ok(Step::Continue)
                }
            }
            RawEvent::ElementFoot(..) => {
                self.build(event)?;
                self.depth -= 1;
                if self.depth + 1 == self.element_depth {
                    self.element_bytes = 0;
                    let element = if self.depth == 0 {
                        self.tree.root.take()
                    } else {
                        self.tree.unshift_child()
                    };
                    let element = element.ok_or_else(|| {
                        StreamError::new(C::InternalServerError, "tree builder lost an element")
                    })?;
                    Ok(Step::Element(element))
                } else if self.depth == 0 {
                    self.tree.root = None;
                    Ok(Step::RootClosed)
                } else {
                    Ok(Step::Continue)
                }
            }
            RawEvent::Text(_, ref text) => {
                if self.depth >= self.element_depth {
                    self.build(event)?;
                    Ok(Step::Continue)
                } else if text.bytes().all(is_xml_space) {
                    // Whitespace keepalives between stanzas: dropped here so they never
                    // accumulate as text children of the stream element.
                    Ok(Step::Continue)
                } else {
                    Err(StreamError::new(
                        C::BadFormat,
                        "text between top-level elements",
                    ))
                }
            }
        }
    }

    fn build(&mut self, event: RawEvent) -> Result<(), StreamError> {
        self.tree.process_event(event).map_err(|err| match err {
            minidom::Error::MissingNamespace => {
                StreamError::new(C::NotWellFormed, "undeclared namespace prefix")
            }
            other => StreamError::new(C::NotWellFormed, other.to_string()),
        })
    }
}

/// A raw parser configured for XMPP: comments refused, tokens bounded.
pub(crate) fn new_parser(limits: &Limits) -> RawParser {
    RawParser::with_options(rxml::Options {
        // rxml reserves this much scratch space per parser; 8 KiB (its default) still fits
        // any JID or attribute value XMPP uses, and long text is split into several events.
        max_token_length: limits.max_element_bytes.clamp(256, 8192),
        ..rxml::Options::default()
    })
}

pub(crate) fn is_xml_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// The stream error for an rxml failure.
pub(crate) fn parse_error(err: EndOrError) -> StreamError {
    let err = match err {
        EndOrError::NeedMoreData => {
            return StreamError::new(C::NotWellFormed, "incomplete XML");
        }
        EndOrError::Error(err) => err,
    };
    let condition = match err {
        rxml::Error::RestrictedXml("long name or reference" | "event too long") => {
            C::PolicyViolation
        }
        rxml::Error::RestrictedXml("only utf-8 encoding is allowed") => C::UnsupportedEncoding,
        rxml::Error::RestrictedXml(_) | rxml::Error::UndeclaredEntity => C::RestrictedXml,
        // A DTD (`<!DOCTYPE`) is reported as a malformed `<!` section.
        rxml::Error::InvalidSyntax("malformed cdata or comment section start") => C::RestrictedXml,
        rxml::Error::InvalidUtf8Byte(_) => C::UnsupportedEncoding,
        _ => C::NotWellFormed,
    };
    StreamError::new(condition, err.to_string())
}
