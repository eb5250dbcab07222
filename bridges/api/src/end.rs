//! Why a session ends, in words every transport can signal its own way (a WebSocket close
//! code today), so a bridge never names a transport's codes.

/// Why a session ended, as the client should learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndKind {
    /// Done: either side finished as the protocol expects.
    Normal,
    /// The gateway is going down, or gave up on a client that went quiet.
    GoingAway,
    /// The client broke the bridge's protocol.
    ProtocolError,
    /// The client sent a kind of message the protocol does not carry (e.g. binary where
    /// only text is allowed).
    UnsupportedData,
    /// The client broke a rule: a limit, an access check, a login.
    PolicyViolation,
    /// A fault in the gateway itself.
    Internal,
    /// The gateway cannot serve the session right now; the client may retry later.
    TryAgainLater,
    /// The backend failed, refused or went away.
    BackendFailed,
}

/// An end the bridge asks for: the kind, and a short reason for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct End {
    pub kind: EndKind,
    pub reason: String,
}

impl End {
    pub fn new(kind: EndKind, reason: impl Into<String>) -> Self {
        End {
            kind,
            reason: reason.into(),
        }
    }
}
