//! How sessions end: one ERROR naming the failing frame's receipt, or a clean close.

use bridge_api::{EndKind, Message};
use protocol_stomp::Command;
use serde_json::json;

use super::{body, bridge, frame, header, Stomp};

#[tokio::test]
async fn an_error_names_the_failing_frames_receipt() {
    let mut s = Stomp::on_defaults().await;
    s.send(
        Command::Send,
        &[("destination", "/bogus"), ("receipt", "r-7")],
    );
    let e = s
        .fails_with(EndKind::ProtocolError, "invalid destination")
        .await;
    assert_eq!(header(&e, "receipt-id"), "r-7");
    assert_eq!(header(&e, "content-type"), "text/plain");
}

#[tokio::test]
async fn an_error_without_receipt_names_none() {
    let mut s = Stomp::on_defaults().await;
    s.send(Command::Unsubscribe, &[("id", "x")]);
    let e = s
        .fails_with(EndKind::ProtocolError, "unknown subscription")
        .await;
    assert_eq!(e.headers.get("receipt-id"), None);
}

#[tokio::test]
async fn an_error_before_connect_names_the_receipt_too() {
    let bridge = bridge(json!({}));
    let mut s = Stomp::open(&bridge, bridge_api::testkit::session());
    s.send(Command::Subscribe, &[("id", "0"), ("receipt", "early")]);
    let e = s.fails_with(EndKind::ProtocolError, "not connected").await;
    assert_eq!(header(&e, "receipt-id"), "early");
}

#[tokio::test]
async fn a_policy_error_names_the_receipt() {
    let bridge = bridge(json!({ "max_subscriptions": 0 }));
    let mut s = Stomp::connected(&bridge).await;
    s.send(
        Command::Subscribe,
        &[("id", "0"), ("destination", "/topic/a"), ("receipt", "sub")],
    );
    let e = s
        .fails_with(EndKind::PolicyViolation, "too many subscriptions")
        .await;
    assert_eq!(header(&e, "receipt-id"), "sub");
}

#[tokio::test]
async fn frames_after_the_failing_one_are_not_handled() {
    let mut s = Stomp::on_defaults().await;
    // Both in one WebSocket message: the second never runs, so no RECEIPT.
    let mut bytes = frame(Command::Ack, &[("id", "nope")], "")
        .payload()
        .to_vec();
    bytes.extend_from_slice(
        &frame(
            Command::Begin,
            &[("transaction", "t"), ("receipt", "r")],
            "",
        )
        .payload(),
    );
    s.client.send(Message::binary(bytes));
    s.fails_with(EndKind::ProtocolError, "unknown id in ACK")
        .await;
}

#[tokio::test]
async fn later_messages_are_not_handled_either() {
    let mut s = Stomp::on_defaults().await;
    s.send(Command::Ack, &[("id", "nope")]);
    s.send(Command::Begin, &[("transaction", "t"), ("receipt", "r")]);
    s.fails_with(EndKind::ProtocolError, "unknown id in ACK")
        .await;
}

#[tokio::test]
async fn malformed_bytes_end_the_session() {
    let mut s = Stomp::on_defaults().await;
    s.client.send(Message::text("HELLO\n\n\0"));
    s.fails_with(EndKind::ProtocolError, "malformed frame")
        .await;
}

#[tokio::test]
async fn a_frame_over_the_size_limit_ends_the_session() {
    let bridge = bridge(json!({ "max_frame_size": 256 }));
    let mut s = Stomp::connected(&bridge).await;
    s.send_body(
        Command::Send,
        &[("destination", "/queue/big")],
        &"x".repeat(1024),
    );
    s.fails_with(EndKind::ProtocolError, "malformed frame")
        .await;
}

#[tokio::test]
async fn a_frame_split_across_messages_is_reassembled() {
    let mut s = Stomp::on_defaults().await;
    let whole = frame(
        Command::Begin,
        &[("transaction", "t"), ("receipt", "split")],
        "",
    )
    .payload();
    let (a, b) = whole.split_at(7);
    s.client.send(Message::binary(a.to_vec()));
    s.client.send(Message::binary(b.to_vec()));
    s.receipt("split").await;
    s.hang_up().await;
}

#[tokio::test]
async fn a_server_frame_from_the_client_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(Command::Message, &[("destination", "/queue/a")]);
    let e = s
        .fails_with(EndKind::ProtocolError, "unexpected command")
        .await;
    assert_eq!(
        body(&e),
        "MESSAGE is a server frame; clients cannot send it."
    );
}

#[tokio::test]
async fn an_error_after_subscriptions_still_ends_the_outbox() {
    let mut s = Stomp::on_defaults().await;
    s.send(
        Command::Subscribe,
        &[("id", "t"), ("destination", "/topic/t")],
    );
    s.send(
        Command::Subscribe,
        &[("id", "q"), ("destination", "/queue/q")],
    );
    s.send_body(Command::Send, &[("destination", "/topic/t")], "t");
    s.message("t").await;
    s.send(Command::Unsubscribe, &[("id", "nope")]);
    s.fails_with(EndKind::ProtocolError, "unknown subscription")
        .await;
}

#[tokio::test]
async fn disconnect_with_a_receipt_ends_normally() {
    let mut s = Stomp::on_defaults().await;
    s.send(Command::Disconnect, &[("receipt", "bye")]);
    s.receipt("bye").await;
    s.result().await.expect("DISCONNECT is a normal end");
}

#[tokio::test]
async fn disconnect_ignores_what_follows_it() {
    let mut s = Stomp::on_defaults().await;
    let mut bytes = frame(Command::Disconnect, &[], "").payload().to_vec();
    bytes.extend_from_slice(&frame(Command::Ack, &[("id", "nope")], "").payload());
    s.client.send(Message::binary(bytes));
    s.send(Command::Begin, &[("transaction", "t"), ("receipt", "r")]);
    s.result().await.expect("DISCONNECT is a normal end");
}

#[tokio::test]
async fn a_client_that_leaves_ends_normally() {
    let bridge = bridge(json!({}));
    let s = Stomp::connected(&bridge).await;
    s.hang_up().await;
    // Even before CONNECT.
    let s = Stomp::open(&bridge, bridge_api::testkit::session());
    s.hang_up().await;
}

#[tokio::test]
async fn shutdown_ends_normally_without_an_error_frame() {
    let mut s = Stomp::on_defaults().await;
    s.send(
        Command::Subscribe,
        &[("id", "t"), ("destination", "/topic/t")],
    );
    s.sync("subscribed").await;
    s.client.shutdown();
    s.result().await.expect("a drain is a normal end");
}

#[tokio::test]
async fn the_session_ends_after_background_start() {
    // `start` runs the broker's gauges on the service's background; sessions are
    // unaffected.
    let bridge = bridge(json!({}));
    bridge.start(bridge_api::Background::new("s"));
    let mut s = Stomp::connected(&bridge).await;
    s.send(
        Command::Subscribe,
        &[("id", "q"), ("destination", "/queue/q")],
    );
    s.send_body(Command::Send, &[("destination", "/queue/q")], "x");
    s.message("x").await;
    s.send(Command::Disconnect, &[("receipt", "bye")]);
    s.receipt("bye").await;
    s.result().await.expect("a normal end");
}
