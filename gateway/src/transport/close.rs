//! How a session's end reaches a WebSocket client: the close codes (RFC 6455 section 7.4.1)
//! live here, not in the seam, because only this transport has them.

use bridge_api::{BridgeError, End, EndKind, StopReason};

pub mod code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    /// Text that is not UTF-8: the transport refuses it before a bridge could see it.
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    /// Over the transport's message size limit, likewise never a bridge's call.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const BAD_GATEWAY: u16 = 1014;
}

/// A close frame as the transport sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

/// The close code a client sees for `kind`.
pub fn ws_code(kind: EndKind) -> u16 {
    match kind {
        EndKind::Normal => code::NORMAL,
        EndKind::GoingAway => code::GOING_AWAY,
        EndKind::ProtocolError => code::PROTOCOL_ERROR,
        EndKind::UnsupportedData => code::UNSUPPORTED_DATA,
        EndKind::PolicyViolation => code::POLICY_VIOLATION,
        EndKind::Internal => code::INTERNAL_ERROR,
        EndKind::TryAgainLater => code::TRY_AGAIN_LATER,
        EndKind::BackendFailed => code::BAD_GATEWAY,
    }
}

impl From<End> for CloseFrame {
    fn from(end: End) -> Self {
        CloseFrame {
            code: ws_code(end.kind),
            reason: end.reason,
        }
    }
}

/// Close reasons must fit a control frame (125 bytes with the code).
pub fn truncate_reason(reason: &str) -> String {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    reason[..end].to_string()
}

/// The close frame for a session the gateway ended on purpose, whatever its bridge returned:
/// the operator's chosen code, or 1008 for a credential that expired or was revoked. `None`
/// for a shutdown, which keeps the bridge's own account of the end.
pub fn close_for_stop(reason: &StopReason) -> Option<CloseFrame> {
    match reason {
        StopReason::Shutdown => None,
        StopReason::Closed { code, reason } => Some(CloseFrame {
            code: *code,
            reason: truncate_reason(if reason.is_empty() {
                "closed by the operator"
            } else {
                reason
            }),
        }),
        StopReason::CredentialExpired | StopReason::CredentialRevoked { .. } => Some(CloseFrame {
            code: code::POLICY_VIOLATION,
            reason: truncate_reason(reason.client_text()),
        }),
    }
}

/// The close frame for a session whose bridge returned `result`.
pub fn close_for_bridge_result(
    result: &Result<(), BridgeError>,
    shutting_down: bool,
) -> CloseFrame {
    match result {
        Err(e) => CloseFrame {
            code: ws_code(e.end_kind()),
            reason: truncate_reason(e.message()),
        },
        Ok(()) if shutting_down => CloseFrame {
            code: code::GOING_AWAY,
            reason: "server shutting down".into(),
        },
        Ok(()) => CloseFrame {
            code: code::NORMAL,
            reason: String::new(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_by_side_and_shutdown() {
        let backend = Err(BridgeError::backend("refused"));
        assert_eq!(close_for_bridge_result(&backend, false).code, 1014);
        let client = Err(BridgeError::client("bad"));
        assert_eq!(close_for_bridge_result(&client, false).code, 1008);
        let internal = Err(BridgeError::internal("bug"));
        assert_eq!(close_for_bridge_result(&internal, false).code, 1011);
        assert_eq!(close_for_bridge_result(&Ok(()), true).code, 1001);
        assert_eq!(close_for_bridge_result(&Ok(()), false).code, 1000);
    }

    #[test]
    fn a_stop_on_purpose_names_its_cause() {
        let expired = close_for_stop(&StopReason::CredentialExpired).unwrap();
        assert_eq!(
            (expired.code, expired.reason.as_str()),
            (1008, "token expired")
        );
        let closed = StopReason::Closed {
            code: 4000,
            reason: "maintenance".into(),
        };
        assert_eq!(close_for_stop(&closed).unwrap().code, 4000);
        assert_eq!(close_for_stop(&StopReason::Shutdown), None);
    }

    #[test]
    fn a_chosen_end_wins_over_the_side() {
        let binary = Err(BridgeError::client("text only").with_end(EndKind::UnsupportedData));
        assert_eq!(close_for_bridge_result(&binary, false).code, 1003);
    }

    #[test]
    fn every_end_kind_has_its_code() {
        let codes = [
            (EndKind::Normal, 1000),
            (EndKind::GoingAway, 1001),
            (EndKind::ProtocolError, 1002),
            (EndKind::UnsupportedData, 1003),
            (EndKind::PolicyViolation, 1008),
            (EndKind::Internal, 1011),
            (EndKind::TryAgainLater, 1013),
            (EndKind::BackendFailed, 1014),
        ];
        for (kind, code) in codes {
            assert_eq!(ws_code(kind), code, "{kind:?}");
        }
    }

    #[test]
    fn reasons_fit_a_control_frame() {
        let long = "é".repeat(100);
        let r = truncate_reason(&long);
        assert!(r.len() <= 123);
        assert!(long.starts_with(&r));
    }
}
