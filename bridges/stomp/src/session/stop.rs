//! The ERROR a client gets when the gateway ends its session on purpose: its token
//! expired, its realm account was removed or re-roled, or an operator closed it. A drain
//! (`Shutdown`) sends none, as before: the close code says it.

use bridge_api::{BridgeError, EndKind, StopReason};

use super::{StompError, TOKEN_DESTINATION};

/// The ERROR for `reason`; `None` for a shutdown.
pub(super) fn error_for(reason: &StopReason) -> Option<StompError> {
    let text = reason.client_text().to_owned();
    let (label, detail) = match reason {
        StopReason::Shutdown => return None,
        StopReason::CredentialExpired => (
            "token_expired",
            format!(
                "The token this session was opened with has expired. Reconnect with a fresh \
                 token, or send one before the old one expires: SEND to {TOKEN_DESTINATION} \
                 with the new token in a token header."
            ),
        ),
        StopReason::CredentialRevoked { reason } => (
            "credential_revoked",
            format!("The gateway no longer accepts this session's credentials: {reason}."),
        ),
        StopReason::Closed { code, .. } => (
            "closed_by_operator",
            format!("An operator closed this session (close code {code})."),
        ),
    };
    Some(StompError::policy(label, text, detail))
}

/// What `serve` returns once the ERROR is out. Credential ends are the client's to fix;
/// an operator's close is nobody's fault.
pub(super) fn result(e: StompError) -> Result<(), BridgeError> {
    match e.reason {
        "closed_by_operator" => Ok(()),
        _ => Err(BridgeError::from(e).with_end(EndKind::PolicyViolation)),
    }
}
