//! How a session ends badly: one stream error to the client (RFC 6120 4.9, RFC 7395 3.6),
//! a log line naming the side that failed, a metric, and how the session ends.

use std::time::Duration;

use bridge_api::{BridgeError, EndKind, ErrorSource, Message, Outbox, SessionInfo};
use protocol_xmpp::{Element, StreamError, StreamErrorCondition as C, StreamHeader};

use crate::metrics::{self, Login, Side};

/// How long the ending messages may wait for room in a full outbox.
const SEND_GRACE: Duration = Duration::from_secs(2);

#[derive(Debug)]
pub struct Failure {
    pub error: StreamError,
    /// Whose fault it is: picks how the session ends, unless `end` says.
    pub fault: ErrorSource,
    /// Who produced the stream error.
    pub side: Side,
    /// The server's own `<stream:error>`, passed to the client as it came.
    pub element: Option<Box<Element>>,
    pub end: Option<EndKind>,
    /// The login outcome this failure counts as, if it ends a login attempt.
    pub login: Option<Login>,
}

impl Failure {
    /// The client broke a rule; the gateway says so.
    pub fn client(error: StreamError) -> Self {
        Failure {
            error,
            fault: ErrorSource::Client,
            side: Side::Gateway,
            element: None,
            end: None,
            login: None,
        }
    }

    /// The server failed or misbehaved; the gateway says so.
    pub fn backend(condition: C, text: impl Into<String>) -> Self {
        Failure {
            error: StreamError::new(condition, text),
            fault: ErrorSource::Backend,
            side: Side::Gateway,
            element: None,
            end: None,
            login: None,
        }
    }

    /// The server sent `<stream:error>`.
    pub fn from_server(element: Element) -> Self {
        Failure {
            error: StreamError::from_element(&element),
            fault: ErrorSource::Backend,
            side: Side::Server,
            element: Some(Box::new(element)),
            end: None,
            login: None,
        }
    }

    pub fn internal(text: impl Into<String>) -> Self {
        Failure {
            fault: ErrorSource::Internal,
            ..Failure::backend(C::InternalServerError, text)
        }
    }

    pub fn with_login(mut self, login: Login) -> Self {
        self.login = Some(login);
        self
    }

    pub fn with_end(mut self, kind: EndKind) -> Self {
        self.end = Some(kind);
        self
    }

    /// Logs, counts and tells the client; returns the error that ends the session.
    /// `opened` says whether the client already got its `<open/>` answer: a stream error
    /// always follows an open stream (RFC 6120 4.9.1.1).
    pub async fn report(
        self,
        info: &SessionInfo,
        outbox: &Outbox,
        opened: bool,
        domain: Option<&str>,
    ) -> BridgeError {
        // Boxed: the ending's state would otherwise be part of every session's future.
        Box::pin(self.report_inner(info, outbox, opened, domain)).await
    }

    async fn report_inner(
        self,
        info: &SessionInfo,
        outbox: &Outbox,
        opened: bool,
        domain: Option<&str>,
    ) -> BridgeError {
        let failed = match self.fault {
            ErrorSource::Client => "client",
            ErrorSource::Backend => "server",
            ErrorSource::Internal => "gateway",
        };
        tracing::info!(
            service = %info.service,
            session = info.id,
            failed,
            condition = %self.error.condition,
            "xmpp stream error: {}",
            self.error.text
        );
        metrics::stream_error(self.error.condition, self.side);
        if let Some(login) = self.login {
            metrics::login(login);
        }
        if !opened {
            send_open(outbox, domain).await;
        }
        let error = match &self.element {
            Some(element) => protocol_xmpp::to_client(element),
            None => protocol_xmpp::stream_error_to_client(&self.error),
        };
        send(outbox, error).await;
        send(outbox, protocol_xmpp::client_close().to_owned()).await;
        let error = BridgeError::new(self.fault, self.error.to_string());
        match self.end {
            Some(kind) => error.with_end(kind),
            None => error,
        }
    }
}

/// The `<open/>` answer a stream error must follow when the client has none yet.
pub async fn send_open(outbox: &Outbox, domain: Option<&str>) {
    let header = StreamHeader {
        from: domain.map(str::to_owned),
        version: Some("1.0".into()),
        ..StreamHeader::default()
    };
    send(outbox, protocol_xmpp::client_open(&header)).await;
}

/// Best effort: a client that stopped reading does not hold the session open.
pub async fn send(outbox: &Outbox, text: String) {
    let _ = tokio::time::timeout(SEND_GRACE, outbox.send(Message::text(text))).await;
}
