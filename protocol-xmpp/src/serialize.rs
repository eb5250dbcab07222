//! A small XML writer over minidom's `Element`.
//!
//! minidom's own writer (rxml's encoder) picks prefixes itself, writing `stream:features` as
//! an auto-prefixed or default-namespace `features`; browser clients look for the
//! `stream:` prefix Prosody sends, and each side needs different declarations in scope.
//! This writer always prefixes the streams namespace with `stream:`, writes every other
//! element unprefixed with `xmlns` where the default changes, and escapes so that what it
//! writes parses back to the same element.

use minidom::{Element, Node};
use rxml::XMLNS_XML;

use crate::NS_STREAM;

/// The namespace declarations the surrounding XML already provides.
#[derive(Clone, Copy)]
pub(crate) struct Scope<'a> {
    /// The default namespace; `None` when nothing is declared, which differs from
    /// `xmlns=""` because the browser side reads an undeclared default as `jabber:client`.
    pub default_ns: Option<&'a str>,
    /// Whether `xmlns:stream` is declared.
    pub stream_prefix: bool,
}

/// Appends `element` to `out`. Nesting depth is bounded by the parser's limits for parsed
/// elements, so the writer recurses.
pub(crate) fn write_element(out: &mut String, element: &Element, scope: Scope<'_>) {
    let ns = element.ns();
    let is_stream = ns == NS_STREAM;
    let mut inner = scope;
    out.push('<');
    if is_stream {
        out.push_str("stream:");
        out.push_str(element.name());
        if !scope.stream_prefix {
            out.push_str(" xmlns:stream=\"");
            out.push_str(NS_STREAM);
            out.push('"');
            inner.stream_prefix = true;
        }
    } else {
        out.push_str(element.name());
        if scope.default_ns != Some(ns.as_str()) {
            push_attribute(out, "xmlns", &ns);
        }
    }
    if !is_stream {
        inner.default_ns = Some(&ns);
    }

    let mut generated = 0;
    for ((attr_ns, name), value) in element.attrs().iter() {
        if attr_ns.is_none() {
            push_attribute(out, name.as_str(), value);
        } else if attr_ns.as_str() == XMLNS_XML {
            push_prefixed_attribute(out, "xml", name.as_str(), value);
        } else if attr_ns.as_str() == NS_STREAM && inner.stream_prefix {
            push_prefixed_attribute(out, "stream", name.as_str(), value);
        } else {
            // Rare in XMPP; a fresh prefix per attribute keeps this stateless.
            let prefix = format!("a{generated}");
            generated += 1;
            push_prefixed_attribute(out, "xmlns", &prefix, attr_ns.as_str());
            push_prefixed_attribute(out, &prefix, name.as_str(), value);
        }
    }

    if element.nodes().next().is_none() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    for node in element.nodes() {
        match node {
            Node::Element(child) => write_element(out, child, inner),
            Node::Text(text) => push_escaped(out, text, false),
        }
    }
    out.push_str("</");
    if is_stream {
        out.push_str("stream:");
    }
    out.push_str(element.name());
    out.push('>');
}

/// ` name="value"`, escaped for a double-quoted value.
pub(crate) fn push_attribute(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    push_attribute_tail(out, name, value);
}

/// ` prefix:name="value"`.
fn push_prefixed_attribute(out: &mut String, prefix: &str, name: &str, value: &str) {
    out.push(' ');
    out.push_str(prefix);
    out.push(':');
    push_attribute_tail(out, name, value);
}

fn push_attribute_tail(out: &mut String, name: &str, value: &str) {
    out.push_str(name);
    out.push_str("=\"");
    push_escaped(out, value, true);
    out.push('"');
}

/// Escapes markup characters. In attribute values whitespace other than space is written
/// as a character reference, which survives attribute-value normalisation; `\r` is
/// escaped in text too, which survives line-end normalisation. Characters XML 1.0 cannot
/// carry at all (most C0 controls, U+FFFE/U+FFFF) become U+FFFD so the output stays
/// well-formed whatever the element holds.
pub(crate) fn push_escaped(out: &mut String, text: &str, attribute: bool) {
    let mut start = 0;
    for (at, c) in text.char_indices() {
        let replacement = match c {
            '&' => "&amp;",
            '<' => "&lt;",
            '>' => "&gt;",
            '"' if attribute => "&quot;",
            '\'' if attribute => "&apos;",
            '\t' if attribute => "&#9;",
            '\n' if attribute => "&#10;",
            '\r' => "&#13;",
            '\t' | '\n' => continue,
            c if is_forbidden(c) => "\u{FFFD}",
            _ => continue,
        };
        out.push_str(&text[start..at]);
        out.push_str(replacement);
        start = at + c.len_utf8();
    }
    out.push_str(&text[start..]);
}

fn is_forbidden(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1F}' | '\u{FFFE}' | '\u{FFFF}')
}
