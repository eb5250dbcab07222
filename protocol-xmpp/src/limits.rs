//! Bounds on what a peer may make the parser hold, and a stanza rate limiter.

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

/// Token bucket: `burst` stanzas at once, refilled at `per_second`. Time comes from the caller
/// (milliseconds on any monotonic clock) so the codec stays free of clocks.
#[derive(Debug, Clone)]
pub struct RateLimiter {
    per_second: u32,
    burst: u32,
    tokens_milli: u64,
    last_ms: u64,
}

impl RateLimiter {
    pub fn new(per_second: u32, burst: u32) -> Self {
        todo!("{per_second} {burst}")
    }

    /// Takes one token; false when the peer is over its rate.
    pub fn allow(&mut self, now_ms: u64) -> bool {
        todo!("{now_ms}")
    }
}
