//! Runs one bridge session over a WebSocket: client messages become the session's
//! `Incoming`, the session's `Outbox` is written back in batches, and the transport alone
//! handles pings, idle clients, limits and the closing handshake.
//!
//! A session is one tokio task: the bridge's future and the writer run side by side in it,
//! so an idle connection costs one task, one small read buffer and one queue.

mod close;
mod incoming;
mod wake_apart;
mod writer;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_api::{Bridge, Outbox, Session, SessionInfo};
use futures::future::Either;
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::services::TrafficCounters;
use crate::sessions::SessionRegistry;

pub use close::{close_for_bridge_result, close_for_stop, truncate_reason};
pub(crate) use close::{code, CloseFrame};
pub(crate) use wake_apart::wake_apart;

#[derive(Debug, Clone)]
pub struct TransportSettings {
    pub idle_timeout: Duration,
    pub outgoing_queue: usize,
    /// How long a bridge gets to finish after its client is gone, and how long the
    /// gateway waits for the client's half of the closing handshake.
    pub linger: Duration,
    /// permessage-deflate as this session's handshake agreed it (none in `Live`'s copy).
    pub deflate: Option<crate::deflate::Agreed>,
}

/// State the reading and writing halves share.
struct Shared {
    epoch: Instant,
    /// Milliseconds since `epoch` at which the client last sent anything (pongs count).
    last_heard: AtomicU64,
    /// Set when the transport itself must end the session (limit, protocol error).
    close: Mutex<Option<CloseFrame>>,
}

impl Shared {
    fn heard_now(&self) {
        self.last_heard
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    fn silent_for(&self) -> Duration {
        let last = Duration::from_millis(self.last_heard.load(Ordering::Relaxed));
        self.epoch.elapsed().saturating_sub(last)
    }

    fn set_close(&self, frame: CloseFrame) {
        let mut slot = self.close.lock().unwrap_or_else(|p| p.into_inner());
        slot.get_or_insert(frame);
    }

    fn take_close(&self) -> Option<CloseFrame> {
        self.close.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}

/// Log how a bridge ended its session: a misbehaving client is routine (debug); a failed
/// backend or a bug is news (info). Shared by both transports, called in the session's span.
pub(crate) fn log_session_end(result: &Result<(), bridge_api::BridgeError>) {
    match result {
        Err(e) if e.source_side() == bridge_api::ErrorSource::Client => {
            tracing::debug!(source = "client", "session ended: {e}")
        }
        Err(e) => {
            tracing::info!(source = e.source_side().as_str(), "session ended: {e}")
        }
        Ok(()) => {}
    }
}

/// The client is gone: give the bridge `linger` to finish, and say so if it does not.
pub(crate) async fn wind_up<F: std::future::Future>(
    bridge: F,
    linger: Duration,
    span: &tracing::Span,
) -> Option<F::Output> {
    let done = tokio::time::timeout(linger, bridge).await.ok();
    if done.is_none() {
        span.in_scope(|| {
            tracing::warn!("bridge did not finish within {linger:?} of its client leaving")
        });
    }
    done
}

/// Serve `info` with `bridge` over `ws` until the session ends.
///
/// Set-up happens here, synchronously, and only its results move into the returned future:
/// an async fn would keep its (large) arguments alive in the task for the whole session.
pub fn run_session<S>(
    ws: WebSocketStream<S>,
    bridge: Arc<dyn Bridge>,
    info: Arc<SessionInfo>,
    settings: TransportSettings,
    shutdown: CancellationToken,
    counters: TrafficCounters,
    registry: &Arc<SessionRegistry>,
) -> impl std::future::Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The bridge runs in the session's span; the writer does not, so a delivery's wake-up
    // (the writer's alone) pays nothing for it. Transport lines enter it explicitly.
    let span = crate::logging::session_span(&info);
    span.in_scope(|| tracing::debug!("session start"));
    let (sink, stream) = ws.split();
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        last_heard: AtomicU64::new(0),
        close: Mutex::new(None),
    });
    let session_shutdown = shutdown.child_token();
    let control = registry.control(info.id, session_shutdown.clone(), &info);
    let (outbox, outbox_rx) = Outbox::channel(settings.outgoing_queue);
    let registered = registry.register(info.clone(), control.clone(), outbox_rx.depth());
    let counters = counters.for_session(registered.traffic().clone());
    let (stream_back_tx, stream_back_rx) = oneshot::channel();
    let incoming =
        incoming::IncomingAdapter::new(stream, shared.clone(), counters.clone(), stream_back_tx);
    let service = info.service.clone();
    let session = Session {
        info,
        incoming: bridge_api::Incoming::new(incoming),
        outbox,
        shutdown: session_shutdown.clone(),
        control: control.clone(),
    };

    let (finish_tx, finish_rx) = oneshot::channel::<CloseFrame>();
    let writer = writer::Writer::new(sink, outbox_rx, shared.clone(), counters, &settings);
    let compressor = settings
        .deflate
        .as_ref()
        .map(crate::deflate::Compressor::new);
    let writer = writer.with_compression(compressor, &service);
    let writer_fut = Box::pin(writer.run(finish_rx));
    async move {
        let _registered = registered;
        let bridge_fut = bridge.serve(session).instrument(span.clone());
        // Deliveries wake the writer alone; the bridge is polled only when it was woken.
        let close_sent = match wake_apart::wake_apart(bridge_fut, writer_fut).await {
            Either::Left((result, writer_fut)) => {
                span.in_scope(|| log_session_end(&result));
                let frame = shared
                    .take_close()
                    .or_else(|| control.stop_reason().as_ref().and_then(close_for_stop))
                    .unwrap_or_else(|| close_for_bridge_result(&result, shutdown.is_cancelled()));
                let _ = finish_tx.send(frame);
                writer_fut.await
            }
            Either::Right((close_sent, bridge_fut)) => {
                // The client went away, or the transport closed it: the bridge must wind up.
                session_shutdown.cancel();
                let _ = wind_up(bridge_fut, settings.linger, &span).await;
                close_sent
            }
        };
        // Our close frame is out; read until the client's close (or the link drops) so the
        // closing handshake completes and the server, not the client, holds TIME_WAIT.
        if let (true, Ok(mut stream)) = (close_sent, stream_back_rx.await) {
            let _ = tokio::time::timeout(settings.linger, async {
                while let Some(Ok(msg)) = stream.next().await {
                    if msg.is_close() {
                        break;
                    }
                }
            })
            .await;
        }
        span.in_scope(|| tracing::debug!("session end"));
    }
}

#[cfg(test)]
mod tests;
