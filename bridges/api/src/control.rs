//! What the gateway may do to a live session besides shutting down: end it on purpose (an
//! operator's close, an expired or revoked credential) with a reason the bridge can tell its
//! client in the protocol's own words, and follow who the client is now (a protocol-level
//! login, a refreshed token).
//!
//! One [`SessionControl`] per session, shared by the gateway's session registry and the
//! bridge. Its stop token is the session's `shutdown`, so a bridge that only watches
//! `shutdown` still ends; one that wants to say why reads [`SessionControl::stop_reason`].

use std::sync::{Arc, Mutex, OnceLock};
use std::time::SystemTime;

use tokio_util::sync::CancellationToken;

use crate::Principal;

/// Why the gateway asked a session to end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The gateway is draining or shutting down.
    Shutdown,
    /// An operator closed the session. `code` is the transport's close code the client
    /// will see (a WebSocket close code), `reason` the text for the client.
    Closed { code: u16, reason: String },
    /// The credential the session was admitted with (a JWT's `exp`) has passed.
    CredentialExpired,
    /// The principal's account was removed or its roles changed (a realm reload).
    CredentialRevoked { reason: String },
}

impl StopReason {
    /// The text a bridge puts in its protocol's error (STOMP ERROR, XMPP stream error,
    /// AMQP Connection.Close).
    pub fn client_text(&self) -> &str {
        match self {
            StopReason::Shutdown => "server shutting down",
            StopReason::Closed { reason, .. } if reason.is_empty() => "closed by the operator",
            StopReason::Closed { reason, .. } => reason,
            StopReason::CredentialExpired => "token expired",
            StopReason::CredentialRevoked { reason } => reason,
        }
    }

    /// True when the client's credentials are the cause (expired or revoked): protocols have
    /// a dedicated answer for that (XMPP `<policy-violation/>`, AMQP 320).
    pub fn is_credential(&self) -> bool {
        matches!(
            self,
            StopReason::CredentialExpired | StopReason::CredentialRevoked { .. }
        )
    }
}

/// Told when a session's credential deadline changes, so one timer for all sessions can
/// end each at its deadline (the gateway's registry implements it).
pub trait ExpiryWatch: Send + Sync {
    fn expires(&self, session: u64, at: SystemTime);
}

/// The gateway's handle on one live session, shared with its bridge.
pub struct SessionControl {
    id: u64,
    stop: CancellationToken,
    reason: OnceLock<StopReason>,
    principal: Mutex<Option<Principal>>,
    watch: Option<Arc<dyn ExpiryWatch>>,
}

impl SessionControl {
    /// `stop` becomes the session's `shutdown` token; `principal` is who the handshake
    /// admitted, if anyone.
    pub fn new(
        id: u64,
        stop: CancellationToken,
        principal: Option<Principal>,
        watch: Option<Arc<dyn ExpiryWatch>>,
    ) -> Arc<Self> {
        let control = Arc::new(SessionControl {
            id,
            stop,
            reason: OnceLock::new(),
            principal: Mutex::new(None),
            watch,
        });
        control.set_principal(principal);
        control
    }

    /// A control with no registry behind it (tests, tools).
    pub fn detached(stop: CancellationToken, principal: Option<Principal>) -> Arc<Self> {
        Self::new(0, stop, principal, None)
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    /// The session's stop token (the same as `Session::shutdown`).
    pub fn token(&self) -> &CancellationToken {
        &self.stop
    }

    /// Ask the session to end for `reason`. The first reason given wins.
    pub fn stop(&self, reason: StopReason) {
        let _ = self.reason.set(reason);
        self.stop.cancel();
    }

    /// Why the session was asked to end: `None` while it was not; `Shutdown` when the
    /// gateway's shutdown reached it without a reason of its own.
    pub fn stop_reason(&self) -> Option<StopReason> {
        if let Some(r) = self.reason.get() {
            return Some(r.clone());
        }
        self.stop.is_cancelled().then_some(StopReason::Shutdown)
    }

    /// Who the client is now: the handshake's principal, or whoever the bridge's own login
    /// or a token refresh made it.
    pub fn principal(&self) -> Option<Principal> {
        self.lock().clone()
    }

    /// Record the principal a protocol-level login or a token refresh established. A new
    /// `expires_at` moves the session's deadline (later or earlier).
    pub fn set_principal(&self, principal: Option<Principal>) {
        let expires = principal.as_ref().and_then(|p| p.expires_at);
        *self.lock() = principal;
        if let (Some(at), Some(watch)) = (expires, &self.watch) {
            watch.expires(self.id, at);
        }
    }

    /// When the current credential stops being valid.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.lock().as_ref().and_then(|p| p.expires_at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Principal>> {
        self.principal.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for SessionControl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionControl")
            .field("id", &self.id)
            .field("stop_reason", &self.stop_reason())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::AuthMethod;
    use std::time::Duration;

    fn jwt_user(exp: SystemTime) -> Principal {
        Principal {
            name: "ann".into(),
            roles: vec![],
            method: AuthMethod::Bearer,
            expires_at: Some(exp),
        }
    }

    #[test]
    fn the_first_reason_wins_and_shutdown_is_the_default() {
        let parent = CancellationToken::new();
        let c = SessionControl::detached(parent.child_token(), None);
        assert_eq!(c.stop_reason(), None);
        parent.cancel();
        assert_eq!(c.stop_reason(), Some(StopReason::Shutdown));

        let c = SessionControl::detached(CancellationToken::new(), None);
        c.stop(StopReason::CredentialExpired);
        c.stop(StopReason::Shutdown);
        assert!(c.token().is_cancelled());
        assert_eq!(c.stop_reason(), Some(StopReason::CredentialExpired));
        assert_eq!(c.stop_reason().unwrap().client_text(), "token expired");
    }

    #[test]
    fn a_new_principal_moves_the_deadline() {
        struct Seen(Mutex<Vec<(u64, SystemTime)>>);
        impl ExpiryWatch for Seen {
            fn expires(&self, session: u64, at: SystemTime) {
                self.0.lock().unwrap().push((session, at));
            }
        }
        let seen = Arc::new(Seen(Mutex::new(vec![])));
        let t0 = SystemTime::now() + Duration::from_secs(60);
        let c = SessionControl::new(
            7,
            CancellationToken::new(),
            Some(jwt_user(t0)),
            Some(seen.clone()),
        );
        let t1 = t0 + Duration::from_secs(60);
        c.set_principal(Some(jwt_user(t1)));
        assert_eq!(c.expires_at(), Some(t1));
        assert_eq!(*seen.0.lock().unwrap(), vec![(7, t0), (7, t1)]);
    }
}
