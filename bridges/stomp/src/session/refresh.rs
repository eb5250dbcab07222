//! Token refresh on a live session: `SEND` to [`TOKEN_DESTINATION`] with the new JWT in a
//! `token` header (or as the body). The gateway verifies it, keeps the session if it names
//! the same subject, takes its roles (the destination ACL is resolved again) and moves the
//! session's expiry to its `exp`; the RECEIPT carries `expires:<unix seconds>`. A token
//! that does not verify, or is someone else's, ends the session with an ERROR that says
//! why, as any refused frame does.

use std::time::UNIX_EPOCH;

use protocol_stomp::Frame;

use super::{FrameResult, StompError, StompSession};
use crate::acl::Verb;

/// The destination a client sends its new token to; never forwarded to a broker.
pub const TOKEN_DESTINATION: &str = "/gateway/token";

pub fn describe() {
    metrics::describe_counter!(
        "gateway_stomp_token_refreshes_total",
        "Token refreshes on live STOMP sessions (SEND to /gateway/token), by result"
    );
}

impl StompSession<'_> {
    fn count_refresh(&self, result: &'static str) {
        metrics::counter!("gateway_stomp_token_refreshes_total", "service" => self.info.service.to_string(), "result" => result)
            .increment(1);
    }

    fn refused(&self, reason: &'static str, why: &str, detail: String) -> StompError {
        self.count_refresh(reason);
        StompError::policy(reason, format!("token refused: {why}"), detail)
    }

    pub(super) async fn refresh_token(&mut self, frame: &Frame) -> FrameResult {
        let token = match frame.headers.get("token") {
            Some(t) => t.trim().to_owned(),
            None => String::from_utf8_lossy(&frame.body).trim().to_owned(),
        };
        if token.is_empty() {
            return Err(StompError::protocol(
                "missing_header",
                "missing token header",
                format!("SEND to {TOKEN_DESTINATION} carries the new token in a token header (or as the body)."),
            ));
        }
        let Some(current) = self.principal.as_ref().map(|p| p.name.clone()) else {
            return Err(self.refused(
                "token_anonymous",
                "no user to refresh",
                "This session has no authenticated user; open it with a token to refresh one."
                    .into(),
            ));
        };
        let new = match self.bridge.credentials.check_token(&token).await {
            Ok(p) => p,
            Err(why) => {
                return Err(self.refused(
                    "token_invalid",
                    &why,
                    format!("The token sent to {TOKEN_DESTINATION} was not accepted ({why}). Reconnect with a valid token."),
                ))
            }
        };
        if new.name != current {
            return Err(self.refused(
                "token_subject",
                "subject mismatch",
                format!(
                    "The new token is for {:?} but this session is {current:?}; a refresh must keep the subject (sub).",
                    new.name
                ),
            ));
        }
        let grant = self.bridge.acl.grant(Some(&new));
        // Fewer roles may take away a subscription the session holds: that ends it, as a
        // SUBSCRIBE refused by the ACL would.
        for (id, sub) in &self.subs {
            let dest = sub.destination.to_string();
            if !self.bridge.acl.allows(&grant, Verb::Subscribe, &dest) {
                return Err(self.refused(
                    "token_roles",
                    "access denied",
                    format!(
                        "Subscription {id} to {dest}: {}",
                        crate::acl::denied(&self.info.service, Verb::Subscribe, &dest, Some(&new))
                    ),
                ));
            }
        }
        if let Some(secs) = new
            .expires_at
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok())
        {
            self.receipt_extra
                .push(("expires", secs.as_secs().to_string()));
        }
        tracing::debug!(session = self.info.id, user = %new.name, "token refreshed");
        self.count_refresh("ok");
        self.acl = grant;
        self.principal = Some(new.clone());
        self.control.set_principal(Some(new));
        Ok(())
    }
}
