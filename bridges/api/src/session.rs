use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use tokio_util::sync::CancellationToken;

use crate::control::SessionControl;
use crate::outbox::Outbox;
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

/// One client session handed to a bridge. The bridge drives it to completion: it returns
/// when the client leaves, the backend ends, or `shutdown` fires (then it should finish
/// promptly; the transport ends the session as [`EndKind::GoingAway`](crate::EndKind), or
/// as `control`'s [`StopReason`](crate::StopReason) says when the gateway gave one).
pub struct Session {
    pub info: Arc<SessionInfo>,
    pub incoming: Incoming,
    pub outbox: Outbox,
    pub shutdown: CancellationToken,
    /// Why `shutdown` fired, and who the client is now (set it after a protocol login or a
    /// token refresh, so the operator's view and the expiry deadline follow).
    pub control: Arc<SessionControl>,
}
