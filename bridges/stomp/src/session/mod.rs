//! One STOMP session: frames from the client drive the backend; deliveries from the
//! backend's fan-out flow to the client as fast as it reads, under its subscriptions'
//! slow-consumer policies; heart-beats both ways.

mod commands;
mod connect;
mod deliver;
mod error;
mod refresh;
mod stop;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bridge_api::{Message, Outbox, Session, SessionControl, SessionInfo};
use bytes::BytesMut;
use protocol_stomp::{encode_to_bytes, Command, Decoded, Decoder, Frame, Limits, Version};
use tokio::time::Instant;

use crate::backend::{AckMode, BackendSession};
use crate::destination::Destination;
use crate::inbox::{AckToken, Inbox, SubKey};
use crate::StompBridge;
pub use error::{FrameResult, StompError};
pub use refresh::{describe as describe_refresh_metrics, TOKEN_DESTINATION};

struct SubState {
    key: SubKey,
    id: Arc<str>,
    destination: Destination,
    ack: AckMode,
    /// Ack ids delivered and not yet acknowledged, oldest first (for cumulative ACK).
    outstanding: VecDeque<String>,
    /// The outbox lane of a direct (`ack:auto` topic) subscription.
    lane: Option<bridge_api::Lane>,
    /// The stream serving this subscription, and its pattern there.
    stream: Option<(Arc<crate::stream::Stream>, String)>,
}

struct PendingAck {
    key: SubKey,
    token: Option<AckToken>,
}

enum TxOp {
    Send(Frame),
    Ack(Frame),
    Nack(Frame),
}

pub struct StompSession<'a> {
    bridge: &'a StompBridge,
    info: Arc<SessionInfo>,
    outbox: Outbox,
    /// Why the gateway stopped the session, and where a login or a refresh records who
    /// the client is now.
    control: Arc<SessionControl>,
    inbox: Arc<Inbox>,
    backend: Option<Box<dyn BackendSession>>,
    /// The client's identity once CONNECT settled it (handshake or STOMP login).
    principal: Option<bridge_api::Principal>,
    /// What the destination ACL lets this client do, resolved at CONNECT.
    acl: crate::acl::Grant,
    decoder: Decoder,
    buf: BytesMut,
    version: Version,
    subs: HashMap<String, SubState>,
    by_key: HashMap<SubKey, String>,
    next_key: SubKey,
    acks: HashMap<String, PendingAck>,
    next_ack: u64,
    transactions: HashMap<String, Vec<TxOp>>,
    /// Temp queues this session has asked replies for, by name.
    temp_queues: HashMap<String, SubKey>,
    /// Server-to-client and client-to-server heart-beat intervals, once negotiated.
    hb_out: Option<Duration>,
    hb_in: Option<Duration>,
    last_sent: Instant,
    /// The outbox's `taken()` at the last heart-beat check: direct deliveries do not pass
    /// through the session, so this is how it knows the link was busy.
    last_taken: u64,
    /// When the heart-beat check last ran.
    last_hb_check: Instant,
    last_heard: Instant,
    /// Set when heart-beats were negotiated: how often to check them.
    hb_tick_period: Option<Duration>,
    disconnecting: bool,
    /// Reused for each delivery batch.
    out_scratch: VecDeque<Message>,
    /// Lanes opened by the frame being handled, resumed after its RECEIPT is queued.
    paused_lanes: Vec<bridge_api::Lane>,
    /// Headers for the RECEIPT of the frame being handled (a stream subscription's position).
    receipt_extra: Vec<(&'static str, String)>,
}

/// How a session's loop ended.
enum End {
    /// Client left, DISCONNECT, or shutdown: a normal close.
    Done,
    /// Send this ERROR, then close with its code.
    Error(StompError),
    /// The gateway ended the session on purpose: send this ERROR; the transport closes
    /// with the code the stop calls for, so none is queued here.
    Stopped(StompError),
}

impl<'a> StompSession<'a> {
    pub fn new(bridge: &'a StompBridge, session: &Session) -> Self {
        let limits = Limits {
            max_frame_size: bridge.settings.max_frame_size,
            ..Limits::default()
        };
        let now = Instant::now();
        StompSession {
            bridge,
            info: session.info.clone(),
            outbox: session.outbox.clone(),
            control: session.control.clone(),
            inbox: Inbox::new(bridge.metrics.clone()),
            backend: None,
            principal: None,
            acl: crate::acl::Grant::default(),
            decoder: Decoder::new(limits),
            buf: BytesMut::new(),
            version: Version::V1_0,
            subs: HashMap::new(),
            by_key: HashMap::new(),
            next_key: 1,
            acks: HashMap::new(),
            next_ack: 1,
            transactions: HashMap::new(),
            temp_queues: HashMap::new(),
            hb_out: None,
            hb_in: None,
            last_sent: now,
            last_taken: 0,
            last_hb_check: now,
            last_heard: now,
            hb_tick_period: None,
            disconnecting: false,
            out_scratch: VecDeque::new(),
            paused_lanes: Vec::new(),
            receipt_extra: Vec::new(),
        }
    }

    pub async fn run(mut self, session: Session) -> Result<(), bridge_api::BridgeError> {
        let Session {
            mut incoming,
            shutdown,
            ..
        } = session;
        let outbox = self.outbox.clone();
        let inbox = self.inbox.clone();
        // Heart-beat checks tick at a fixed pace; each tick compares against the last
        // traffic, so busy sessions pay nothing per message for them.
        let mut hb_tick = tokio::time::interval(Duration::from_secs(3600));
        hb_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut pending = false;
        // Made once: a fresh `cancelled()` per wake-up would register and unregister a
        // waiter every time.
        let mut cancelled = std::pin::pin!(shutdown.cancelled());
        let end = loop {
            if self.disconnecting {
                break End::Done;
            }
            tokio::select! {
                biased;
                _ = &mut cancelled => match self.control.stop_reason().as_ref().and_then(stop::error_for) {
                    Some(e) => break End::Stopped(e),
                    None => break End::Done,
                },
                msg = incoming.recv() => {
                    let Some(msg) = msg else { break End::Done };
                    self.last_heard = Instant::now();
                    // Boxed: frame handling is a deep future that an idle session
                    // would otherwise carry inline in its state all the time.
                    if let Err(e) = Box::pin(self.on_bytes(msg)).await {
                        break End::Error(e);
                    }
                    if let Some(period) = self.hb_tick_period.take() {
                        hb_tick = tokio::time::interval_at(Instant::now() + period, period);
                        hb_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    }
                }
                permit = outbox.reserve(), if pending => {
                    let Ok(permit) = permit else { break End::Done };
                    Box::pin(self.deliver(permit)).await;
                    pending = self.inbox.has_pending();
                }
                _ = inbox.notified(), if !pending => {
                    if let Some(key) = self.inbox.overflowed() {
                        break End::Error(self.slow_consumer(key));
                    }
                    if let Some(reason) = self.inbox.failure() {
                        break End::Error(StompError::backend(reason));
                    }
                    pending = self.inbox.has_pending();
                }
                _ = hb_tick.tick() => {
                    if let Err(e) = Box::pin(self.heart_beat()).await {
                        break End::Error(e);
                    }
                }
            }
        };
        let result = match end {
            End::Done => Ok(()),
            End::Error(e) => {
                self.send_error(&e).await;
                // Closed right after the ERROR, not after the backend's clean-up, which may
                // wait on a broker that is gone.
                self.outbox.end(e.end, e.message.clone()).await;
                Err(e.into())
            }
            End::Stopped(e) => {
                self.send_error(&e).await;
                stop::result(e)
            }
        };
        self.cleanup().await;
        result
    }

    async fn on_bytes(&mut self, msg: Message) -> FrameResult {
        self.buf.extend_from_slice(&msg.payload());
        loop {
            let decoded = self.decoder.decode(&mut self.buf).map_err(|e| {
                StompError::protocol("malformed_frame", "malformed frame", e.to_string())
            })?;
            match decoded {
                None => break,
                Some(Decoded::HeartBeat) => {}
                Some(Decoded::Frame(frame)) => {
                    self.bridge.metrics.frame_in(frame.command);
                    let receipt = frame.headers.get("receipt").map(str::to_owned);
                    if let Err(e) = self.on_frame(frame).await {
                        return Err(e.with_receipt(receipt));
                    }
                    if self.disconnecting {
                        break;
                    }
                }
            }
        }
        // Keep a partial frame, but do not hold on to a large buffer once it is drained.
        if self.buf.is_empty() && self.buf.capacity() > 64 * 1024 {
            self.buf = BytesMut::new();
        }
        Ok(())
    }

    async fn on_frame(&mut self, frame: Frame) -> FrameResult {
        if self.backend.is_none() {
            return match frame.command {
                Command::Connect | Command::Stomp => self.connect(frame).await,
                other => Err(StompError::protocol(
                    "not_connected",
                    "not connected",
                    format!(
                        "The first frame must be CONNECT or STOMP, got {}.",
                        other.as_str()
                    ),
                )),
            };
        }
        let receipt = frame.headers.get("receipt").map(str::to_owned);
        match frame.command {
            Command::Connect | Command::Stomp => {
                return Err(StompError::protocol(
                    "already_connected",
                    "already connected",
                    "A second CONNECT on one session is not allowed.",
                ))
            }
            Command::Send => self.send(frame).await?,
            Command::Subscribe => self.subscribe(frame).await?,
            Command::Unsubscribe => self.unsubscribe(frame).await?,
            Command::Ack => self.ack_or_tx(frame, false).await?,
            Command::Nack => self.ack_or_tx(frame, true).await?,
            Command::Begin => self.begin(&frame)?,
            Command::Commit => self.commit(&frame).await?,
            Command::Abort => self.abort(&frame)?,
            Command::Disconnect => self.disconnecting = true,
            other => {
                return Err(StompError::protocol(
                    "unexpected_command",
                    "unexpected command",
                    format!(
                        "{} is a server frame; clients cannot send it.",
                        other.as_str()
                    ),
                ))
            }
        }
        if let Some(id) = receipt {
            let mut frame = Frame::new(Command::Receipt).header("receipt-id", id);
            for (k, v) in self.receipt_extra.drain(..) {
                frame = frame.header(k, v);
            }
            self.send_frame(frame).await;
        }
        self.receipt_extra.clear();
        for lane in self.paused_lanes.drain(..) {
            lane.resume();
        }
        Ok(())
    }

    async fn send_frame(&mut self, frame: Frame) {
        let cmd = frame.command;
        let bytes = encode_to_bytes(&frame, self.version);
        self.bridge.metrics.frame_out(cmd, 1);
        self.last_sent = Instant::now();
        let _ = self.outbox.send(Message::text_or_binary(bytes)).await;
    }

    /// The one ERROR frame of a session that ends for `e`; the transport closes after it.
    async fn send_error(&mut self, e: &StompError) {
        self.bridge.metrics.error_frame(e.reason);
        tracing::debug!(
            session = self.info.id,
            reason = e.reason,
            "STOMP ERROR: {}",
            e.message
        );
        let mut frame = Frame::new(Command::Error)
            .header("message", e.message.as_str())
            .header("content-type", "text/plain");
        if let Some(r) = &e.receipt {
            frame = frame.header("receipt-id", r);
        }
        let frame = frame.with_body(e.detail.clone().into_bytes());
        self.send_frame(frame).await;
    }

    fn slow_consumer(&self, key: SubKey) -> StompError {
        let id = self.by_key.get(&key).cloned().unwrap_or_default();
        StompError::policy(
            "slow_consumer",
            "slow consumer",
            format!(
                "Subscription {id} fell more than {} messages behind; its policy is to disconnect.",
                self.bridge.settings.subscription_queue
            ),
        )
    }

    async fn heart_beat(&mut self) -> FrameResult {
        let now = Instant::now();
        let taken = self.outbox.taken();
        if taken != self.last_taken {
            // The writer took messages since the last check, some maybe straight from a
            // lane: the link was not quiet.
            // Some time since the last check; counting it from the last check errs
            // towards one heart-beat too many, never one too few.
            self.last_taken = taken;
            self.last_sent = self.last_sent.max(self.last_hb_check);
        }
        self.last_hb_check = now;
        if let Some(every) = self.hb_out {
            if now.duration_since(self.last_sent) >= every / 2 {
                self.last_sent = now;
                // Our own heart-beat is not traffic: the next check expects exactly it.
                self.last_taken = taken + 1;
                let _ = self.outbox.try_send(Message::text("\n"));
            }
        }
        if let Some(every) = self.hb_in {
            let allowed = every.mul_f64(self.bridge.settings.heart_beat_grace);
            if now.duration_since(self.last_heard) > allowed {
                return Err(StompError::policy(
                    "heart_beat_timeout",
                    "heart-beat timeout",
                    format!(
                        "Nothing received for {allowed:?}; the negotiated heart-beat is {every:?}."
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn cleanup(&mut self) {
        for sub in self.subs.values() {
            if let Some((stream, pattern)) = &sub.stream {
                stream.leave(pattern, self.info.id, sub.key);
            }
        }
        if let Some(mut backend) = self.backend.take() {
            backend.close().await;
            self.bridge
                .metrics
                .session_closed(self.version, self.subs.len());
        }
    }
}
