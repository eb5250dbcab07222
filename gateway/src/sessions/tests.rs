use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bridge_api::{AuthMethod, Principal, QueueDepth, SessionInfo, StopReason};
use tokio_util::sync::CancellationToken;

use super::SessionRegistry;

fn info(id: u64, expires_at: Option<SystemTime>) -> SessionInfo {
    SessionInfo {
        id,
        service: "svc".into(),
        peer: SocketAddr::from(([127, 0, 0, 1], 1000)),
        origin: None,
        principal: Some(Principal {
            name: "ann".into(),
            roles: vec![],
            method: AuthMethod::Bearer,
            expires_at,
        }),
        subprotocol: None,
        transport: "websocket",
    }
}

#[tokio::test]
async fn sessions_leave_when_their_guard_drops() {
    let registry = SessionRegistry::new();
    let i = Arc::new(info(1, None));
    let control = registry.control(1, CancellationToken::new(), &i);
    let guard = registry.register(i, control, QueueDepth::none());
    assert_eq!(registry.len(), 1);
    assert!(registry.get(1).is_some());
    drop(guard);
    assert_eq!(registry.len(), 0);
}

#[tokio::test]
async fn an_expired_credential_stops_the_session_and_a_refresh_moves_it() {
    let registry = SessionRegistry::new();
    let stop = CancellationToken::new();
    registry.start_expiry(stop.clone());
    let soon = SystemTime::now() + Duration::from_millis(100);
    let a = Arc::new(info(1, Some(soon)));
    let ca = registry.control(1, CancellationToken::new(), &a);
    let _ga = registry.register(a, ca.clone(), QueueDepth::none());
    let b = Arc::new(info(2, Some(soon)));
    let cb = registry.control(2, CancellationToken::new(), &b);
    let _gb = registry.register(b.clone(), cb.clone(), QueueDepth::none());
    // Session 2 refreshes its token before the deadline.
    let mut refreshed = b.principal.clone().unwrap();
    refreshed.expires_at = Some(SystemTime::now() + Duration::from_secs(3600));
    cb.set_principal(Some(refreshed));

    tokio::time::timeout(Duration::from_secs(5), ca.token().cancelled())
        .await
        .expect("expired session stopped");
    assert_eq!(ca.stop_reason(), Some(StopReason::CredentialExpired));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(cb.stop_reason(), None);
    assert_eq!(registry.expiry.scheduled(), 1);
    stop.cancel();
}

#[tokio::test]
async fn revoking_ends_only_the_condemned() {
    let registry = SessionRegistry::new();
    let a = Arc::new(info(1, None));
    let ca = registry.control(1, CancellationToken::new(), &a);
    let _ga = registry.register(a, ca.clone(), QueueDepth::none());
    let b = Arc::new(info(2, None));
    let cb = registry.control(2, CancellationToken::new(), &b);
    let _gb = registry.register(b, cb.clone(), QueueDepth::none());
    let mut bob = cb.principal().unwrap();
    bob.name = "bob".into();
    cb.set_principal(Some(bob));
    let n = registry.revoke_where(|p| (p.name == "bob").then(|| "account removed".to_string()));
    assert_eq!(n, 1);
    assert_eq!(ca.stop_reason(), None);
    assert_eq!(
        cb.stop_reason(),
        Some(StopReason::CredentialRevoked {
            reason: "account removed".into()
        })
    );
}
