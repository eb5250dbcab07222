//! The stream error a client gets when the gateway ends its session on purpose (RFC 6120
//! 4.9, framed as RFC 7395 3.6 has it: the error, then `<close/>`): `<policy-violation/>`
//! with the reason as its text, "token expired" for an expired token. A client refreshes
//! its token by reconnecting with a new one. An operator's close is told the same way:
//! `<reset/>` would invite the client to reconnect at once, which is not what a close is for.

use bridge_api::{BridgeError, EndKind, Outbox, SessionInfo, StopReason};
use protocol_xmpp::{StreamError, StreamErrorCondition as C};

use super::failure::{send, send_open};
use crate::metrics::{self, Side};

/// The stream error for `reason`; `None` for a shutdown, which keeps its
/// `<system-shutdown/>`.
pub(super) fn error_for(reason: &StopReason) -> Option<StreamError> {
    match reason {
        StopReason::Shutdown => None,
        other => Some(StreamError::new(C::PolicyViolation, other.client_text())),
    }
}

/// Tells the client why the gateway ended its session; `None` when it did not (a shutdown
/// or no stop at all). `opened`: the client already has its `<open/>` answer.
pub(super) async fn tell(
    reason: Option<StopReason>,
    info: &SessionInfo,
    outbox: &Outbox,
    opened: bool,
    domain: Option<&str>,
) -> Option<Result<(), BridgeError>> {
    let reason = reason?;
    let error = error_for(&reason)?;
    tracing::info!(
        service = %info.service,
        session = info.id,
        "xmpp session ended by the gateway: {}",
        error.text
    );
    metrics::stream_error(error.condition, Side::Gateway);
    if !opened {
        send_open(outbox, domain).await;
    }
    send(outbox, protocol_xmpp::stream_error_to_client(&error)).await;
    send(outbox, protocol_xmpp::client_close().to_owned()).await;
    Some(if reason.is_credential() {
        Err(BridgeError::client(error.text).with_end(EndKind::PolicyViolation))
    } else {
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_stops_are_policy_violations_with_the_reason() {
        let xml = |r: StopReason| {
            protocol_xmpp::stream_error_to_client(&error_for(&r).expect("an error"))
        };
        assert_eq!(
            xml(StopReason::CredentialExpired),
            "<stream:error xmlns:stream=\"http://etherx.jabber.org/streams\">\
             <policy-violation xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\"/>\
             <text xmlns=\"urn:ietf:params:xml:ns:xmpp-streams\">token expired</text>\
             </stream:error>"
        );
        let revoked = xml(StopReason::CredentialRevoked {
            reason: "user <ann> was removed".into(),
        });
        assert!(
            revoked.contains("<policy-violation")
                && revoked.contains("user &lt;ann&gt; was removed"),
            "{revoked}"
        );
        let closed = xml(StopReason::Closed {
            code: 4000,
            reason: "maintenance".into(),
        });
        assert!(closed.contains(">maintenance</text>"), "{closed}");
        assert_eq!(error_for(&StopReason::Shutdown), None);
    }
}
