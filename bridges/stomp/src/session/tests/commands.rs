//! SEND, SUBSCRIBE, UNSUBSCRIBE, ACK, NACK, transactions and the destination ACL.

use bridge_api::testkit;
use bridge_api::EndKind;
use protocol_stomp::Command;
use serde_json::json;

use super::{body, bridge, bridge_with_alice, header, Stomp};

const SEND: Command = Command::Send;
const SUB: Command = Command::Subscribe;

#[tokio::test]
async fn subscribe_without_id_is_refused_on_1_2() {
    let mut s = Stomp::on_defaults().await;
    s.send(SUB, &[("destination", "/queue/a")]);
    let e = s
        .fails_with(EndKind::ProtocolError, "missing id header")
        .await;
    assert_eq!(body(&e), "SUBSCRIBE needs a id header.");
}

#[tokio::test]
async fn on_1_0_the_destination_names_a_subscription_without_id() {
    let bridge = bridge(json!({}));
    let mut s = Stomp::connected_with(&bridge, &[]).await;
    s.send(SUB, &[("destination", "/queue/a")]);
    s.send_body(SEND, &[("destination", "/queue/a")], "one");
    let m = s.message("one").await;
    assert_eq!(header(&m, "subscription"), "/queue/a");
    // 1.0 has no `ack` header: auto subscriptions need none anyway.
    assert_eq!(m.headers.get("ack"), None);
    s.send(
        Command::Unsubscribe,
        &[("destination", "/queue/a"), ("receipt", "u")],
    );
    s.receipt("u").await;
    s.hang_up().await;
}

#[tokio::test]
async fn a_duplicate_subscription_id_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(SUB, &[("id", "0"), ("destination", "/queue/a")]);
    s.send(SUB, &[("id", "0"), ("destination", "/topic/b")]);
    s.fails_with(EndKind::ProtocolError, "duplicate subscription id")
        .await;
}

#[tokio::test]
async fn a_queue_keeps_a_send_for_a_later_subscriber() {
    let mut s = Stomp::on_defaults().await;
    s.send_body(
        SEND,
        &[
            ("destination", "/queue/x"),
            ("content-type", "text/plain"),
            ("colour", "blue"),
            ("receipt", "sent"),
        ],
        "hello",
    );
    s.receipt("sent").await;
    s.send(SUB, &[("id", "s1"), ("destination", "/queue/x")]);
    let m = s.message("hello").await;
    assert_eq!(header(&m, "destination"), "/queue/x");
    assert_eq!(header(&m, "subscription"), "s1");
    assert!(header(&m, "message-id").starts_with("m-"));
    assert_eq!(header(&m, "content-type"), "text/plain");
    assert_eq!(header(&m, "colour"), "blue");
    // The SEND's own receipt is not passed on.
    assert_eq!(m.headers.get("receipt"), None);
    assert_eq!(m.headers.get("ack"), None);
    s.hang_up().await;
}

#[tokio::test]
async fn a_queue_message_goes_to_one_of_two_consumers() {
    let bridge = bridge(json!({}));
    let mut a = Stomp::connected(&bridge).await;
    let mut b = Stomp::connected(&bridge).await;
    a.send(SUB, &[("id", "a"), ("destination", "/queue/work")]);
    a.sync("a").await;
    b.send(SUB, &[("id", "b"), ("destination", "/queue/work")]);
    b.sync("b").await;
    b.send_body(SEND, &[("destination", "/queue/work")], "1");
    b.send_body(SEND, &[("destination", "/queue/work")], "2");
    // Round-robin: each consumer gets one.
    let got_a = body(&a.expect(Command::Message).await).to_string();
    let got_b = body(&b.expect(Command::Message).await).to_string();
    let mut got = [got_a, got_b];
    got.sort();
    assert_eq!(got, ["1", "2"]);
    a.hang_up().await;
    b.hang_up().await;
}

#[tokio::test]
async fn a_topic_send_reaches_a_subscriber_after_its_receipt() {
    let mut s = Stomp::on_defaults().await;
    // Queued together: the SEND is handled right after the SUBSCRIBE.
    s.send(
        SUB,
        &[
            ("id", "t"),
            ("destination", "/topic/news.*"),
            ("receipt", "subscribed"),
        ],
    );
    s.send_body(SEND, &[("destination", "/topic/news.sport")], "goal");
    s.receipt("subscribed").await;
    let m = s.message("goal").await;
    assert_eq!(header(&m, "subscription"), "t");
    assert_eq!(header(&m, "destination"), "/topic/news.sport");
    // A topic nobody subscribed to loses what is sent to it.
    s.send_body(SEND, &[("destination", "/topic/other")], "lost");
    s.sync("after").await;
    s.quiet();
    s.hang_up().await;
}

#[tokio::test]
async fn a_topic_reaches_every_session_subscribed() {
    let bridge = bridge(json!({}));
    let mut a = Stomp::connected(&bridge).await;
    let mut b = Stomp::connected(&bridge).await;
    a.send(
        SUB,
        &[("id", "0"), ("destination", "/topic/t"), ("receipt", "r")],
    );
    a.receipt("r").await;
    b.send(
        SUB,
        &[("id", "0"), ("destination", "/topic/#"), ("receipt", "r")],
    );
    b.receipt("r").await;
    b.send_body(SEND, &[("destination", "/topic/t")], "all");
    a.message("all").await;
    b.message("all").await;
    a.hang_up().await;
    b.hang_up().await;
}

/// Three messages on `/queue/q`, delivered to subscription `s` with `ack`; their `ack`
/// ids.
async fn three_to_ack(s: &mut Stomp, ack: &str) -> Vec<String> {
    s.send(
        SUB,
        &[("id", "s"), ("destination", "/queue/q"), ("ack", ack)],
    );
    let mut ids = Vec::new();
    for b in ["1", "2", "3"] {
        s.send_body(SEND, &[("destination", "/queue/q")], b);
        let m = s.message(b).await;
        assert_eq!(m.headers.get("redelivered"), None);
        ids.push(header(&m, "ack").to_string());
    }
    ids
}

/// Unsubscribe `s` and subscribe again: what was left unacknowledged comes back.
async fn resubscribe(s: &mut Stomp) {
    s.send(Command::Unsubscribe, &[("id", "s")]);
    s.send(
        SUB,
        &[("id", "s"), ("destination", "/queue/q"), ("ack", "auto")],
    );
}

#[tokio::test]
async fn ack_client_is_cumulative() {
    let mut s = Stomp::on_defaults().await;
    let ids = three_to_ack(&mut s, "client").await;
    s.send(Command::Ack, &[("id", &ids[1]), ("receipt", "acked")]);
    s.receipt("acked").await;
    resubscribe(&mut s).await;
    // 1 and 2 were settled by the one ACK; 3 was sent and is back flagged.
    let m = s.message("3").await;
    assert_eq!(header(&m, "redelivered"), "true");
    s.sync("end").await;
    s.quiet();
    s.hang_up().await;
}

#[tokio::test]
async fn a_cumulative_ack_settles_the_earlier_ids() {
    let mut s = Stomp::on_defaults().await;
    let ids = three_to_ack(&mut s, "client").await;
    s.send(Command::Ack, &[("id", &ids[1])]);
    s.send(Command::Ack, &[("id", &ids[0])]);
    let e = s
        .fails_with(EndKind::ProtocolError, "unknown id in ACK")
        .await;
    assert!(body(&e).contains(&ids[0]), "{e:?}");
}

#[tokio::test]
async fn ack_client_individual_settles_one() {
    let mut s = Stomp::on_defaults().await;
    let ids = three_to_ack(&mut s, "client-individual").await;
    s.send(Command::Ack, &[("id", &ids[1]), ("receipt", "acked")]);
    s.receipt("acked").await;
    resubscribe(&mut s).await;
    // Only 2 was settled: 1 and 3 come back, in order, flagged.
    let m = s.message("1").await;
    assert_eq!(header(&m, "redelivered"), "true");
    let m = s.message("3").await;
    assert_eq!(header(&m, "redelivered"), "true");
    s.sync("end").await;
    s.quiet();
    s.hang_up().await;
}

#[tokio::test]
async fn on_1_1_acks_name_the_message_id() {
    let bridge = bridge(json!({}));
    let mut s = Stomp::connected_with(&bridge, &[("accept-version", "1.1")]).await;
    s.send(
        SUB,
        &[("id", "s"), ("destination", "/queue/q"), ("ack", "client")],
    );
    s.send_body(SEND, &[("destination", "/queue/q")], "1");
    let m = s.message("1").await;
    assert_eq!(m.headers.get("ack"), None);
    let id = header(&m, "message-id").to_string();
    s.send(
        Command::Ack,
        &[
            ("message-id", &id),
            ("subscription", "s"),
            ("receipt", "ok"),
        ],
    );
    s.receipt("ok").await;
    // `id` is the 1.2 header; 1.1 wants message-id.
    s.send(Command::Ack, &[("id", &id)]);
    s.fails_with(EndKind::ProtocolError, "missing message-id header")
        .await;
}

#[tokio::test]
async fn nack_redelivers_flagged() {
    let mut s = Stomp::on_defaults().await;
    s.send(
        SUB,
        &[
            ("id", "s"),
            ("destination", "/queue/q"),
            ("ack", "client-individual"),
        ],
    );
    s.send_body(SEND, &[("destination", "/queue/q")], "again");
    let first = s.message("again").await;
    let ack = header(&first, "ack").to_string();
    s.send(Command::Nack, &[("id", &ack)]);
    let second = s.message("again").await;
    assert_eq!(header(&second, "redelivered"), "true");
    assert_eq!(header(&second, "message-id"), header(&first, "message-id"));
    // A new delivery, a new ack id; the old one is settled.
    assert_ne!(header(&second, "ack"), ack);
    s.send(
        Command::Ack,
        &[("id", header(&second, "ack")), ("receipt", "r")],
    );
    s.receipt("r").await;
    s.send(Command::Ack, &[("id", &ack)]);
    s.fails_with(EndKind::ProtocolError, "unknown id in ACK")
        .await;
}

#[tokio::test]
async fn an_unknown_ack_id_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(Command::Ack, &[("id", "nope")]);
    let e = s
        .fails_with(EndKind::ProtocolError, "unknown id in ACK")
        .await;
    assert_eq!(
        body(&e),
        "\"nope\" is not a message awaiting acknowledgement on this session."
    );
}

#[tokio::test]
async fn an_unknown_nack_id_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(Command::Nack, &[("id", "nope")]);
    s.fails_with(EndKind::ProtocolError, "unknown id in NACK")
        .await;
}

#[tokio::test]
async fn an_ack_on_an_auto_subscription_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(SUB, &[("id", "s"), ("destination", "/queue/q")]);
    s.send_body(SEND, &[("destination", "/queue/q")], "auto");
    let m = s.message("auto").await;
    s.send(Command::Ack, &[("id", header(&m, "message-id"))]);
    s.fails_with(EndKind::ProtocolError, "unknown id in ACK")
        .await;
}

#[tokio::test]
async fn commit_applies_the_held_send() {
    let mut s = Stomp::on_defaults().await;
    s.send(SUB, &[("id", "s"), ("destination", "/queue/t")]);
    s.send(Command::Begin, &[("transaction", "tx")]);
    s.send_body(
        SEND,
        &[
            ("destination", "/queue/t"),
            ("transaction", "tx"),
            ("receipt", "held"),
        ],
        "held",
    );
    // A held frame's receipt is answered when it is held.
    s.receipt("held").await;
    s.send_body(SEND, &[("destination", "/queue/t")], "direct");
    s.send(Command::Commit, &[("transaction", "tx")]);
    s.message("direct").await;
    let m = s.message("held").await;
    assert_eq!(m.headers.get("transaction"), None);
    // The transaction is over.
    s.send(Command::Commit, &[("transaction", "tx")]);
    s.fails_with(EndKind::ProtocolError, "unknown transaction")
        .await;
}

#[tokio::test]
async fn abort_drops_the_held_send() {
    let mut s = Stomp::on_defaults().await;
    s.send(SUB, &[("id", "s"), ("destination", "/queue/t")]);
    s.send(Command::Begin, &[("transaction", "tx")]);
    s.send_body(
        SEND,
        &[("destination", "/queue/t"), ("transaction", "tx")],
        "dropped",
    );
    s.send(Command::Abort, &[("transaction", "tx")]);
    s.send_body(SEND, &[("destination", "/queue/t")], "kept");
    s.message("kept").await;
    s.sync("end").await;
    s.quiet();
    s.hang_up().await;
}

#[tokio::test]
async fn a_transactional_ack_waits_for_commit() {
    let mut s = Stomp::on_defaults().await;
    let ids = three_to_ack(&mut s, "client-individual").await;
    s.send(Command::Begin, &[("transaction", "tx")]);
    s.send(Command::Ack, &[("id", &ids[0]), ("transaction", "tx")]);
    s.send(Command::Abort, &[("transaction", "tx")]);
    s.send(Command::Begin, &[("transaction", "tx2")]);
    s.send(Command::Ack, &[("id", &ids[2]), ("transaction", "tx2")]);
    s.send(Command::Commit, &[("transaction", "tx2")]);
    resubscribe(&mut s).await;
    // The aborted ACK of 1 did nothing; the committed one settled 3.
    assert_eq!(header(&s.message("1").await, "redelivered"), "true");
    assert_eq!(header(&s.message("2").await, "redelivered"), "true");
    s.sync("end").await;
    s.quiet();
    s.hang_up().await;
}

#[tokio::test]
async fn a_send_in_an_unknown_transaction_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(
        SEND,
        &[("destination", "/queue/t"), ("transaction", "nope")],
    );
    let e = s
        .fails_with(EndKind::ProtocolError, "unknown transaction")
        .await;
    assert_eq!(
        body(&e),
        "Transaction \"nope\" was not begun (or is already committed or aborted)."
    );
}

#[tokio::test]
async fn abort_of_an_unknown_transaction_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(Command::Abort, &[("transaction", "nope")]);
    s.fails_with(EndKind::ProtocolError, "unknown transaction")
        .await;
}

#[tokio::test]
async fn a_transaction_begun_twice_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(Command::Begin, &[("transaction", "tx")]);
    s.send(Command::Begin, &[("transaction", "tx")]);
    s.fails_with(EndKind::ProtocolError, "transaction already begun")
        .await;
}

#[tokio::test]
async fn a_transaction_holds_at_most_the_configured_frames() {
    let bridge = bridge(json!({ "max_transaction_frames": 1 }));
    let mut s = Stomp::connected(&bridge).await;
    s.send(Command::Begin, &[("transaction", "tx")]);
    s.send(SEND, &[("destination", "/queue/t"), ("transaction", "tx")]);
    s.send(SEND, &[("destination", "/queue/t"), ("transaction", "tx")]);
    s.fails_with(EndKind::PolicyViolation, "transaction too large")
        .await;
}

#[tokio::test]
async fn unsubscribe_stops_deliveries() {
    let mut s = Stomp::on_defaults().await;
    s.send(SUB, &[("id", "t"), ("destination", "/topic/t")]);
    s.send_body(SEND, &[("destination", "/topic/t")], "before");
    s.message("before").await;
    s.send(Command::Unsubscribe, &[("id", "t"), ("receipt", "gone")]);
    s.receipt("gone").await;
    s.send_body(SEND, &[("destination", "/topic/t")], "after");
    s.sync("end").await;
    s.quiet();
    s.hang_up().await;
}

#[tokio::test]
async fn unsubscribe_of_an_unknown_id_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(Command::Unsubscribe, &[("id", "nope")]);
    let e = s
        .fails_with(EndKind::ProtocolError, "unknown subscription")
        .await;
    assert_eq!(
        body(&e),
        "No subscription with id \"nope\" on this session."
    );
}

#[tokio::test]
async fn an_invalid_send_destination_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(SEND, &[("destination", "/bogus/x")]);
    let e = s
        .fails_with(EndKind::ProtocolError, "invalid destination")
        .await;
    assert!(
        body(&e).starts_with("invalid destination \"/bogus/x\""),
        "{e:?}"
    );
}

#[tokio::test]
async fn wildcards_are_for_subscribe_only() {
    let mut s = Stomp::on_defaults().await;
    s.send(SEND, &[("destination", "/topic/a.*")]);
    let e = s
        .fails_with(EndKind::ProtocolError, "invalid destination")
        .await;
    assert!(body(&e).contains("only allowed in SUBSCRIBE"), "{e:?}");
}

#[tokio::test]
async fn a_partial_wildcard_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(SUB, &[("id", "0"), ("destination", "/topic/a*")]);
    s.fails_with(EndKind::ProtocolError, "invalid destination")
        .await;
}

#[tokio::test]
async fn send_without_destination_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send_body(SEND, &[], "where?");
    s.fails_with(EndKind::ProtocolError, "missing destination header")
        .await;
}

#[tokio::test]
async fn an_unknown_ack_mode_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(
        SUB,
        &[
            ("id", "0"),
            ("destination", "/queue/a"),
            ("ack", "sometimes"),
        ],
    );
    s.fails_with(EndKind::ProtocolError, "bad ack header").await;
}

#[tokio::test]
async fn a_bad_prefetch_count_is_refused() {
    let mut s = Stomp::on_defaults().await;
    s.send(
        SUB,
        &[
            ("id", "0"),
            ("destination", "/queue/a"),
            ("prefetch-count", "many"),
        ],
    );
    s.fails_with(EndKind::ProtocolError, "bad prefetch-count header")
        .await;
}

#[tokio::test]
async fn too_many_subscriptions_are_refused() {
    let bridge = bridge(json!({ "max_subscriptions": 1 }));
    let mut s = Stomp::connected(&bridge).await;
    s.send(SUB, &[("id", "0"), ("destination", "/topic/a")]);
    s.send(SUB, &[("id", "1"), ("destination", "/topic/b")]);
    s.fails_with(EndKind::PolicyViolation, "too many subscriptions")
        .await;
}

#[tokio::test]
async fn rabbitmq_destinations_are_refused_by_the_embedded_broker() {
    let mut s = Stomp::on_defaults().await;
    s.send(SEND, &[("destination", "/exchange/logs/x")]);
    let e = s.fails(EndKind::PolicyViolation).await;
    assert!(
        header(&e, "message").contains("need the RabbitMQ backend"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_reply_to_temp_queue_comes_back_to_its_session() {
    let bridge = bridge(json!({}));
    let mut server = Stomp::connected(&bridge).await;
    server.send(
        SUB,
        &[
            ("id", "req"),
            ("destination", "/queue/requests"),
            ("receipt", "r"),
        ],
    );
    server.receipt("r").await;
    let mut client = Stomp::connected(&bridge).await;
    client.send_body(
        SEND,
        &[
            ("destination", "/queue/requests"),
            ("reply-to", "/temp-queue/answers"),
        ],
        "ping",
    );
    let req = server.message("ping").await;
    // The reply-to names the client's own queue, which the server can SEND to.
    let address = header(&req, "reply-to").to_string();
    assert!(address.starts_with("/queue/tmp."), "{address}");
    server.send_body(SEND, &[("destination", &address)], "pong");
    let reply = client.message("pong").await;
    assert_eq!(header(&reply, "subscription"), "/temp-queue/answers");
    server.hang_up().await;
    client.hang_up().await;
}

/// A service where `trader`s may SEND orders and SUBSCRIBE to prices, nothing else.
fn acl_bridge() -> std::sync::Arc<dyn bridge_api::Bridge> {
    bridge_with_alice(json!({
        "acl": [{
            "roles": ["trader"],
            "send": ["/queue/orders"],
            "subscribe": ["/topic/prices.#"]
        }]
    }))
}

async fn alice(bridge: &std::sync::Arc<dyn bridge_api::Bridge>) -> Stomp {
    Stomp::connected_with(
        bridge,
        &[
            ("accept-version", "1.2"),
            ("login", "alice"),
            ("passcode", "pw"),
        ],
    )
    .await
}

#[tokio::test]
async fn the_acl_lets_a_role_do_what_its_rule_grants() {
    let bridge = acl_bridge();
    let mut s = alice(&bridge).await;
    s.send(
        SUB,
        &[
            ("id", "p"),
            ("destination", "/topic/prices.AAPL"),
            ("receipt", "1"),
        ],
    );
    s.receipt("1").await;
    s.send(SEND, &[("destination", "/queue/orders"), ("receipt", "2")]);
    s.receipt("2").await;
    // Temp queues need no rule.
    s.send(
        SUB,
        &[
            ("id", "tmp"),
            ("destination", "/temp-queue/mine"),
            ("receipt", "3"),
        ],
    );
    s.receipt("3").await;
    s.hang_up().await;
}

#[tokio::test]
async fn the_acl_denies_a_subscribe_its_rules_do_not_cover() {
    let bridge = acl_bridge();
    let mut s = alice(&bridge).await;
    s.send(SUB, &[("id", "n"), ("destination", "/topic/news")]);
    let e = s
        .fails_with(EndKind::PolicyViolation, "access denied")
        .await;
    assert_eq!(
        body(&e),
        "SUBSCRIBE to /topic/news is not allowed for user \"alice\" (roles: trader)."
    );
}

#[tokio::test]
async fn the_acl_denies_an_anonymous_send() {
    let bridge = acl_bridge();
    let mut s = Stomp::connected(&bridge).await;
    s.send(SEND, &[("destination", "/queue/orders")]);
    let e = s
        .fails_with(EndKind::PolicyViolation, "access denied")
        .await;
    assert_eq!(
        body(&e),
        "SEND to /queue/orders is not allowed for anonymous clients."
    );
}

#[tokio::test]
async fn the_acl_checks_a_transactional_send_when_it_is_held() {
    let bridge = acl_bridge();
    let mut s = alice(&bridge).await;
    s.send(Command::Begin, &[("transaction", "tx")]);
    s.send(
        SEND,
        &[
            ("destination", "/queue/other"),
            ("transaction", "tx"),
            ("receipt", "held"),
        ],
    );
    let e = s
        .fails_with(EndKind::PolicyViolation, "access denied")
        .await;
    assert_eq!(header(&e, "receipt-id"), "held");
}

#[tokio::test]
async fn a_handshake_identity_gets_its_roles_in_the_acl() {
    let bridge = acl_bridge();
    let mut s = Stomp::open(
        &bridge,
        testkit::session().principal(testkit::principal("carol", &["trader"])),
    );
    s.send(Command::Connect, &[("accept-version", "1.2")]);
    s.expect(Command::Connected).await;
    s.send(SEND, &[("destination", "/queue/orders"), ("receipt", "ok")]);
    s.receipt("ok").await;
    s.hang_up().await;
}
