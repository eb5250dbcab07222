use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{Message, Principal};

/// Who is on the other end and how they arrived. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionInfo {
    /// Unique within one gateway process.
    pub id: u64,
    /// The configured service name.
    pub service: Arc<str>,
    /// The client's address, after trusted-proxy headers are applied.
    pub peer: SocketAddr,
    pub origin: Option<String>,
    /// `None` for anonymous clients.
    pub principal: Option<Principal>,
    /// The negotiated subprotocol token, if any.
    pub subprotocol: Option<String>,
    /// The transport carrying the session ("websocket"); informative only.
    pub transport: &'static str,
}

/// The messages the client sends, in order. Ends when the client closes, the transport fails
/// or a transport limit trips; the transport already knows why and tells the client itself.
pub struct Incoming {
    inner: Pin<Box<dyn Stream<Item = Message> + Send>>,
}

impl Incoming {
    pub fn new(stream: impl Stream<Item = Message> + Send + 'static) -> Self {
        Incoming {
            inner: Box::pin(stream),
        }
    }

    /// The next client message, or `None` once the client is gone.
    pub async fn recv(&mut self) -> Option<Message> {
        futures::StreamExt::next(self).await
    }
}

impl Stream for Incoming {
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.inner.as_mut().poll_next(cx)
    }
}

/// A close the bridge asks the transport to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

/// What a bridge puts in its [`Outbox`].
#[derive(Debug)]
pub enum Outgoing {
    Message(Message),
    /// Flush what is queued, then close the session with this code and reason.
    Close(CloseFrame),
}

/// Why a message was not queued. The message is handed back so a caller can apply its own
/// slow-consumer policy (drop, conflate, disconnect) without having cloned it.
#[derive(Debug)]
pub enum SendError {
    /// The bounded queue is full: the client reads slower than the bridge writes.
    Full(Message),
    /// The session is over.
    Closed(Message),
}

/// Messages for the client. Bounded: `send` waits for room (backpressure), `try_send`
/// reports a full queue at once, which is what fan-out code wants. Clones share the queue.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
}

impl Outbox {
    /// A queue holding at most `capacity` messages, and the transport's receiving end.
    pub fn channel(capacity: usize) -> (Outbox, mpsc::Receiver<Outgoing>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Outbox { tx }, rx)
    }

    pub async fn send(&self, msg: Message) -> Result<(), SendError> {
        self.tx
            .send(Outgoing::Message(msg))
            .await
            .map_err(|e| match e.0 {
                Outgoing::Message(m) => SendError::Closed(m),
                Outgoing::Close(_) => unreachable!("sent a message"),
            })
    }

    pub fn try_send(&self, msg: Message) -> Result<(), SendError> {
        self.tx
            .try_send(Outgoing::Message(msg))
            .map_err(|e| match e {
                mpsc::error::TrySendError::Full(Outgoing::Message(m)) => {
                    metrics::counter!("gateway_limit_trips_total", "limit" => "outgoing_queue")
                        .increment(1);
                    SendError::Full(m)
                }
                mpsc::error::TrySendError::Closed(Outgoing::Message(m)) => SendError::Closed(m),
                _ => unreachable!("sent a message"),
            })
    }

    /// Ask the transport to close after what is already queued. Returns false if the
    /// session is already over.
    pub async fn close(&self, code: u16, reason: impl Into<String>) -> bool {
        self.tx
            .send(Outgoing::Close(CloseFrame {
                code,
                reason: reason.into(),
            }))
            .await
            .is_ok()
    }

    /// Wait for room for one message. Lets a bridge wait for the client to catch up while
    /// still reacting to other events in a `select!`.
    pub async fn reserve(&self) -> Result<OutboxPermit<'_>, SessionClosed> {
        self.tx
            .reserve()
            .await
            .map(OutboxPermit)
            .map_err(|_| SessionClosed)
    }

    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Free slots right now.
    pub fn room(&self) -> usize {
        self.tx.capacity()
    }
}

/// The session is over; nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session closed")]
pub struct SessionClosed;

/// Room for exactly one message, reserved in an [`Outbox`].
pub struct OutboxPermit<'a>(mpsc::Permit<'a, Outgoing>);

impl OutboxPermit<'_> {
    pub fn send(self, msg: Message) {
        self.0.send(Outgoing::Message(msg));
    }
}

/// One client session handed to a bridge. The bridge drives it to completion: it returns
/// when the client leaves, the backend ends, or `shutdown` fires (then it should finish
/// promptly; the gateway closes the client with 1001 Going Away).
pub struct Session {
    pub info: SessionInfo,
    pub incoming: Incoming,
    pub outbox: Outbox,
    pub shutdown: CancellationToken,
}
