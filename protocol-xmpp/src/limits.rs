//! Bounds on what a peer may make the parser hold.

/// Limits applied while parsing, before memory grows with the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest top-level element (a stanza, with all its children), in bytes of XML.
    pub max_element_bytes: usize,
    /// Deepest nesting inside a top-level element (the element itself is depth 1).
    pub max_depth: usize,
    /// Most attributes on one element.
    pub max_attributes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_element_bytes: 256 * 1024,
            max_depth: 32,
            max_attributes: 64,
        }
    }
}
