//! Whole STOMP sessions against the bridge-api test kit: the test plays the client,
//! sending frames as text messages and decoding what the bridge queues.

mod commands;
mod connect;
mod errors;
mod tokens;

use std::sync::Arc;
use std::time::Duration;

use bridge_api::testkit::{self, SessionBuilder, StaticRealm, TestClient};
use bridge_api::{
    Bridge, BridgeError, BridgeFactory, CredentialCheck, End, EndKind, ErrorSource, Message,
    Outgoing,
};
use bytes::BytesMut;
use protocol_stomp::{encode_to_bytes, Command, Decoded, Decoder, Frame, Limits, Version};
use tokio::task::JoinHandle;

use crate::StompFactory;

/// Long enough for a loaded machine, short enough that a hang fails the test.
const WAIT: Duration = Duration::from_secs(5);

/// A STOMP bridge on the embedded broker with these settings, its logins checked by
/// `realm`.
pub(super) fn bridge_with(
    settings: serde_json::Value,
    realm: Arc<dyn CredentialCheck>,
) -> Arc<dyn Bridge> {
    let mut ctx = testkit::ctx("stomp-test");
    ctx.credentials = realm;
    StompFactory
        .build(ctx, settings)
        .expect("settings are valid")
}

/// A STOMP bridge with these settings whose realm knows nobody.
pub(super) fn bridge(settings: serde_json::Value) -> Arc<dyn Bridge> {
    bridge_with(settings, Arc::new(testkit::NoRealm))
}

/// A bridge whose realm knows `alice` (password `pw`, role `trader`).
pub(super) fn bridge_with_alice(settings: serde_json::Value) -> Arc<dyn Bridge> {
    bridge_with(
        settings,
        Arc::new(StaticRealm::new().user("alice", "pw", &["trader"])),
    )
}

/// One frame as a text message, as a client library would send it.
pub(super) fn frame(command: Command, headers: &[(&str, &str)], body: &str) -> Message {
    let mut f = Frame::new(command);
    for (k, v) in headers {
        f = f.header(*k, *v);
    }
    let f = f.with_body(body.as_bytes().to_vec());
    Message::text_or_binary(encode_to_bytes(&f, Version::V1_2))
}

/// A header the frame must carry.
pub(super) fn header<'a>(f: &'a Frame, name: &str) -> &'a str {
    f.headers
        .get(name)
        .unwrap_or_else(|| panic!("{} has no {name} header: {f:?}", f.command.as_str()))
}

pub(super) fn body(f: &Frame) -> &str {
    std::str::from_utf8(&f.body).expect("a text body")
}

/// A client connected to `bridge.serve` running in its own task.
pub(super) struct Stomp {
    pub client: TestClient,
    task: Option<JoinHandle<Result<(), BridgeError>>>,
    decoder: Decoder,
    /// The end the bridge queued, once it has.
    end: Option<End>,
}

impl Stomp {
    /// Serve the session `builder` describes; nothing is sent yet.
    pub fn open(bridge: &Arc<dyn Bridge>, builder: SessionBuilder) -> Stomp {
        let (session, client) = builder.live();
        let bridge = bridge.clone();
        let task = tokio::spawn(async move { bridge.serve(session).await });
        Stomp {
            client,
            task: Some(task),
            decoder: Decoder::new(Limits::default()),
            end: None,
        }
    }

    /// A plain session on `bridge`, CONNECTed as STOMP 1.2 without heart-beats.
    pub async fn connected(bridge: &Arc<dyn Bridge>) -> Stomp {
        Self::connected_with(bridge, &[("accept-version", "1.2")]).await
    }

    /// A plain session on a bridge with default settings, CONNECTed as STOMP 1.2.
    pub async fn on_defaults() -> Stomp {
        Self::connected(&bridge(serde_json::json!({}))).await
    }

    /// A plain session on `bridge`, CONNECTed with these headers.
    pub async fn connected_with(bridge: &Arc<dyn Bridge>, headers: &[(&str, &str)]) -> Stomp {
        let mut s = Stomp::open(bridge, testkit::session());
        s.send(Command::Connect, headers);
        s.expect(Command::Connected).await;
        s
    }

    pub fn send(&self, command: Command, headers: &[(&str, &str)]) {
        self.client.send(frame(command, headers, ""));
    }

    pub fn send_body(&self, command: Command, headers: &[(&str, &str)], body: &str) {
        self.client.send(frame(command, headers, body));
    }

    /// The next frame or heart-beat the bridge queued; `None` once it queued an end or
    /// let go of the outbox.
    pub async fn next_item(&mut self) -> Option<Decoded> {
        if self.end.is_some() {
            return None;
        }
        let item = tokio::time::timeout(WAIT, self.client.next())
            .await
            .expect("the bridge queued nothing in time")?;
        let msg = match item {
            Outgoing::Message(m) => m,
            Outgoing::Close(end) => {
                self.end = Some(end);
                return None;
            }
        };
        let mut buf = BytesMut::from(&msg.payload()[..]);
        let decoded = self
            .decoder
            .decode(&mut buf)
            .expect("the bridge sends well-formed frames")
            .expect("one whole frame per message");
        assert!(buf.is_empty(), "one frame per message, left {buf:?}");
        Some(decoded)
    }

    /// The next frame, skipping heart-beats.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            match self.next_item().await? {
                Decoded::HeartBeat => continue,
                Decoded::Frame(f) => return Some(f),
            }
        }
    }

    /// The next frame, which must be a `command`.
    pub async fn expect(&mut self, command: Command) -> Frame {
        let f = self
            .next_frame()
            .await
            .unwrap_or_else(|| panic!("the session ended before a {}", command.as_str()));
        assert_eq!(
            f.command,
            command,
            "expected {}, got {f:?}",
            command.as_str()
        );
        if command == Command::Connected {
            let v = Version::parse(header(&f, "version")).expect("a known version");
            self.decoder.set_version(v);
        }
        f
    }

    /// The RECEIPT for `id`, next.
    pub async fn receipt(&mut self, id: &str) {
        let r = self.expect(Command::Receipt).await;
        assert_eq!(header(&r, "receipt-id"), id);
    }

    /// The next frame, which must be a MESSAGE with this body.
    pub async fn message(&mut self, body_text: &str) -> Frame {
        let m = self.expect(Command::Message).await;
        assert_eq!(body(&m), body_text, "{m:?}");
        m
    }

    /// Prove the bridge handled everything sent so far: a frame with a receipt that
    /// changes nothing (a transaction begun and aborted).
    pub async fn sync(&mut self, tag: &str) {
        let tx = format!("sync-{tag}");
        self.send(Command::Begin, &[("transaction", &tx)]);
        self.send(Command::Abort, &[("transaction", &tx), ("receipt", &tx)]);
        self.receipt(&tx).await;
    }

    /// Nothing is queued right now.
    pub fn quiet(&mut self) {
        let left = self.client.texts();
        assert!(left.is_empty(), "unexpected frames: {left:?}");
    }

    /// How the session ended: the bridge queued an end or let go of the outbox with
    /// nothing more queued, and `serve` returned this.
    pub async fn result(&mut self) -> Result<(), BridgeError> {
        let rest = self.next_item().await;
        assert!(rest.is_none(), "more after the end: {rest:?}");
        let task = self.task.take().expect("the result is taken once");
        let result = tokio::time::timeout(WAIT, task)
            .await
            .expect("serve returned in time")
            .expect("serve did not panic");
        if self.end.is_some() {
            let after = self.client.texts();
            assert!(after.is_empty(), "queued after the end: {after:?}");
        }
        result
    }

    /// The end the bridge queued itself, if it did.
    pub fn end_queued(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// The session fails: the next frame is its one ERROR, nothing follows it, and `serve`
    /// returns a client-side error ending the session as `kind`.
    pub async fn fails(&mut self, kind: EndKind) -> Frame {
        let error = self.expect(Command::Error).await;
        let err = self.result().await.expect_err("serve fails");
        assert_eq!(err.source_side(), ErrorSource::Client, "{err}");
        assert_eq!(err.end_kind(), kind, "{err}");
        assert_eq!(err.message(), header(&error, "message"));
        let end = self.end.as_ref().expect("the ERROR is followed by an end");
        assert_eq!(end.kind, kind, "{end:?}");
        assert_eq!(end.reason, err.message(), "{end:?}");
        error
    }

    /// `fails`, with the ERROR's `message` header checked.
    pub async fn fails_with(&mut self, kind: EndKind, message: &str) -> Frame {
        let error = self.fails(kind).await;
        assert_eq!(header(&error, "message"), message, "{error:?}");
        error
    }

    /// The client leaves: `serve` ends normally.
    pub async fn hang_up(mut self) {
        self.client.hang_up();
        self.result()
            .await
            .expect("a client that leaves ends normally");
    }
}
