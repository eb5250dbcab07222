use std::sync::Arc;
use std::time::Duration;

use bridge_api::{Message, OutboxReceiver, Outgoing};
use futures::stream::SplitSink;
use futures::SinkExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::protocol::frame::coding::Data;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::{self, protocol::frame::coding::OpCode};
use tokio_tungstenite::WebSocketStream;

use super::close::{code, CloseFrame};
use super::{Shared, TransportSettings};
use crate::deflate::Compressor;
use crate::limits::{record_trip, record_trips, trip};
use crate::services::TrafficCounters;

type WsWriter<S> = SplitSink<WebSocketStream<S>, tungstenite::Message>;

/// Messages written per flush at most, so one busy session cannot starve the ping timer.
const MAX_BATCH: usize = 128;

/// Writes the outbox to the socket, many messages per flush, and owns pings and closes.
pub(super) struct Writer<S> {
    sink: WsWriter<S>,
    rx: OutboxReceiver,
    shared: Arc<Shared>,
    counters: TrafficCounters,
    idle_timeout: Duration,
    pending_close: Option<CloseFrame>,
    /// Reused between batches so a busy session does not allocate per flush.
    scratch: Vec<Outgoing>,
    /// permessage-deflate, when negotiated, with the counter of the bytes it sent.
    compressor: Option<Box<(Compressor, metrics::Counter)>>,
}

enum Wrote {
    Ok,
    ClientGone,
}

impl<S> Writer<S>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    pub(super) fn new(
        sink: WsWriter<S>,
        rx: OutboxReceiver,
        shared: Arc<Shared>,
        counters: TrafficCounters,
        settings: &TransportSettings,
    ) -> Self {
        Writer {
            sink,
            rx,
            shared,
            counters,
            idle_timeout: settings.idle_timeout,
            pending_close: None,
            scratch: Vec::new(),
            compressor: None,
        }
    }

    pub(super) fn with_compression(
        mut self,
        compressor: Option<Compressor>,
        service: &str,
    ) -> Self {
        self.compressor = compressor.map(|c| {
            let sent = metrics::counter!(
                "gateway_ws_deflate_bytes_out_total",
                "service" => service.to_string()
            );
            Box::new((c, sent))
        });
        self
    }

    /// Returns whether a close frame went out (so the caller should await the client's).
    pub(super) async fn run(mut self, mut finish: oneshot::Receiver<CloseFrame>) -> bool {
        let idle = self.idle_timeout;
        let check_every = if idle.is_zero() {
            Duration::from_secs(3600)
        } else {
            idle / 2
        };
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + check_every, check_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut outbox_open = true;
        let mut pinged = false;
        loop {
            if let Some(frame) = self.pending_close.take() {
                return self.close(frame).await;
            }
            tokio::select! {
                biased;
                frame = &mut finish => {
                    let frame = frame.unwrap_or(CloseFrame { code: code::NORMAL, reason: String::new() });
                    // A close the bridge queued before it finished says more than "normal".
                    let frame = self.drain_outbox().await.unwrap_or(frame);
                    return self.close(frame).await;
                }
                item = self.rx.recv(), if outbox_open => match item {
                    Some(Outgoing::Message(msg)) => {
                        if let Wrote::ClientGone = self.write_batch(msg).await {
                            return false;
                        }
                    }
                    Some(Outgoing::Close(end)) => self.pending_close = Some(end.into()),
                    None => outbox_open = false,
                },
                _ = ticker.tick(), if !idle.is_zero() => {
                    if let Some(c) = self.compressor.as_mut() {
                        c.0.release_if_quiet();
                    }
                    let silent = self.shared.silent_for();
                    if silent < idle {
                        pinged = false;
                    } else if !pinged {
                        pinged = true;
                        if self.sink.send(tungstenite::Message::Ping(Default::default())).await.is_err() {
                            return false;
                        }
                    } else if silent >= idle * 2 {
                        record_trip(trip::IDLE_TIMEOUT);
                        return self.close(CloseFrame { code: code::GOING_AWAY, reason: "idle timeout".into() }).await;
                    }
                }
            }
        }
    }

    fn frame_for(&mut self, msg: Message) -> tungstenite::Message {
        self.counters.sent(msg.len());
        if let Some(c) = self.compressor.as_mut() {
            let (payload, opcode) = match &msg {
                Message::Text(t) => (t.as_bytes(), Data::Text),
                Message::Binary(b) => (b, Data::Binary),
            };
            if let Some(compressed) = c.0.compress(payload) {
                c.1.increment(compressed.len() as u64);
                let mut frame = Frame::message(compressed, OpCode::Data(opcode), true);
                frame.header_mut().rsv1 = true;
                return tungstenite::Message::Frame(frame);
            }
        }
        match msg {
            Message::Binary(b) => tungstenite::Message::Binary(b),
            // Our text is valid UTF-8 by construction; sending it as a raw frame skips a
            // second validation per subscriber on fan-out.
            Message::Text(t) => tungstenite::Message::Frame(Frame::message(
                t.into_bytes(),
                OpCode::Data(Data::Text),
                true,
            )),
        }
    }

    async fn write_batch(&mut self, first: Message) -> Wrote {
        let first = self.frame_for(first);
        if self.sink.feed(first).await.is_err() {
            return Wrote::ClientGone;
        }
        let mut more = std::mem::take(&mut self.scratch);
        self.rx.try_recv_many(&mut more, MAX_BATCH - 1);
        let mut gone = false;
        for item in more.drain(..) {
            if gone || self.pending_close.is_some() {
                continue; // dropped: the client is gone or a close comes first
            }
            match item {
                Outgoing::Message(msg) => {
                    let msg = self.frame_for(msg);
                    gone = self.sink.feed(msg).await.is_err();
                }
                Outgoing::Close(end) => self.pending_close = Some(end.into()),
            }
        }
        self.scratch = more;
        self.count_full();
        if gone {
            return Wrote::ClientGone;
        }
        match self.sink.flush().await {
            Ok(()) => Wrote::Ok,
            Err(_) => Wrote::ClientGone,
        }
    }

    /// What the bridge queued before it finished still goes out, ahead of the close; a
    /// close it queued is returned.
    async fn drain_outbox(&mut self) -> Option<CloseFrame> {
        if let Some(frame) = self.pending_close.take() {
            return Some(frame);
        }
        while let Some(item) = self.rx.try_recv() {
            match item {
                Outgoing::Message(msg) => {
                    let msg = self.frame_for(msg);
                    if self.sink.feed(msg).await.is_err() {
                        return None;
                    }
                }
                Outgoing::Close(end) => return Some(end.into()),
            }
        }
        None
    }

    async fn close(mut self, frame: CloseFrame) -> bool {
        self.rx.close();
        let ws_frame = tungstenite::protocol::CloseFrame {
            code: frame.code.into(),
            // A longer reason would make the frame invalid and the client see 1006.
            reason: super::truncate_reason(&frame.reason).into(),
        };
        match self
            .sink
            .send(tungstenite::Message::Close(Some(ws_frame)))
            .await
        {
            Ok(()) => true,
            Err(_) => {
                // The client closed first: tungstenite refuses our frame but holds its
                // reply to the client's close, which a flush pushes out.
                let _ = self.sink.flush().await;
                false
            }
        }
    }
}

impl<S> Writer<S> {
    /// A bridge's `try_send` on a full queue is a limit trip; the seam only counts them, so
    /// the transport records them, after every batch and once more when the writer ends.
    fn count_full(&self) {
        let n = self.rx.take_full();
        if n > 0 {
            record_trips(trip::OUTGOING_QUEUE, n);
        }
    }
}

impl<S> Drop for Writer<S> {
    fn drop(&mut self) {
        self.count_full();
    }
}
