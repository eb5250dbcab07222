//! rxml events into minidom elements, with [`Limits`] checked on each event before the tree
//! grows. Both sides share it: the browser's messages (the element is the document root) and
//! the server's stream (elements are children of `<stream:stream>`).
//!
//! Each top-level element gets its own short-lived `TreeBuilder`, seeded with the namespace
//! declarations it inherits; the stream root is never built as an element. Between stanzas
//! an idle stream thus holds its declarations and nothing of minidom's.

use std::collections::BTreeMap;

use minidom::tree_builder::TreeBuilder;
use minidom::Element;
use rxml::error::EndOrError;
use rxml::{NcName, RawEvent, RawParser, RawQName};

use crate::{Limits, StreamError, StreamErrorCondition as C};

/// What one event completed.
pub(crate) enum Step {
    Continue,
    /// The stream root's start tag is complete (server side only).
    RootOpened(Root),
    /// A top-level element closed.
    Element(Element),
    /// The stream root closed (server side only).
    RootClosed,
}

/// Attributes other than namespace declarations: (prefix, name, value).
pub(crate) type Attributes = Vec<(Option<NcName>, NcName, String)>;

/// The stream root's start tag, namespace resolved.
pub(crate) struct Root {
    pub name: NcName,
    pub ns: String,
    pub attributes: Attributes,
}

/// The stream root's start tag while it is being read.
struct RootTag {
    prefix: Option<NcName>,
    name: NcName,
    attributes: Attributes,
}

pub(crate) struct Guard {
    limits: Limits,
    /// Document depth of the elements handed out: 1 when the element is the root, 2 when
    /// it is a child of the stream.
    element_depth: usize,
    /// Open elements, counting one whose start tag is still being read.
    depth: usize,
    /// Declarations in scope for every top-level element: the stream root's, or the
    /// `jabber:client` default a browser's message implies.
    inherited: Vec<(Option<String>, String)>,
    /// The stream root's start tag while it is being read.
    root: Option<RootTag>,
    /// Builds the current top-level element; `None` between elements.
    tree: Option<TreeBuilder>,
    /// Attribute names of the start tag being read: rxml's raw parser leaves duplicate
    /// detection to its consumer.
    attributes: Vec<RawQName>,
    /// XML bytes of the top-level element read so far.
    element_bytes: usize,
}

impl Guard {
    /// For one browser message: its root is the element.
    pub(crate) fn message(limits: &Limits, default_ns: &str) -> Self {
        Guard::new(limits, 1, vec![(None, default_ns.to_owned())])
    }

    /// For a server stream: elements are the root's children.
    pub(crate) fn stream(limits: &Limits) -> Self {
        Guard::new(limits, 2, Vec::new())
    }

    fn new(
        limits: &Limits,
        element_depth: usize,
        inherited: Vec<(Option<String>, String)>,
    ) -> Self {
        Guard {
            limits: limits.clone(),
            element_depth,
            depth: 0,
            inherited,
            root: None,
            tree: None,
            attributes: Vec::new(),
            element_bytes: 0,
        }
    }

    /// Bytes of the unfinished top-level element, for the reader's buffering bound.
    pub(crate) fn element_bytes(&self) -> usize {
        self.element_bytes
    }

    /// True between top-level elements, where nothing stanza-sized is held (not while the
    /// stream root's start tag is still being read: its attributes are being checked).
    pub(crate) fn between_elements(&self) -> bool {
        self.depth < self.element_depth && self.root.is_none()
    }

    /// Drops scratch capacity a large start tag left behind.
    pub(crate) fn shrink(&mut self) {
        if self.between_elements() {
            self.attributes = Vec::new();
        }
    }

    /// Counts `consumed` bytes (what one parser call took from the input) against the
    /// element being read, or the stream root's start tag. The parser's own per-event
    /// lengths are not used for this: a multi-byte character split across reads is
    /// credited as one byte there, which would let a slow sender exceed the limit.
    pub(crate) fn account(&mut self, consumed: usize) -> Result<(), StreamError> {
        if self.depth >= self.element_depth || self.root.is_some() {
            self.add_element_bytes(consumed)?;
        }
        Ok(())
    }

    fn add_element_bytes(&mut self, bytes: usize) -> Result<(), StreamError> {
        self.element_bytes = self.element_bytes.saturating_add(bytes);
        if self.element_bytes > self.limits.max_element_bytes {
            return Err(StreamError::new(
                C::PolicyViolation,
                format!(
                    "element larger than {} bytes",
                    self.limits.max_element_bytes
                ),
            ));
        }
        Ok(())
    }

    /// Handles one event; the bytes that produced it were counted by `account` first.
    pub(crate) fn process(&mut self, event: RawEvent) -> Result<Step, StreamError> {
        let opens_element = matches!(event, RawEvent::ElementHeadOpen(..));
        if opens_element && self.depth < self.element_depth {
            // A top-level element's (or the root's) name was read before anything was
            // open, so `account` did not see it; rxml's length for this one token (at most
            // its token limit) stands in.
            self.add_element_bytes(event.metrics().len())?;
        }
        let in_root = self.depth < self.element_depth && !opens_element;
        match event {
            RawEvent::XmlDeclaration(..) => Ok(Step::Continue),
            RawEvent::ElementHeadOpen(_, (ref prefix, ref name)) => {
                self.depth += 1;
                let nesting = (self.depth + 1).saturating_sub(self.element_depth);
                if nesting > self.limits.max_depth {
                    return Err(StreamError::new(
                        C::PolicyViolation,
                        format!("elements nested deeper than {}", self.limits.max_depth),
                    ));
                }
                self.attributes.clear();
                if self.depth < self.element_depth {
                    self.root = Some(RootTag {
                        prefix: prefix.clone(),
                        name: name.clone(),
                        attributes: Vec::new(),
                    });
                    return Ok(Step::Continue);
                }
                if self.depth == self.element_depth {
                    let inherited: BTreeMap<Option<String>, String> =
                        self.inherited.iter().cloned().collect();
                    self.tree =
                        Some(TreeBuilder::new().with_prefixes_stack(vec![inherited.into()]));
                }
                self.build(event)?;
                Ok(Step::Continue)
            }
            RawEvent::Attribute(_, ref qname, ref value) => {
                if self.attributes.len() >= self.limits.max_attributes {
                    return Err(StreamError::new(
                        C::PolicyViolation,
                        format!(
                            "more than {} attributes on one element",
                            self.limits.max_attributes
                        ),
                    ));
                }
                if self.attributes.contains(qname) {
                    return Err(StreamError::new(C::NotWellFormed, "duplicate attribute"));
                }
                self.attributes.push(qname.clone());
                if !in_root {
                    self.build(event)?;
                    return Ok(Step::Continue);
                }
                let (prefix, name) = qname;
                match (prefix.as_ref().map(NcName::as_str), name.as_str()) {
                    (None, "xmlns") => self.inherited.push((None, value.clone())),
                    (Some("xmlns"), declared) => {
                        self.inherited
                            .push((Some(declared.to_owned()), value.clone()));
                    }
                    _ => {
                        if let Some(root) = self.root.as_mut() {
                            root.attributes
                                .push((prefix.clone(), name.clone(), value.clone()));
                        }
                    }
                }
                Ok(Step::Continue)
            }
            RawEvent::ElementHeadClose(..) => {
                if !in_root {
                    self.build(event)?;
                    return Ok(Step::Continue);
                }
                let Some(RootTag {
                    prefix,
                    name,
                    attributes,
                }) = self.root.take()
                else {
                    return Err(internal("stream root lost"));
                };
                let ns = self.resolve(prefix.as_ref())?.to_owned();
                for (prefix, _, _) in &attributes {
                    if prefix.as_ref().is_some_and(|p| p.as_str() != "xml") {
                        self.resolve(prefix.as_ref())?;
                    }
                }
                self.element_bytes = 0;
                Ok(Step::RootOpened(Root {
                    name,
                    ns,
                    attributes,
                }))
            }
            RawEvent::ElementFoot(..) => {
                self.depth = self
                    .depth
                    .checked_sub(1)
                    .ok_or_else(|| internal("unbalanced element"))?;
                if self.depth + 1 < self.element_depth {
                    return Ok(Step::RootClosed);
                }
                self.build(event)?;
                if self.depth + 1 > self.element_depth {
                    return Ok(Step::Continue);
                }
                self.element_bytes = 0;
                let element = self
                    .tree
                    .take()
                    .and_then(|mut tree| tree.root.take())
                    .ok_or_else(|| internal("tree builder lost an element"))?;
                Ok(Step::Element(element))
            }
            RawEvent::Text(_, ref text) => {
                if self.depth >= self.element_depth {
                    self.build(event)?;
                    Ok(Step::Continue)
                } else if text.bytes().all(is_xml_space) {
                    // Keepalives between stanzas: nothing to build.
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

    /// The namespace a prefix (or the default, for `None`) is bound to on the stream root.
    fn resolve(&self, prefix: Option<&NcName>) -> Result<&str, StreamError> {
        let wanted = prefix.map(NcName::as_str);
        self.inherited
            .iter()
            .rev()
            .find(|(declared, _)| declared.as_deref() == wanted)
            .map(|(_, ns)| ns.as_str())
            .ok_or_else(|| StreamError::new(C::NotWellFormed, "undeclared namespace prefix"))
    }

    fn build(&mut self, event: RawEvent) -> Result<(), StreamError> {
        let tree = self
            .tree
            .as_mut()
            .ok_or_else(|| internal("no element is open"))?;
        tree.process_event(event).map_err(|err| match err {
            minidom::Error::MissingNamespace => {
                StreamError::new(C::NotWellFormed, "undeclared namespace prefix")
            }
            other => StreamError::new(C::NotWellFormed, other.to_string()),
        })
    }
}

fn internal(what: &str) -> StreamError {
    StreamError::new(C::InternalServerError, what)
}

/// A raw parser configured for XMPP: comments refused, tokens bounded. `input_len` is the
/// whole input when it is known (a browser's message), as no token can be longer.
pub(crate) fn new_parser(limits: &Limits, input_len: Option<usize>) -> RawParser {
    use rxml::WithOptions;
    // rxml reserves this much scratch space up front; 8 KiB (its default) still fits any
    // JID or attribute value XMPP uses, and long text is split into several events.
    let stream_tokens = limits.max_element_bytes.clamp(256, 8192);
    RawParser::with_options(rxml::Options {
        max_token_length: input_len.map_or(stream_tokens, |len| len.clamp(16, stream_tokens)),
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
        // `<!` followed by anything but `--` or `[CDATA[` is a markup declaration: a DTD.
        rxml::Error::InvalidSyntax("malformed cdata or comment section start") => C::RestrictedXml,
        rxml::Error::InvalidUtf8Byte(_) => C::UnsupportedEncoding,
        _ => C::NotWellFormed,
    };
    StreamError::new(condition, err.to_string())
}
