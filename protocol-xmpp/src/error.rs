//! RFC 6120 section 4.9 stream errors: what ends a stream, on either side.

use minidom::Element;

/// Defined stream error conditions (RFC 6120 section 4.9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamErrorCondition {
    BadFormat,
    BadNamespacePrefix,
    Conflict,
    ConnectionTimeout,
    HostGone,
    HostUnknown,
    ImproperAddressing,
    InternalServerError,
    InvalidFrom,
    InvalidNamespace,
    InvalidXml,
    NotAuthorized,
    NotWellFormed,
    PolicyViolation,
    RemoteConnectionFailed,
    Reset,
    ResourceConstraint,
    RestrictedXml,
    SeeOtherHost,
    SystemShutdown,
    UndefinedCondition,
    UnsupportedEncoding,
    UnsupportedFeature,
    UnsupportedStanzaType,
    UnsupportedVersion,
}

impl StreamErrorCondition {
    /// The element name, e.g. `policy-violation`.
    pub fn as_str(self) -> &'static str {
        todo!("{self:?}")
    }

    pub fn from_name(name: &str) -> Option<Self> {
        todo!("{name}")
    }
}

impl std::fmt::Display for StreamErrorCondition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A stream error with a human-readable reason (sent as `<text/>`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{condition}: {text}")]
pub struct StreamError {
    pub condition: StreamErrorCondition,
    pub text: String,
}

impl StreamError {
    pub fn new(condition: StreamErrorCondition, text: impl Into<String>) -> Self {
        StreamError {
            condition,
            text: text.into(),
        }
    }

    /// Reads a received `<stream:error/>` element; unknown conditions become
    /// `undefined-condition`.
    pub fn from_element(element: &Element) -> Self {
        todo!("{element:?}")
    }
}
