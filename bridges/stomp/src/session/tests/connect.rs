//! CONNECT / STOMP: versions, heart-beats, logins, and frames out of place.

use bridge_api::testkit;
use bridge_api::EndKind;
use protocol_stomp::{Command, Decoded};
use serde_json::json;

use super::{body, bridge, bridge_with, bridge_with_alice, header, Stomp};

/// What CONNECTED says to a client on `subprotocol` (None: no subprotocol) sending
/// `headers`.
async fn connected(subprotocol: Option<&str>, headers: &[(&str, &str)]) -> protocol_stomp::Frame {
    let bridge = bridge(json!({}));
    let mut builder = testkit::session();
    if let Some(p) = subprotocol {
        builder = builder.subprotocol(p);
    }
    let mut s = Stomp::open(&bridge, builder);
    s.send(Command::Connect, headers);
    let f = s.expect(Command::Connected).await;
    s.hang_up().await;
    f
}

/// The session fails at CONNECT with `message`, ending as `kind`.
async fn refused(
    bridge: &std::sync::Arc<dyn bridge_api::Bridge>,
    subprotocol: Option<&str>,
    headers: &[(&str, &str)],
    kind: EndKind,
    message: &str,
) -> protocol_stomp::Frame {
    let mut builder = testkit::session();
    if let Some(p) = subprotocol {
        builder = builder.subprotocol(p);
    }
    let mut s = Stomp::open(bridge, builder);
    s.send(Command::Connect, headers);
    s.fails_with(kind, message).await
}

#[tokio::test]
async fn the_highest_common_version_wins() {
    let f = connected(Some("v12.stomp"), &[("accept-version", "1.0,1.1,1.2")]).await;
    assert_eq!(header(&f, "version"), "1.2");
    assert_eq!(header(&f, "session"), "session-1");
    assert!(header(&f, "server").starts_with("gateway/"));
    // The client's order does not matter, nor unknown versions among known ones.
    let f = connected(None, &[("accept-version", "1.1, 9.9 ,1.0")]).await;
    assert_eq!(header(&f, "version"), "1.1");
}

#[tokio::test]
async fn the_stomp_command_connects_too() {
    let bridge = bridge(json!({}));
    let mut s = Stomp::open(&bridge, testkit::session());
    s.send(Command::Stomp, &[("accept-version", "1.2"), ("host", "x")]);
    let f = s.expect(Command::Connected).await;
    assert_eq!(header(&f, "version"), "1.2");
    s.hang_up().await;
}

#[tokio::test]
async fn the_subprotocol_caps_the_version() {
    let all = [("accept-version", "1.0,1.1,1.2")];
    let f = connected(Some("v11.stomp"), &all).await;
    assert_eq!(header(&f, "version"), "1.1");
    let f = connected(Some("v10.stomp"), &all).await;
    assert_eq!(header(&f, "version"), "1.0");
    // 1.0 has no heart-beating, so CONNECTED does not mention it.
    assert_eq!(f.headers.get("heart-beat"), None);
    let f = connected(Some("stomp"), &all).await;
    assert_eq!(header(&f, "version"), "1.2");
}

#[tokio::test]
async fn no_accept_version_means_1_0() {
    let f = connected(None, &[("heart-beat", "1000,1000")]).await;
    assert_eq!(header(&f, "version"), "1.0");
    assert_eq!(f.headers.get("heart-beat"), None);
}

#[tokio::test]
async fn an_unsupported_version_is_refused() {
    let bridge = bridge(json!({}));
    let e = refused(
        &bridge,
        None,
        &[("accept-version", "2.0")],
        EndKind::ProtocolError,
        "unsupported STOMP version (supported: 1.0,1.1,1.2)",
    )
    .await;
    assert_eq!(body(&e), "Supported protocol versions are 1.0,1.1,1.2.");
}

#[tokio::test]
async fn a_version_the_subprotocol_excludes_is_refused() {
    let bridge = bridge(json!({}));
    let e = refused(
        &bridge,
        Some("v11.stomp"),
        &[("accept-version", "1.2")],
        EndKind::ProtocolError,
        // The message header lists every version the bridge speaks; the body what this
        // subprotocol allows.
        "unsupported STOMP version (supported: 1.0,1.1,1.2)",
    )
    .await;
    assert_eq!(body(&e), "Supported protocol versions are 1.0,1.1.");
}

#[tokio::test]
async fn heart_beats_are_granted_down_to_the_floor() {
    let hb = |asked: &'static str| async move {
        let f = connected(None, &[("accept-version", "1.2"), ("heart-beat", asked)]).await;
        header(&f, "heart-beat").to_string()
    };
    assert_eq!(hb("1000,1000").await, "1000,1000");
    assert_eq!(hb("500,500").await, "1000,1000");
    assert_eq!(hb("0,0").await, "0,0");
    // CONNECTED's heart-beat is ours: how often we send (the client's cy), how often we
    // expect to hear (the client's cx).
    assert_eq!(hb("0,3000").await, "3000,0");
    assert_eq!(hb("3000,0").await, "0,3000");
    // No header: no heart-beats either way.
    let f = connected(None, &[("accept-version", "1.1")]).await;
    assert_eq!(header(&f, "heart-beat"), "0,0");
}

#[tokio::test]
async fn the_heart_beat_setting_is_what_the_gateway_offers() {
    let bridge = bridge(json!({ "heart_beat": [5000, 0] }));
    let mut s = Stomp::open(&bridge, testkit::session());
    s.send(
        Command::Connect,
        &[("accept-version", "1.2"), ("heart-beat", "1000,1000")],
    );
    let f = s.expect(Command::Connected).await;
    assert_eq!(header(&f, "heart-beat"), "5000,0");
    s.hang_up().await;
}

#[tokio::test(start_paused = true)]
async fn the_gateway_sends_the_heart_beats_it_granted() {
    let bridge = bridge(json!({}));
    let mut s = Stomp::open(&bridge, testkit::session());
    s.send(
        Command::Connect,
        &[("accept-version", "1.2"), ("heart-beat", "0,1000")],
    );
    s.expect(Command::Connected).await;
    let start = tokio::time::Instant::now();
    assert_eq!(s.next_item().await, Some(Decoded::HeartBeat));
    assert_eq!(s.next_item().await, Some(Decoded::HeartBeat));
    let elapsed = start.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(500)
            && elapsed <= std::time::Duration::from_millis(1000),
        "{elapsed:?}"
    );
    s.hang_up().await;
}

#[tokio::test(start_paused = true)]
async fn a_client_silent_past_the_grace_is_disconnected() {
    let bridge = bridge(json!({}));
    let mut s = Stomp::open(&bridge, testkit::session());
    s.send(
        Command::Connect,
        &[("accept-version", "1.2"), ("heart-beat", "1000,0")],
    );
    s.expect(Command::Connected).await;
    let start = tokio::time::Instant::now();
    let e = s
        .fails_with(EndKind::PolicyViolation, "heart-beat timeout")
        .await;
    // Grace 2.0 on 1000 ms: more than 2 s of silence.
    assert!(start.elapsed() > std::time::Duration::from_secs(2));
    assert!(
        body(&e).contains("the negotiated heart-beat is 1s"),
        "{e:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_heart_beat_keeps_the_session() {
    let bridge = bridge(json!({}));
    let mut s = Stomp::open(&bridge, testkit::session());
    s.send(
        Command::Connect,
        &[("accept-version", "1.2"), ("heart-beat", "1000,0")],
    );
    s.expect(Command::Connected).await;
    for _ in 0..4 {
        tokio::time::sleep(std::time::Duration::from_millis(900)).await;
        s.client.send(bridge_api::Message::text("\n"));
    }
    s.sync("alive").await;
    s.hang_up().await;
}

#[tokio::test]
async fn a_malformed_heart_beat_is_refused() {
    let bridge = bridge(json!({}));
    let e = refused(
        &bridge,
        None,
        &[("accept-version", "1.2"), ("heart-beat", "soon")],
        EndKind::ProtocolError,
        "bad heart-beat header",
    )
    .await;
    assert!(body(&e).contains("\"soon\""), "{e:?}");
}

#[tokio::test]
async fn a_login_the_realm_knows_connects() {
    let bridge = bridge_with_alice(json!({}));
    let mut s = Stomp::open(&bridge, testkit::session());
    s.send(
        Command::Connect,
        &[
            ("accept-version", "1.2"),
            ("login", "alice"),
            ("passcode", "pw"),
        ],
    );
    let f = s.expect(Command::Connected).await;
    assert_eq!(header(&f, "user-name"), "alice");
    s.hang_up().await;
}

#[tokio::test]
async fn a_wrong_passcode_is_refused() {
    let bridge = bridge_with_alice(json!({}));
    let e = refused(
        &bridge,
        None,
        &[
            ("accept-version", "1.2"),
            ("login", "alice"),
            ("passcode", "nope"),
        ],
        EndKind::PolicyViolation,
        "login failed",
    )
    .await;
    assert_eq!(body(&e), "Invalid login or passcode for user \"alice\".");
}

#[tokio::test]
async fn a_login_the_gateway_is_too_busy_to_check_is_try_again_later() {
    let bridge = bridge_with(json!({}), std::sync::Arc::new(testkit::BusyRealm));
    let mut s = Stomp::open(&bridge, testkit::session());
    s.send(
        Command::Connect,
        &[
            ("accept-version", "1.2"),
            ("login", "alice"),
            ("passcode", "pw"),
        ],
    );
    let e = s.expect(Command::Error).await;
    assert_eq!(header(&e, "message"), "login busy");
    assert!(body(&e).contains("try again"), "{}", body(&e));
    let err = s.result().await.expect_err("serve fails");
    // Not the client's fault: the gateway could not check the login now.
    assert_eq!(
        err.source_side(),
        bridge_api::ErrorSource::Internal,
        "{err}"
    );
    assert_eq!(err.end_kind(), EndKind::TryAgainLater, "{err}");
}

#[tokio::test]
async fn without_login_a_session_is_anonymous() {
    let f = connected(None, &[("accept-version", "1.2")]).await;
    assert_eq!(f.headers.get("user-name"), None);
}

#[tokio::test]
async fn require_login_refuses_an_anonymous_connect() {
    let bridge = bridge_with_alice(json!({ "require_login": true }));
    refused(
        &bridge,
        None,
        &[("accept-version", "1.2")],
        EndKind::PolicyViolation,
        "login required",
    )
    .await;
}

#[tokio::test]
async fn require_login_accepts_a_login_or_a_handshake_identity() {
    let bridge = bridge_with_alice(json!({ "require_login": true }));
    let mut s = Stomp::open(&bridge, testkit::session());
    s.send(
        Command::Connect,
        &[
            ("accept-version", "1.2"),
            ("login", "alice"),
            ("passcode", "pw"),
        ],
    );
    assert_eq!(
        header(&s.expect(Command::Connected).await, "user-name"),
        "alice"
    );
    s.hang_up().await;

    // The handshake's identity wins over (and needs no) STOMP login.
    let mut s = Stomp::open(
        &bridge,
        testkit::session().principal(testkit::principal("bob", &[])),
    );
    s.send(Command::Connect, &[("accept-version", "1.2")]);
    assert_eq!(
        header(&s.expect(Command::Connected).await, "user-name"),
        "bob"
    );
    s.hang_up().await;
}

#[tokio::test]
async fn a_frame_before_connect_is_refused() {
    let bridge = bridge(json!({}));
    let mut s = Stomp::open(&bridge, testkit::session());
    s.send(Command::Send, &[("destination", "/queue/a")]);
    let e = s.fails_with(EndKind::ProtocolError, "not connected").await;
    assert_eq!(
        body(&e),
        "The first frame must be CONNECT or STOMP, got SEND."
    );
}

#[tokio::test]
async fn a_second_connect_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(Command::Connect, &[("accept-version", "1.2")]);
    s.fails_with(EndKind::ProtocolError, "already connected")
        .await;
}
