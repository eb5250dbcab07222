//! RFC 6120 section 4.9 stream errors: what ends a stream, on either side.

use minidom::Element;

use crate::NS_STREAMS;

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

/// Every condition with its element name, in RFC order.
const NAMES: [(StreamErrorCondition, &str); 25] = [
    (StreamErrorCondition::BadFormat, "bad-format"),
    (
        StreamErrorCondition::BadNamespacePrefix,
        "bad-namespace-prefix",
    ),
    (StreamErrorCondition::Conflict, "conflict"),
    (
        StreamErrorCondition::ConnectionTimeout,
        "connection-timeout",
    ),
    (StreamErrorCondition::HostGone, "host-gone"),
    (StreamErrorCondition::HostUnknown, "host-unknown"),
    (
        StreamErrorCondition::ImproperAddressing,
        "improper-addressing",
    ),
    (
        StreamErrorCondition::InternalServerError,
        "internal-server-error",
    ),
    (StreamErrorCondition::InvalidFrom, "invalid-from"),
    (StreamErrorCondition::InvalidNamespace, "invalid-namespace"),
    (StreamErrorCondition::InvalidXml, "invalid-xml"),
    (StreamErrorCondition::NotAuthorized, "not-authorized"),
    (StreamErrorCondition::NotWellFormed, "not-well-formed"),
    (StreamErrorCondition::PolicyViolation, "policy-violation"),
    (
        StreamErrorCondition::RemoteConnectionFailed,
        "remote-connection-failed",
    ),
    (StreamErrorCondition::Reset, "reset"),
    (
        StreamErrorCondition::ResourceConstraint,
        "resource-constraint",
    ),
    (StreamErrorCondition::RestrictedXml, "restricted-xml"),
    (StreamErrorCondition::SeeOtherHost, "see-other-host"),
    (StreamErrorCondition::SystemShutdown, "system-shutdown"),
    (
        StreamErrorCondition::UndefinedCondition,
        "undefined-condition",
    ),
    (
        StreamErrorCondition::UnsupportedEncoding,
        "unsupported-encoding",
    ),
    (
        StreamErrorCondition::UnsupportedFeature,
        "unsupported-feature",
    ),
    (
        StreamErrorCondition::UnsupportedStanzaType,
        "unsupported-stanza-type",
    ),
    (
        StreamErrorCondition::UnsupportedVersion,
        "unsupported-version",
    ),
];

impl StreamErrorCondition {
    /// The element name, e.g. `policy-violation`.
    pub fn as_str(self) -> &'static str {
        NAMES
            .iter()
            .find(|(condition, _)| *condition == self)
            .map_or("undefined-condition", |(_, name)| name)
    }

    pub fn from_name(name: &str) -> Option<Self> {
        NAMES
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(condition, _)| *condition)
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
        let mut condition = None;
        let mut text = String::new();
        for child in element.children().filter(|child| child.has_ns(NS_STREAMS)) {
            if child.name() == "text" {
                text = child.text();
            } else if condition.is_none() {
                condition = Some(
                    StreamErrorCondition::from_name(child.name())
                        .unwrap_or(StreamErrorCondition::UndefinedCondition),
                );
            }
        }
        StreamError {
            condition: condition.unwrap_or(StreamErrorCondition::UndefinedCondition),
            text,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_condition_has_its_rfc_name() {
        assert_eq!(NAMES.len(), 25);
        for (condition, name) in NAMES {
            assert_eq!(condition.as_str(), name);
            assert_eq!(StreamErrorCondition::from_name(name), Some(condition));
            assert_eq!(condition.to_string(), name);
        }
        assert_eq!(
            StreamErrorCondition::NotWellFormed.as_str(),
            "not-well-formed"
        );
        assert_eq!(StreamErrorCondition::from_name("text"), None);
        assert_eq!(StreamErrorCondition::from_name("Conflict"), None);
    }

    #[test]
    fn reads_a_received_stream_error() {
        let element: Element = "<error xmlns='http://etherx.jabber.org/streams'>\
            <text xmlns='urn:ietf:params:xml:ns:xmpp-streams' xml:lang='en'>Replaced</text>\
            <conflict xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>\
            <extra xmlns='urn:example'/></error>"
            .parse()
            .unwrap();
        assert_eq!(
            StreamError::from_element(&element),
            StreamError::new(StreamErrorCondition::Conflict, "Replaced")
        );
        let unknown: Element = "<error xmlns='http://etherx.jabber.org/streams'>\
            <new-condition xmlns='urn:ietf:params:xml:ns:xmpp-streams'/></error>"
            .parse()
            .unwrap();
        assert_eq!(
            StreamError::from_element(&unknown),
            StreamError::new(StreamErrorCondition::UndefinedCondition, "")
        );
        let empty: Element = "<error xmlns='http://etherx.jabber.org/streams'/>"
            .parse()
            .unwrap();
        assert_eq!(
            StreamError::from_element(&empty).condition,
            StreamErrorCondition::UndefinedCondition
        );
    }
}
