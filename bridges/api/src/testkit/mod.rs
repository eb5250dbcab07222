//! In-memory sessions for bridges' own tests: no socket and no transport, the test plays
//! the client. Built with `cfg(test)` or the `testkit` feature, so bridges take it as a
//! dev-dependency and normal builds never carry it.

mod client;
mod realm;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{AuthMethod, BuildContext, Incoming, Message, Outbox, Principal, Session, SessionInfo};

pub use client::TestClient;
pub use realm::{BusyRealm, NoRealm, StaticRealm};

/// Who a test session's client is, before a builder changes it.
pub fn info(service: &str) -> SessionInfo {
    SessionInfo {
        id: 1,
        service: service.into(),
        peer: "127.0.0.1:1".parse().expect("a socket address"),
        origin: None,
        principal: None,
        subprotocol: None,
        transport: "test",
    }
}

/// What a factory gets at build time, with a realm that knows nobody.
pub fn ctx(service: &str) -> BuildContext {
    BuildContext {
        service: service.into(),
        credentials: Arc::new(NoRealm),
        node: "test-node".into(),
    }
}

/// Someone the handshake authenticated with a password.
pub fn principal(name: &str, roles: &[&str]) -> Principal {
    Principal {
        name: name.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        method: AuthMethod::Basic,
        expires_at: None,
    }
}

/// A session to hand to `Bridge::serve`: `session().subprotocol("xmpp").live()`.
pub fn session() -> SessionBuilder {
    SessionBuilder {
        info: info("test"),
        queue: 16,
    }
}

pub struct SessionBuilder {
    info: SessionInfo,
    queue: usize,
}

impl SessionBuilder {
    pub fn service(mut self, name: &str) -> Self {
        self.info.service = name.into();
        self
    }

    /// The subprotocol the handshake negotiated.
    pub fn subprotocol(mut self, token: &str) -> Self {
        self.info.subprotocol = Some(token.into());
        self
    }

    /// The handshake authenticated this client.
    pub fn principal(mut self, principal: Principal) -> Self {
        self.info.principal = Some(principal);
        self
    }

    /// Outbox capacity: small values let a test fill it.
    pub fn queue(mut self, capacity: usize) -> Self {
        self.queue = capacity;
        self
    }

    /// The client sends `script` and hangs up: the session's incoming ends after it.
    pub fn scripted(self, script: impl IntoIterator<Item = Message>) -> (Session, TestClient) {
        let (session, mut client) = self.live();
        for msg in script {
            client.send(msg);
        }
        client.hang_up();
        (session, client)
    }

    /// The client stays until the test hangs up or drops it.
    pub fn live(self) -> (Session, TestClient) {
        let (input, mut rx) = mpsc::unbounded_channel();
        let (outbox, receiver) = Outbox::channel(self.queue);
        let shutdown = CancellationToken::new();
        let control =
            crate::SessionControl::detached(shutdown.clone(), self.info.principal.clone());
        let session = Session {
            info: Arc::new(self.info),
            incoming: Incoming::new(futures::stream::poll_fn(move |cx| rx.poll_recv(cx))),
            outbox,
            shutdown: shutdown.clone(),
            control: control.clone(),
        };
        (session, TestClient::new(input, receiver, control))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{End, EndKind, Outgoing};

    #[tokio::test]
    async fn a_script_ends_the_incoming_stream() {
        let (mut session, _client) = session().scripted([Message::text("a")]);
        assert_eq!(session.incoming.recv().await, Some(Message::text("a")));
        assert_eq!(session.incoming.recv().await, None);
    }

    #[tokio::test]
    async fn the_client_reads_what_the_bridge_queued() {
        let (session, mut client) = session().service("s").subprotocol("p").live();
        assert_eq!(&*session.info.service, "s");
        assert_eq!(session.info.subprotocol.as_deref(), Some("p"));
        session.outbox.send(Message::text("one")).await.unwrap();
        session
            .outbox
            .send(Message::binary(&b"two"[..]))
            .await
            .unwrap();
        assert_eq!(client.texts(), ["one", "two"]);
        session.outbox.end(EndKind::ProtocolError, "bad").await;
        drop(session);
        assert_eq!(
            client.end().await,
            Some(End::new(EndKind::ProtocolError, "bad"))
        );
        assert!(client.next().await.is_none());
    }

    #[tokio::test]
    async fn live_input_hang_up_and_shutdown() {
        let (mut session, mut client) = session().queue(1).live();
        client.send(Message::text("hi"));
        assert_eq!(session.incoming.recv().await, Some(Message::text("hi")));
        client.shutdown();
        assert!(session.shutdown.is_cancelled());
        client.hang_up();
        assert_eq!(session.incoming.recv().await, None);
        session.outbox.try_send(Message::text("x")).unwrap();
        assert!(session.outbox.try_send(Message::text("y")).is_err());
        assert_eq!(client.take_full(), 1);
        assert!(matches!(client.drain().as_slice(), [Outgoing::Message(_)]));
    }
}
