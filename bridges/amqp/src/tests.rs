//! The handshake over the test kit, without a broker: what a client gets before any broker
//! work (version refusals, logins refused by the realm).

use std::sync::Arc;
use std::time::Duration;

use bridge_api::testkit::{self, StaticRealm};
use bridge_api::{BridgeFactory, EndKind, Message, Outgoing};
use bytes::{Bytes, BytesMut};
use protocol_amqp::protocol::connection;
use protocol_amqp::{encode_method, AMQPClass, Decoder, Frame, Limits, PROTOCOL_HEADER};

use crate::AmqpFactory;

fn bridge() -> Arc<dyn bridge_api::Bridge> {
    bridge_with(Arc::new(StaticRealm::new().user(
        "alice",
        "pw",
        &["worker"],
    )))
}

fn bridge_with(realm: Arc<dyn bridge_api::CredentialCheck>) -> Arc<dyn bridge_api::Bridge> {
    let mut ctx = testkit::ctx("amqp-test");
    ctx.credentials = realm;
    AmqpFactory
        .build(ctx, serde_json::json!({}))
        .expect("the defaults are valid")
}

async fn next(client: &mut testkit::TestClient) -> Outgoing {
    tokio::time::timeout(Duration::from_secs(5), client.next())
        .await
        .expect("the bridge answered in time")
        .expect("the bridge queued something")
}

async fn method(client: &mut testkit::TestClient) -> AMQPClass {
    let Outgoing::Message(m) = next(client).await else {
        panic!("expected a frame")
    };
    let mut buf = BytesMut::from(&m.payload()[..]);
    match Decoder::new(Limits::default()).decode(&mut buf) {
        Ok(Some(Frame::Method(0, m))) => *m,
        other => panic!("expected a method on channel 0, got {other:?}"),
    }
}

#[tokio::test]
async fn other_protocols_get_the_0_9_1_header_and_a_protocol_error() {
    for opening in [&b"AMQP\x03\x01\x00\x00"[..], b"GET / HTTP/1.1\r\n"] {
        let (session, mut client) = testkit::session().live();
        let b = bridge();
        let task = tokio::spawn(async move { b.serve(session).await });
        client.send(Message::binary(Bytes::copy_from_slice(opening)));
        let Outgoing::Message(m) = next(&mut client).await else {
            panic!("expected the protocol header")
        };
        assert_eq!(&m.payload()[..], &PROTOCOL_HEADER[..]);
        let Outgoing::Close(end) = next(&mut client).await else {
            panic!("expected the end")
        };
        assert_eq!(end.kind, EndKind::ProtocolError);
        assert!(end.reason.contains("AMQP 0-9-1"), "{end:?}");
        let err = task.await.unwrap().expect_err("refused");
        assert_eq!(err.end_kind(), EndKind::ProtocolError);
    }
}

#[tokio::test]
async fn a_header_split_across_messages_gets_connection_start_and_a_bad_login_403() {
    let (session, mut client) = testkit::session().live();
    let b = bridge();
    let task = tokio::spawn(async move { b.serve(session).await });
    for part in [&PROTOCOL_HEADER[..3], &PROTOCOL_HEADER[3..]] {
        client.send(Message::binary(Bytes::copy_from_slice(part)));
    }
    let AMQPClass::Connection(connection::AMQPMethod::Start(start)) = method(&mut client).await
    else {
        panic!("expected connection.start")
    };
    assert_eq!(start.mechanisms.to_string(), "PLAIN AMQPLAIN");
    let start_ok = connection::StartOk {
        client_properties: Default::default(),
        mechanism: "PLAIN".into(),
        response: "\0alice\0wrong".into(),
        locale: "en_US".into(),
    };
    let m = AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok));
    client.send(Message::binary(encode_method(0, &m)));
    let AMQPClass::Connection(connection::AMQPMethod::Close(close)) = method(&mut client).await
    else {
        panic!("expected connection.close")
    };
    assert_eq!(close.reply_code, 403);
    assert!(close.reply_text.as_str().starts_with("ACCESS_REFUSED"));
    let ok = AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}));
    client.send(Message::binary(encode_method(0, &ok)));
    let Outgoing::Close(end) = next(&mut client).await else {
        panic!("expected the end")
    };
    assert_eq!(end.kind, EndKind::PolicyViolation);
    task.await.unwrap().expect_err("refused");
}

#[tokio::test]
async fn a_stop_after_connection_start_is_told_with_close_320() {
    for (reason, text, fails) in [
        (
            bridge_api::StopReason::CredentialExpired,
            "token expired",
            true,
        ),
        (
            bridge_api::StopReason::Closed {
                code: 4000,
                reason: "maintenance".into(),
            },
            "maintenance",
            false,
        ),
    ] {
        let (session, mut client) = testkit::session().live();
        let b = bridge();
        let task = tokio::spawn(async move { b.serve(session).await });
        client.send(Message::binary(Bytes::from_static(&PROTOCOL_HEADER)));
        let AMQPClass::Connection(connection::AMQPMethod::Start(_)) = method(&mut client).await
        else {
            panic!("expected connection.start")
        };
        client.stop(reason);
        let AMQPClass::Connection(connection::AMQPMethod::Close(close)) = method(&mut client).await
        else {
            panic!("expected connection.close")
        };
        assert_eq!(close.reply_code, 320);
        assert_eq!(close.reply_text.as_str(), text);
        let ok = AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}));
        client.send(Message::binary(encode_method(0, &ok)));
        let result = task.await.unwrap();
        // The transport closes with the stop's code: the bridge queues no close of its own.
        assert!(client.next().await.is_none(), "nothing after Close");
        match result {
            Err(e) => {
                assert!(fails, "{e}");
                assert_eq!(e.end_kind(), EndKind::PolicyViolation);
            }
            Ok(()) => assert!(!fails, "an expired token is the client's to fix"),
        }
    }
}

#[tokio::test]
async fn a_drain_before_the_login_ends_quietly() {
    let (session, mut client) = testkit::session().live();
    let b = bridge();
    let task = tokio::spawn(async move { b.serve(session).await });
    client.send(Message::binary(Bytes::from_static(&PROTOCOL_HEADER)));
    method(&mut client).await;
    client.shutdown();
    task.await.unwrap().expect("a drain is no failure");
    assert!(client.next().await.is_none());
}

#[tokio::test]
async fn a_login_the_gateway_is_too_busy_to_check_gets_320_try_again() {
    let (session, mut client) = testkit::session().live();
    let b = bridge_with(Arc::new(testkit::BusyRealm));
    let task = tokio::spawn(async move { b.serve(session).await });
    client.send(Message::binary(Bytes::copy_from_slice(
        &PROTOCOL_HEADER[..],
    )));
    let AMQPClass::Connection(connection::AMQPMethod::Start(_)) = method(&mut client).await else {
        panic!("expected connection.start")
    };
    let start_ok = connection::StartOk {
        client_properties: Default::default(),
        mechanism: "PLAIN".into(),
        response: "\0alice\0pw".into(),
        locale: "en_US".into(),
    };
    let m = AMQPClass::Connection(connection::AMQPMethod::StartOk(start_ok));
    client.send(Message::binary(encode_method(0, &m)));
    let AMQPClass::Connection(connection::AMQPMethod::Close(close)) = method(&mut client).await
    else {
        panic!("expected connection.close")
    };
    assert_eq!(close.reply_code, 320);
    assert!(close.reply_text.as_str().contains("try again"), "{close:?}");
    let ok = AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {}));
    client.send(Message::binary(encode_method(0, &ok)));
    let _ = next(&mut client).await;
    task.await.unwrap().expect_err("refused");
}

#[test]
fn the_backend_takes_a_cluster_s_nodes() {
    let build = |backend: &str| {
        AmqpFactory.build(
            testkit::ctx("amqp-test"),
            serde_json::json!({ "backend": backend, "credentials": "service" }),
        )
    };
    assert!(build("amqp://u:p@127.0.0.1:5672/%2f,amqp://u:p@127.0.0.1:5673/%2f").is_ok());
    let Err(e) = build("amqp://u:p@h1:5672/a,amqp://u:p@h2:5672/b") else {
        panic!("nodes with different vhosts are refused")
    };
    let shown = e.to_string();
    assert!(
        shown.contains("backend") && shown.contains("vhost"),
        "{shown}"
    );
    let Err(e) = build("amqp://u:p@h1:5672/a,amqps://u:p@h2:5671/a") else {
        panic!("mixed schemes are refused")
    };
    assert!(e.to_string().contains("same scheme"), "{e}");
}
