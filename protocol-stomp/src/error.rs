//! Decode errors. Their `Display` text is sent to clients in ERROR frames,
//! so it is short, names the offending input, and never echoes more than a
//! bounded snippet of it (see [`snippet`]).

/// Why a byte stream is not valid STOMP. After any error the stream is out
/// of sync and the connection should be closed (after an ERROR frame).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum DecodeError {
    #[error("unknown command: {0:?}")]
    UnknownCommand(String),
    #[error("header line without ':' or name: {0:?}")]
    HeaderWithoutColon(String),
    /// Holds the offending sequence, e.g. `\t` (control characters escaped).
    #[error("undefined escape sequence '{0}' in header")]
    BadEscape(String),
    #[error("invalid content-length: {0:?}")]
    InvalidContentLength(String),
    #[error("no NUL after the content-length body bytes")]
    MissingNul,
    #[error("frame larger than {limit} bytes")]
    FrameTooLarge { limit: usize },
    #[error("more than {limit} headers")]
    TooManyHeaders { limit: usize },
    #[error("header line longer than {limit} bytes")]
    HeaderTooLong { limit: usize },
    #[error("command or header is not valid UTF-8")]
    NotUtf8,
}

/// Longest piece of client input quoted back in an error message.
const SNIPPET_MAX: usize = 64;

/// Lossy, length-bounded copy of client input for error messages, so a
/// hostile line cannot bloat the ERROR frame or break its UTF-8.
pub(crate) fn snippet(raw: &[u8]) -> String {
    let cut = raw.len().min(SNIPPET_MAX);
    let mut s = String::from_utf8_lossy(&raw[..cut]).into_owned();
    if raw.len() > cut {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_client_friendly() {
        assert_eq!(
            DecodeError::HeaderWithoutColon("foo".into()).to_string(),
            "header line without ':' or name: \"foo\""
        );
        assert_eq!(
            DecodeError::BadEscape("\\t".into()).to_string(),
            "undefined escape sequence '\\t' in header"
        );
    }

    #[test]
    fn snippet_is_bounded() {
        let long = vec![b'a'; 1000];
        assert_eq!(snippet(&long).chars().count(), SNIPPET_MAX + 1);
        assert_eq!(snippet(b"ab\xffc"), "ab\u{fffd}c");
    }
}
