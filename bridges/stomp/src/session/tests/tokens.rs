//! Sessions the gateway ends on purpose (an expired or revoked credential, an operator's
//! close) and token refresh by SEND to /gateway/token.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bridge_api::testkit::{self, StaticRealm};
use bridge_api::{AuthMethod, Bridge, EndKind, ErrorSource, Principal, StopReason};
use protocol_stomp::Command;
use serde_json::json;

use super::{body, bridge_with, bridge_with_alice, header, Stomp};

const HOUR: Duration = Duration::from_secs(3600);

/// Whole seconds, as a JWT's `exp` is.
fn at(from_now: Duration) -> SystemTime {
    let secs = (SystemTime::now() + from_now)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    UNIX_EPOCH + Duration::from_secs(secs)
}

/// Who a JWT handshake admits.
fn bearer(name: &str, roles: &[&str], expires_at: SystemTime) -> Principal {
    Principal {
        name: name.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        method: AuthMethod::Bearer,
        expires_at: Some(expires_at),
    }
}

/// A service where `trader`s may subscribe to prices and `admin`s also to audit.
fn acl() -> serde_json::Value {
    json!({
        "acl": [
            { "roles": ["trader"], "subscribe": ["/topic/prices.#"] },
            { "roles": ["admin"], "subscribe": ["/topic/audit"], "send": ["/topic/audit"] }
        ]
    })
}

/// The bridge whose realm verifies these tokens (all for `ann` unless named otherwise).
fn realm() -> StaticRealm {
    StaticRealm::new()
        .token("fresh", "ann", &["trader"], at(HOUR))
        .token("promoted", "ann", &["trader", "admin"], at(2 * HOUR))
        .token("demoted", "ann", &[], at(HOUR))
        .token("bobs", "bob", &["trader"], at(HOUR))
        .token("stale", "ann", &["trader"], at(Duration::ZERO) - HOUR)
}

/// `ann`, admitted with a token expiring in a minute, CONNECTed.
async fn ann(bridge: &Arc<dyn Bridge>, roles: &[&str]) -> Stomp {
    let p = bearer("ann", roles, at(Duration::from_secs(60)));
    let mut s = Stomp::open(bridge, testkit::session().principal(p));
    s.send(Command::Connect, &[("accept-version", "1.2")]);
    s.expect(Command::Connected).await;
    s
}

/// The session ends with this ERROR and no close of the bridge's own: the transport
/// closes with the code the stop calls for.
async fn stopped_with(s: &mut Stomp, message: &str) -> (protocol_stomp::Frame, bool) {
    let error = s.expect(Command::Error).await;
    assert_eq!(header(&error, "message"), message, "{error:?}");
    let result = s.result().await;
    assert!(s.end_queued().is_none(), "the bridge queued its own close");
    if let Err(e) = &result {
        assert_eq!(e.source_side(), ErrorSource::Client, "{e}");
        assert_eq!(e.end_kind(), EndKind::PolicyViolation, "{e}");
    }
    (error, result.is_ok())
}

#[tokio::test]
async fn an_expired_token_gets_error_token_expired() {
    let bridge = bridge_with(json!({}), Arc::new(realm()));
    let mut s = ann(&bridge, &["trader"]).await;
    s.client.stop(StopReason::CredentialExpired);
    let (e, ok) = stopped_with(&mut s, "token expired").await;
    assert!(!ok, "an expired credential is the client's to fix");
    assert!(body(&e).contains("Reconnect with a fresh token"), "{e:?}");
    assert!(body(&e).contains("/gateway/token"), "{e:?}");
}

#[tokio::test]
async fn a_revoked_login_gets_the_reason() {
    let bridge = bridge_with_alice(json!({}));
    let mut s = Stomp::connected_with(
        &bridge,
        &[
            ("accept-version", "1.2"),
            ("login", "alice"),
            ("passcode", "pw"),
        ],
    )
    .await;
    s.client.stop(StopReason::CredentialRevoked {
        reason: "user alice was removed from the realm".into(),
    });
    let (e, _) = stopped_with(&mut s, "user alice was removed from the realm").await;
    assert!(body(&e).contains("no longer accepts"), "{e:?}");
}

#[tokio::test]
async fn an_operator_close_gets_its_reason_and_ends_cleanly() {
    let mut s = Stomp::on_defaults().await;
    s.client.stop(StopReason::Closed {
        code: 4000,
        reason: "maintenance at 18:00".into(),
    });
    let (e, ok) = stopped_with(&mut s, "maintenance at 18:00").await;
    assert!(ok, "an operator's close is no failure of the session");
    assert!(body(&e).contains("close code 4000"), "{e:?}");
}

#[tokio::test]
async fn a_shutdown_sends_no_error() {
    let mut s = Stomp::on_defaults().await;
    s.client.shutdown();
    s.result().await.expect("a drain ends normally");
}

#[tokio::test]
async fn a_realm_login_becomes_the_sessions_principal() {
    let bridge = bridge_with_alice(json!({}));
    let s = Stomp::connected_with(
        &bridge,
        &[
            ("accept-version", "1.2"),
            ("login", "alice"),
            ("passcode", "pw"),
        ],
    )
    .await;
    let p = s.client.control().principal().expect("a principal");
    assert_eq!(
        (p.name.as_str(), p.roles.as_slice()),
        ("alice", &["trader".to_string()][..])
    );
    s.hang_up().await;

    let s = Stomp::connected(&bridge).await;
    assert_eq!(s.client.control().principal(), None, "anonymous stays so");
    s.hang_up().await;
}

#[tokio::test]
async fn a_refresh_moves_the_expiry_and_the_receipt_says_when() {
    let bridge = bridge_with(json!({}), Arc::new(realm()));
    let mut s = ann(&bridge, &["trader"]).await;
    s.send(
        Command::Send,
        &[
            ("destination", "/gateway/token"),
            ("token", "fresh"),
            ("receipt", "r1"),
        ],
    );
    let r = s.expect(Command::Receipt).await;
    assert_eq!(header(&r, "receipt-id"), "r1");
    let expires: u64 = header(&r, "expires").parse().expect("unix seconds");
    let want = at(HOUR);
    assert_eq!(UNIX_EPOCH + Duration::from_secs(expires), want);
    assert_eq!(s.client.control().expires_at(), Some(want));
    // The token as the body works too, and the session carries on as before.
    s.send_body(
        Command::Send,
        &[("destination", "/gateway/token"), ("receipt", "r2")],
        "promoted\n",
    );
    let r = s.expect(Command::Receipt).await;
    assert_eq!(header(&r, "receipt-id"), "r2");
    assert_eq!(s.client.control().expires_at(), Some(at(2 * HOUR)));
    s.sync("after").await;
    s.hang_up().await;
}

#[tokio::test]
async fn a_refresh_re_picks_the_acl_grant_from_the_new_roles() {
    let bridge = bridge_with(acl(), Arc::new(realm()));
    let mut s = ann(&bridge, &["trader"]).await;
    s.send(
        Command::Subscribe,
        &[
            ("id", "p"),
            ("destination", "/topic/prices.X"),
            ("receipt", "1"),
        ],
    );
    s.receipt("1").await;
    s.send(
        Command::Send,
        &[
            ("destination", "/gateway/token"),
            ("token", "promoted"),
            ("receipt", "2"),
        ],
    );
    s.receipt("2").await;
    let p = s.client.control().principal().expect("a principal");
    assert!(p.has_role("admin"), "{p:?}");
    // Allowed now that the token says admin.
    s.send(
        Command::Subscribe,
        &[
            ("id", "a"),
            ("destination", "/topic/audit"),
            ("receipt", "3"),
        ],
    );
    s.receipt("3").await;
    s.hang_up().await;
}

#[tokio::test]
async fn a_refresh_that_takes_away_a_held_subscription_ends_the_session() {
    let bridge = bridge_with(acl(), Arc::new(realm()));
    let mut s = ann(&bridge, &["trader"]).await;
    s.send(
        Command::Subscribe,
        &[
            ("id", "p"),
            ("destination", "/topic/prices.X"),
            ("receipt", "1"),
        ],
    );
    s.receipt("1").await;
    s.send(
        Command::Send,
        &[("destination", "/gateway/token"), ("token", "demoted")],
    );
    let e = s
        .fails_with(EndKind::PolicyViolation, "token refused: access denied")
        .await;
    assert!(
        body(&e).starts_with("Subscription p to /topic/prices.X: SUBSCRIBE"),
        "{e:?}"
    );
}

/// A refresh with `token` ends the session with this ERROR message, answering `receipt`.
async fn refused(token: &str, message: &str) -> protocol_stomp::Frame {
    let bridge = bridge_with(json!({}), Arc::new(realm()));
    let mut s = ann(&bridge, &["trader"]).await;
    let before = s.client.control().expires_at();
    s.send(
        Command::Send,
        &[
            ("destination", "/gateway/token"),
            ("token", token),
            ("receipt", "r"),
        ],
    );
    let e = s.fails_with(EndKind::PolicyViolation, message).await;
    assert_eq!(header(&e, "receipt-id"), "r");
    assert_eq!(s.client.control().expires_at(), before, "nothing changed");
    e
}

#[tokio::test]
async fn another_subjects_token_is_refused() {
    let e = refused("bobs", "token refused: subject mismatch").await;
    assert!(body(&e).contains("\"bob\""), "{e:?}");
    assert!(body(&e).contains("\"ann\""), "{e:?}");
}

#[tokio::test]
async fn a_token_that_does_not_verify_is_refused() {
    let e = refused("forged", "token refused: invalid token signature").await;
    assert!(body(&e).contains("Reconnect with a valid token"), "{e:?}");
}

#[tokio::test]
async fn an_expired_refresh_token_is_refused() {
    refused("stale", "token refused: token expired").await;
}

#[tokio::test]
async fn a_refresh_needs_a_token_and_a_user() {
    let bridge = bridge_with(json!({}), Arc::new(realm()));
    let mut s = ann(&bridge, &["trader"]).await;
    s.send(Command::Send, &[("destination", "/gateway/token")]);
    s.fails_with(EndKind::ProtocolError, "missing token header")
        .await;

    let mut s = Stomp::connected(&bridge).await;
    s.send(
        Command::Send,
        &[("destination", "/gateway/token"), ("token", "fresh")],
    );
    s.fails_with(
        EndKind::PolicyViolation,
        "token refused: no user to refresh",
    )
    .await;
}
