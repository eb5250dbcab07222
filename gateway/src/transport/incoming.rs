use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use bridge_api::Message;
use bytes::Bytes;
use futures::stream::SplitStream;
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::{self, error::ProtocolError};
use tokio_tungstenite::WebSocketStream;

use super::close::{code, CloseFrame};
use super::Shared;
use crate::limits::{record_trip, trip};
use crate::services::TrafficCounters;

pub type WsReader<S> = SplitStream<WebSocketStream<S>>;

/// The client's messages as a bridge sees them: data only, control frames handled here.
/// When the bridge drops it, the socket's read half goes back to the transport so it can
/// finish the closing handshake.
pub struct IncomingAdapter<S> {
    stream: Option<WsReader<S>>,
    shared: Arc<Shared>,
    counters: TrafficCounters,
    give_back: Option<oneshot::Sender<WsReader<S>>>,
    ended: bool,
}

impl<S> IncomingAdapter<S> {
    pub(super) fn new(
        stream: WsReader<S>,
        shared: Arc<Shared>,
        counters: TrafficCounters,
        give_back: oneshot::Sender<WsReader<S>>,
    ) -> Self {
        IncomingAdapter {
            stream: Some(stream),
            shared,
            counters,
            give_back: Some(give_back),
            ended: false,
        }
    }

    fn end(&mut self, close: Option<CloseFrame>) -> Poll<Option<Message>> {
        self.ended = true;
        if let Some(frame) = close {
            self.shared.set_close(frame);
        }
        Poll::Ready(None)
    }
}

impl<S> Drop for IncomingAdapter<S> {
    fn drop(&mut self) {
        if let (Some(stream), Some(tx)) = (self.stream.take(), self.give_back.take()) {
            let _ = tx.send(stream);
        }
    }
}

/// The close the client gets for a read error, if the connection is still there to get one.
fn close_for_read_error(err: &tungstenite::Error) -> Option<CloseFrame> {
    use tungstenite::Error as E;
    let (code, reason) = match err {
        E::Capacity(e) => {
            record_trip(trip::MESSAGE_SIZE);
            (code::MESSAGE_TOO_BIG, e.to_string())
        }
        E::Utf8(_) => (
            code::INVALID_PAYLOAD,
            "invalid UTF-8 in text message".into(),
        ),
        E::Protocol(ProtocolError::ResetWithoutClosingHandshake) => return None,
        E::Protocol(e) => (code::PROTOCOL_ERROR, e.to_string()),
        E::Io(e) => {
            let refused = crate::deflate::close_for(e)?;
            if refused.code == code::MESSAGE_TOO_BIG {
                record_trip(trip::MESSAGE_SIZE);
            }
            (refused.code, refused.reason.to_string())
        }
        E::ConnectionClosed | E::AlreadyClosed => return None,
        other => (code::PROTOCOL_ERROR, other.to_string()),
    };
    Some(CloseFrame {
        code,
        reason: super::truncate_reason(&reason),
    })
}

impl<S> Stream for IncomingAdapter<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    type Item = Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        let this = &mut *self;
        loop {
            if this.ended {
                return Poll::Ready(None);
            }
            let Some(stream) = this.stream.as_mut() else {
                return Poll::Ready(None);
            };
            let item = ready!(stream.poll_next_unpin(cx));
            this.shared.heard_now();
            let msg = match item {
                None => return this.end(None),
                Some(Err(e)) => {
                    tracing::debug!("websocket read ended: {e}");
                    let close = close_for_read_error(&e);
                    return this.end(close);
                }
                Some(Ok(msg)) => msg,
            };
            let msg = match msg {
                tungstenite::Message::Text(t) => {
                    let bytes = Bytes::from(t);
                    // tungstenite has validated it already; this cannot fail.
                    match bridge_api::Text::try_from(bytes) {
                        Ok(t) => Message::Text(t),
                        Err(_) => {
                            return this.end(Some(CloseFrame {
                                code: code::INVALID_PAYLOAD,
                                reason: "invalid UTF-8 in text message".into(),
                            }))
                        }
                    }
                }
                tungstenite::Message::Binary(b) => Message::Binary(b),
                tungstenite::Message::Close(_) => return this.end(None),
                // tungstenite answers pings itself; pongs only prove the client is alive.
                tungstenite::Message::Ping(_)
                | tungstenite::Message::Pong(_)
                | tungstenite::Message::Frame(_) => continue,
            };
            this.counters.received(msg.len());
            return Poll::Ready(Some(msg));
        }
    }
}
