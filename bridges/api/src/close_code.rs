//! WebSocket close codes (RFC 6455 section 7.4) as the seam named them before [`EndKind`].
//! Kept until the STOMP bridge moves to EndKind; nothing else may use them.

use crate::EndKind;

pub const NORMAL: u16 = 1000;
pub const GOING_AWAY: u16 = 1001;
pub const PROTOCOL_ERROR: u16 = 1002;
pub const UNSUPPORTED_DATA: u16 = 1003;
pub const INVALID_PAYLOAD: u16 = 1007;
pub const POLICY_VIOLATION: u16 = 1008;
pub const MESSAGE_TOO_BIG: u16 = 1009;
pub const INTERNAL_ERROR: u16 = 1011;
pub const TRY_AGAIN_LATER: u16 = 1013;
pub const BAD_GATEWAY: u16 = 1014;

/// The kind the transport maps back to `code` (codes without a kind of their own become
/// the nearest one: both are client faults no bridge reports).
pub(crate) fn end_kind(code: u16) -> EndKind {
    match code {
        NORMAL => EndKind::Normal,
        GOING_AWAY => EndKind::GoingAway,
        PROTOCOL_ERROR | INVALID_PAYLOAD => EndKind::ProtocolError,
        UNSUPPORTED_DATA => EndKind::UnsupportedData,
        POLICY_VIOLATION | MESSAGE_TOO_BIG => EndKind::PolicyViolation,
        TRY_AGAIN_LATER => EndKind::TryAgainLater,
        BAD_GATEWAY => EndKind::BackendFailed,
        _ => EndKind::Internal,
    }
}

/// The code a WebSocket client sees for `kind`.
pub(crate) fn for_end(kind: EndKind) -> u16 {
    match kind {
        EndKind::Normal => NORMAL,
        EndKind::GoingAway => GOING_AWAY,
        EndKind::ProtocolError => PROTOCOL_ERROR,
        EndKind::UnsupportedData => UNSUPPORTED_DATA,
        EndKind::PolicyViolation => POLICY_VIOLATION,
        EndKind::Internal => INTERNAL_ERROR,
        EndKind::TryAgainLater => TRY_AGAIN_LATER,
        EndKind::BackendFailed => BAD_GATEWAY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_a_bridge_asks_for_survive_the_round_trip() {
        for code in [
            NORMAL,
            GOING_AWAY,
            PROTOCOL_ERROR,
            UNSUPPORTED_DATA,
            POLICY_VIOLATION,
            INTERNAL_ERROR,
            TRY_AGAIN_LATER,
            BAD_GATEWAY,
        ] {
            assert_eq!(for_end(end_kind(code)), code);
        }
    }
}
