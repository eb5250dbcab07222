//! One client's AMQP connection: the handshake (`handshake.rs`), then frames from the client
//! dispatched per channel (`methods.rs`), deliveries and confirms from the broker relayed
//! back (`deliver.rs`), heart-beats both ways, and the client's exclusive queues deleted
//! when it leaves.

mod deliver;
mod fault;
mod handshake;
mod methods;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use bridge_api::{
    BridgeError, CancellationToken, EndKind, Incoming, Message, Outbox, Session, SessionControl,
    SessionInfo, StopReason,
};
use bytes::{Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{BoxStream, FuturesOrdered, SelectAll};
use futures::{FutureExt, StreamExt};
use protocol_amqp::protocol::{channel, connection};
use protocol_amqp::{
    encode_method, AMQPClass, Assembler, Command, Decoder, Frame, Limits, ShortString,
    CHANNEL_ERROR, COMMAND_INVALID, CONNECTION_FORCED, HEARTBEAT, NOT_ALLOWED, NOT_IMPLEMENTED,
    REPLY_SUCCESS,
};
use rabbitmq_pool::lapin::message::Delivery;
use rabbitmq_pool::lapin::Confirmation;
use rabbitmq_pool::{lapin, Chan, Pool};
use tokio::time::Instant;

use crate::acl::Grant;
use crate::AmqpBridge;
use fault::{broker_gone, Close, Fault};

/// Publishes waiting for the broker's confirm before the session stops reading the client.
const MAX_UNCONFIRMED: usize = 4096;

/// Deliveries taken from lapin per wake before the loop looks at the client again.
const DELIVERY_BATCH: usize = 64;

/// How long a closing peer has to answer Close with Close-Ok.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// A delivery (or the end of its consumer, `None`) tagged with its client channel.
/// The `u64` is the channel's generation: items of a closed channel whose number was
/// opened again are dropped.
type ConsumerItem = (u16, u64, ShortString, Option<lapin::Result<Delivery>>);

/// A publish's confirm: channel, the client's delivery tag (0 when the client did not ask
/// for confirms), and the broker's answer.
type Confirmed = (u16, u64, u64, lapin::Result<Confirmation>);

/// A client channel and the pooled broker channel behind it.
struct ChannelState {
    /// Unique within the session, so late items of a closed channel are told apart from
    /// those of a reopened one with the same number.
    gen: u64,
    /// `None` once the gateway sent Channel.Close: frames are dropped until Close-Ok.
    chan: Option<Chan>,
    assembler: Assembler,
    /// The client asked for confirms (confirm.select): its publishes count from 1.
    confirm: bool,
    /// The broker channel is in confirm mode (for the client's confirms, or to see
    /// returns of mandatory publishes).
    broker_confirm: bool,
    tx: bool,
    published: u64,
    /// The per-consumer basic.qos in force (the client's, capped), restored after a no-ack
    /// consumer's window is set; `None` until set, when the next consumer gets the cap.
    prefetch: Option<u16>,
    consumers: HashSet<ShortString>,
    /// Consumers the client cancelled, with its `nowait`: their Cancel-Ok goes out when
    /// lapin has handed over every delivery the broker sent before it, as RabbitMQ orders
    /// them on the wire.
    cancelling: HashMap<ShortString, bool>,
    /// Delivery tags the client has to settle (deliveries and get-oks with acks). Checked
    /// here, with RabbitMQ's 406, because the broker's answer to an unknown tag is an
    /// asynchronous channel close that lapin does not report until the channel is used.
    unacked: std::collections::BTreeSet<u64>,
    /// Consumers the client asked no-ack for: the gateway acknowledges their deliveries
    /// as it takes them, so the broker's window (not lapin's buffer) bounds what waits.
    no_ack: HashSet<ShortString>,
}

impl ChannelState {
    /// Settle `tag` (and every earlier one with `multiple`). Tag 0 with `multiple` is all of
    /// them, as at RabbitMQ; it goes to the broker as the highest outstanding tag, because
    /// lapin takes a 0 to drop the deliveries it holds and has not handed over yet. `Ok(None)`:
    /// nothing outstanding to settle; `Err`: a tag that is not outstanding.
    fn settle(&mut self, tag: u64, multiple: bool) -> Result<Option<u64>, ()> {
        if multiple && tag == 0 {
            let last = self.unacked.last().copied();
            self.unacked.clear();
            return Ok(last);
        }
        if !self.unacked.contains(&tag) {
            return Err(());
        }
        if multiple {
            self.unacked = self.unacked.split_off(&(tag + 1));
        } else {
            self.unacked.remove(&tag);
        }
        Ok(Some(tag))
    }

    fn new(chan: Chan, gen: u64) -> ChannelState {
        ChannelState {
            gen,
            chan: Some(chan),
            assembler: Assembler::new(),
            confirm: false,
            broker_confirm: false,
            tx: false,
            published: 0,
            prefetch: None,
            consumers: HashSet::new(),
            cancelling: HashMap::new(),
            unacked: Default::default(),
            no_ack: HashSet::new(),
        }
    }
}

/// How the loop over the client's frames stops.
enum Stop {
    /// The client closed the connection (Connection.Close, answered) or left.
    Done,
    Fault(Fault),
    /// The gateway ended the session on purpose (not a drain).
    Stopped(StopReason),
}

pub struct AmqpSession<'a> {
    b: &'a AmqpBridge,
    info: Arc<SessionInfo>,
    out: Outbox,
    /// Why the gateway stopped the session; where a realm login records the client.
    control: Arc<SessionControl>,
    /// Connection.Start went out: from then on a Connection.Close can tell the client why.
    start_sent: bool,
    decoder: Decoder,
    buf: BytesMut,
    /// What the client tuned; frames sent to it are no larger.
    frame_max: u32,
    heartbeat: u16,
    grant: Grant,
    user: String,
    pool: Option<Arc<Pool>>,
    /// The client's own broker connection (pass-through credentials), closed at the end.
    own_pool: bool,
    /// The pooled connection the client's channels are on, once it has one.
    slot: Option<usize>,
    /// The last channel generation handed out.
    generation: u64,
    broker: String,
    channels: HashMap<u16, ChannelState>,
    consumers: SelectAll<BoxStream<'static, ConsumerItem>>,
    confirms: FuturesOrdered<BoxFuture<'static, Confirmed>>,
    /// Exclusive and server-named queues this session declared.
    owned: Vec<String>,
    last_heard: Instant,
    last_sent: Instant,
    opened: bool,
}

impl<'a> AmqpSession<'a> {
    pub fn new(b: &'a AmqpBridge, session: &Session) -> AmqpSession<'a> {
        let s = &b.settings;
        AmqpSession {
            b,
            info: session.info.clone(),
            out: session.outbox.clone(),
            control: session.control.clone(),
            start_sent: false,
            decoder: Decoder::new(Limits {
                frame_max: s.frame_max,
                channel_max: s.max_channels,
                max_body_size: s.max_body_size,
            }),
            buf: BytesMut::new(),
            frame_max: s.frame_max,
            heartbeat: 0,
            grant: b.acl.grant(None),
            user: String::new(),
            pool: None,
            own_pool: false,
            slot: None,
            generation: 0,
            broker: rabbitmq_pool::endpoints(&b.nodes),
            channels: HashMap::new(),
            consumers: SelectAll::new(),
            confirms: FuturesOrdered::new(),
            owned: Vec::new(),
            last_heard: Instant::now(),
            last_sent: Instant::now(),
            opened: false,
        }
    }

    pub async fn run(mut self, session: Session) -> Result<(), BridgeError> {
        let Session {
            mut incoming,
            shutdown,
            ..
        } = session;
        let result = match self.handshake(&mut incoming, &shutdown).await {
            Ok(true) => {
                self.opened = true;
                self.b.metrics.sessions.increment(1.0);
                let r = self.serve(&mut incoming, &shutdown).await;
                self.b.metrics.sessions.decrement(1.0);
                r
            }
            Ok(false) => Ok(()),
            Err(e) => Err(e),
        };
        self.cleanup().await;
        result
    }

    async fn serve(
        &mut self,
        incoming: &mut Incoming,
        shutdown: &CancellationToken,
    ) -> Result<(), BridgeError> {
        let mut up = match &self.pool {
            Some(p) => p.watch_up(),
            None => return Err(BridgeError::internal("no broker connection after login")),
        };
        // Heart-beats are counted from Open-Ok: the handshake (a login check) is not silence.
        self.last_heard = Instant::now();
        self.last_sent = Instant::now();
        let beat = (self.heartbeat > 0).then(|| Duration::from_secs(u64::from(self.heartbeat)));
        // Half the interval, as RabbitMQ sends them; a disabled heart-beat still ticks, rarely.
        let period = beat.map_or(Duration::from_secs(3600), |b| b / 2);
        let mut tick = tokio::time::interval_at(Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Frames packed into the message that carried Connection.Open are handled now, not
        // when the next message comes.
        let leftover = if self.buf.is_empty() {
            None
        } else {
            Box::pin(self.on_bytes()).await
        };
        let stop = if let Some(stop) = leftover {
            stop
        } else {
            loop {
                tokio::select! {
                    biased;
                    _ = shutdown.cancelled() => match self.control.stop_reason() {
                        Some(r) if r != StopReason::Shutdown => break Stop::Stopped(r),
                        _ => break Stop::Fault(Fault::Connection(
                            broker_gone("the gateway is shutting down"))),
                    },
                    // A client publishing faster than the broker confirms is read no further until
                // the broker catches up: backpressure on that client, bounded memory here.
                msg = incoming.recv(), if self.confirms.len() < MAX_UNCONFIRMED => {
                        let Some(msg) = msg else { break Stop::Done };
                        self.last_heard = Instant::now();
                        self.buf.extend_from_slice(&msg.payload());
                        if let Some(stop) = Box::pin(self.on_bytes()).await {
                            break stop;
                        }
                    }
                    Some(item) = self.consumers.next(), if !self.consumers.is_empty() => {
                        // What lapin already holds goes out in one go: one wake of this task
                        // and of the writer for a batch, not for every delivery.
                        let (mut next, mut taken, mut stop) = (Some(item), 0, None);
                        while let Some(item) = next.take() {
                            if let Err(f) = Box::pin(self.on_delivery(item)).await {
                                stop = self.fault(f).await;
                                if stop.is_some() {
                                    break;
                                }
                            }
                            taken += 1;
                            if taken < DELIVERY_BATCH {
                                next = self.consumers.next().now_or_never().flatten();
                            }
                        }
                        if let Some(stop) = stop {
                            break stop;
                        }
                    }
                    Some(c) = self.confirms.next(), if !self.confirms.is_empty() => {
                        if let Err(f) = Box::pin(self.on_confirm(c)).await {
                            if let Some(stop) = self.fault(f).await {
                                break stop;
                            }
                        }
                    }
                    changed = up.changed() => {
                        let lost = changed.is_err() || self.channels.values().any(|c| {
                            c.chan.as_ref().is_some_and(|ch| !ch.usable())
                        });
                        if lost {
                            break Stop::Fault(Fault::BrokerGone(self.b.pool_outage(self.pool.as_deref())));
                        }
                    }
                    _ = tick.tick() => {
                        if let Some(b) = beat {
                            if self.last_heard.elapsed() > b * 2 {
                                return Err(BridgeError::client(format!(
                                    "no heart-beat from the client within {:?}", b * 2))
                                    .with_end(EndKind::GoingAway));
                            }
                            if self.last_sent.elapsed() >= period {
                                self.send(Bytes::from_static(&HEARTBEAT)).await;
                            }
                        }
                    }
                }
            }
        };
        match stop {
            Stop::Done => Ok(()),
            Stop::Fault(f) => Err(self.close_connection(f, incoming).await),
            Stop::Stopped(r) => self.close_stopped(&r, incoming).await,
        }
    }

    /// Connection.Close 320 (CONNECTION_FORCED, what RabbitMQ sends when an operator
    /// closes a connection) with the reason ("token expired"), then the client's Close-Ok
    /// or a short wait. No close of our own: the transport closes with the code the stop
    /// calls for. A credential's end is the client's to fix; an operator's close is no
    /// failure.
    async fn close_stopped(
        &mut self,
        reason: &StopReason,
        incoming: &mut Incoming,
    ) -> Result<(), BridgeError> {
        let text = reason.client_text().to_owned();
        tracing::debug!(
            session = self.info.id,
            "amqp session ended by the gateway: {text}"
        );
        self.b.metrics.connection_exception(CONNECTION_FORCED);
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: CONNECTION_FORCED,
                reply_text: short(&text),
                class_id: 0,
                method_id: 0,
            })),
        )
        .await;
        self.await_close_ok(incoming).await;
        if reason.is_credential() {
            Err(BridgeError::client(text).with_end(EndKind::PolicyViolation))
        } else {
            Ok(())
        }
    }

    /// Handle every whole frame buffered; `Some` when the connection is to stop.
    async fn on_bytes(&mut self) -> Option<Stop> {
        loop {
            let frame = match self.decoder.decode(&mut self.buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Some(Stop::Fault(Fault::Connection(Close::from(e)))),
            };
            match self.on_frame(frame).await {
                Ok(true) => {}
                Ok(false) => return Some(Stop::Done),
                Err(f) => {
                    if let Some(stop) = self.fault(f).await {
                        return Some(stop);
                    }
                }
            }
        }
        if self.buf.is_empty() && self.buf.capacity() > 256 * 1024 {
            self.buf = BytesMut::new();
        }
        None
    }

    /// A channel fault closes the channel and carries on; others stop the connection.
    async fn fault(&mut self, f: Fault) -> Option<Stop> {
        match f {
            Fault::Channel(c) => {
                self.close_channel(c).await;
                None
            }
            other => Some(Stop::Fault(other)),
        }
    }

    /// Frames after the handshake. `Ok(false)`: the client closed the connection.
    async fn on_frame(&mut self, frame: Frame) -> Result<bool, Fault> {
        let ch = frame.channel();
        if ch == 0 {
            return match frame {
                Frame::Heartbeat => Ok(true),
                Frame::Method(_, m) => self.on_connection_method(*m).await,
                _ => Err(Fault::connection(
                    COMMAND_INVALID,
                    "content frame on channel 0",
                )),
            };
        }
        if let Frame::Method(_, m) = &frame {
            self.b.metrics.method_in(m.get_amqp_class_id());
            match &**m {
                AMQPClass::Connection(_) => {
                    return Err(Fault::connection(
                        COMMAND_INVALID,
                        format!("connection method on channel {ch}"),
                    )
                    .on_method(ids(m)))
                }
                AMQPClass::Channel(channel::AMQPMethod::Open(_)) => {
                    self.open_channel(ch)
                        .await
                        .map_err(|f| f.on_method(ids(m)))?;
                    return Ok(true);
                }
                _ => {}
            }
        }
        let Some(state) = self.channels.get_mut(&ch) else {
            return Err(Fault::connection(
                CHANNEL_ERROR,
                format!("expected 'channel.open' on channel {ch}"),
            ));
        };
        if state.chan.is_none() {
            // Closing: only the close handshake counts (spec 4.2.4.1).
            if let Frame::Method(_, m) = &frame {
                match &**m {
                    AMQPClass::Channel(channel::AMQPMethod::CloseOk(_)) => {
                        self.channels.remove(&ch);
                    }
                    AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                        self.channels.remove(&ch);
                        self.send_method(ch, close_ok_channel()).await;
                    }
                    _ => {}
                }
            }
            return Ok(true);
        }
        let max_body = self.b.settings.max_body_size;
        let command = match frame {
            Frame::Method(_, m) => state.assembler.method(ch, *m),
            Frame::Header(_, h) => state.assembler.header(ch, *h, max_body),
            Frame::Body(_, b) => state.assembler.body(ch, b),
            Frame::Heartbeat => unreachable!("heart-beats are on channel 0"),
        }?;
        match command {
            None => Ok(true),
            Some(Command::Method(m)) => {
                let at = ids(&m);
                self.on_method(ch, m).await.map_err(|f| f.on_method(at))?;
                Ok(true)
            }
            Some(Command::Content(c)) => {
                let at = ids(&c.method);
                self.publish(ch, *c).await.map_err(|f| f.on_method(at))?;
                Ok(true)
            }
        }
    }

    async fn on_connection_method(&mut self, m: AMQPClass) -> Result<bool, Fault> {
        self.b.metrics.method_in(10);
        match m {
            AMQPClass::Connection(connection::AMQPMethod::Close(_)) => {
                self.send_method(
                    0,
                    AMQPClass::Connection(connection::AMQPMethod::CloseOk(connection::CloseOk {})),
                )
                .await;
                Ok(false)
            }
            AMQPClass::Connection(_) => Err(Fault::connection(
                NOT_IMPLEMENTED,
                format!("{} after the connection is open", name(&m)),
            )
            .on_method(ids(&m))),
            _ => Err(
                Fault::connection(COMMAND_INVALID, format!("{} on channel 0", name(&m)))
                    .on_method(ids(&m)),
            ),
        }
    }

    async fn open_channel(&mut self, ch: u16) -> Result<(), Fault> {
        if self.channels.contains_key(&ch) {
            return Err(Fault::connection(
                CHANNEL_ERROR,
                format!("channel {ch} is already open"),
            ));
        }
        if self.channels.len() >= usize::from(self.b.settings.max_channels) {
            return Err(Fault::connection(
                NOT_ALLOWED,
                format!(
                    "number of channels opened ({}) has reached the negotiated channel_max ({})",
                    self.channels.len(),
                    self.b.settings.max_channels
                ),
            ));
        }
        let pool = self.pool.clone().expect("logged in");
        // A client's channels share one broker connection, as they would at RabbitMQ:
        // its exclusive queues are then usable from all of them.
        let slot = self.slot;
        let opened = async {
            match slot {
                Some(i) => pool.channel_on(i).await.map(|c| (c, i)),
                None => pool.channel_and_slot().await,
            }
        };
        let chan = match tokio::time::timeout(rabbitmq_pool::RPC_TIMEOUT, opened).await {
            Ok(Ok((c, i))) => {
                self.slot = Some(i);
                // The node this client's channels are on, for the broker-gone reason.
                self.broker = c.node().to_string();
                c
            }
            Ok(Err(e)) => return Err(Fault::BrokerGone(e.message)),
            Err(_) => {
                return Err(Fault::BrokerGone(format!(
                    "no channel from RabbitMQ within {:?}",
                    rabbitmq_pool::RPC_TIMEOUT
                )))
            }
        };
        self.generation += 1;
        self.channels
            .insert(ch, ChannelState::new(chan, self.generation));
        self.b.metrics.channels.increment(1.0);
        self.send_method(
            ch,
            AMQPClass::Channel(channel::AMQPMethod::OpenOk(channel::OpenOk {})),
        )
        .await;
        Ok(())
    }

    /// Channel.Close to the client; its broker channel is closed now, the client's Close-Ok
    /// frees the number.
    async fn close_channel(&mut self, c: Close) {
        self.b.metrics.channel_exception(c.code);
        let Some(state) = self.channels.get_mut(&c.channel) else {
            return;
        };
        let Some(chan) = state.chan.take() else {
            return;
        };
        state.assembler.reset();
        self.b.metrics.channels.decrement(1.0);
        tracing::debug!(
            session = self.info.id,
            channel = c.channel,
            code = c.code,
            "{}",
            c.text
        );
        let method = AMQPClass::Channel(channel::AMQPMethod::Close(channel::Close {
            reply_code: c.code,
            reply_text: short(&c.text),
            class_id: c.class_id,
            method_id: c.method_id,
        }));
        self.send_method(c.channel, method).await;
        close_broker_channel(chan).await;
    }

    /// Connection.Close to the client, then its Close-Ok (or a short wait), then the end.
    async fn close_connection(&mut self, f: Fault, incoming: &mut Incoming) -> BridgeError {
        let (close, err) = match f {
            Fault::Connection(c) if c.code == CONNECTION_FORCED => {
                let e = BridgeError::client(c.text.clone()).with_end(EndKind::GoingAway);
                (c, e)
            }
            Fault::Connection(c) if c.code == protocol_amqp::ACCESS_REFUSED => {
                let e = BridgeError::client(c.text.clone()).with_end(EndKind::PolicyViolation);
                (c, e)
            }
            Fault::Connection(c) => {
                let e = BridgeError::client(c.text.clone()).with_end(EndKind::ProtocolError);
                (c, e)
            }
            Fault::BrokerGone(reason) => {
                let c = broker_gone(&format!("broker {} went away: {reason}", self.broker));
                let e = BridgeError::backend(c.text.clone()).with_end(EndKind::BackendFailed);
                (c, e)
            }
            Fault::Channel(c) => {
                let e = BridgeError::client(c.text.clone()).with_end(EndKind::ProtocolError);
                (c, e)
            }
        };
        self.b.metrics.connection_exception(close.code);
        self.send_method(
            0,
            AMQPClass::Connection(connection::AMQPMethod::Close(connection::Close {
                reply_code: close.code,
                reply_text: short(&close.text),
                class_id: close.class_id,
                method_id: close.method_id,
            })),
        )
        .await;
        self.await_close_ok(incoming).await;
        self.out.end(err.end_kind(), close.text.clone()).await;
        err
    }

    /// Read until the client's Connection.Close-Ok (or Close), dropping everything else.
    async fn await_close_ok(&mut self, incoming: &mut Incoming) {
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            loop {
                loop {
                    match self.decoder.decode(&mut self.buf) {
                        Ok(Some(Frame::Method(0, m)))
                            if matches!(
                                *m,
                                AMQPClass::Connection(
                                    connection::AMQPMethod::CloseOk(_)
                                        | connection::AMQPMethod::Close(_)
                                )
                            ) =>
                        {
                            return
                        }
                        Ok(Some(_)) => continue,
                        Ok(None) => break,
                        Err(_) => return,
                    }
                }
                match incoming.recv().await {
                    Some(msg) => self.buf.extend_from_slice(&msg.payload()),
                    None => return,
                }
            }
        })
        .await;
    }

    async fn send(&mut self, frame: Bytes) {
        self.last_sent = Instant::now();
        let _ = self.out.send(Message::binary(frame)).await;
    }

    /// A method and its content: queued under one lock when there is room.
    async fn send_all(&mut self, frames: Vec<Bytes>) {
        self.last_sent = Instant::now();
        let mut queue: std::collections::VecDeque<Message> =
            frames.into_iter().map(Message::binary).collect();
        if self.out.try_send_many(&mut queue).is_err() {
            return;
        }
        for m in queue {
            let _ = self.out.send(m).await;
        }
    }

    async fn send_method(&mut self, ch: u16, m: AMQPClass) {
        self.b.metrics.method_out(m.get_amqp_class_id());
        self.send(encode_method(ch, &m)).await;
    }

    /// The session is over: its queues go, its broker channels close.
    /// The session is over: its queues go, its broker channels close. Done on a task of its
    /// own, so it completes even when the transport stops waiting for this session.
    async fn cleanup(&mut self) {
        let open = self.channels.values().filter(|c| c.chan.is_some()).count();
        self.b.metrics.channels.decrement(open as f64);
        self.consumers = SelectAll::new();
        self.confirms = FuturesOrdered::new();
        let job = Cleanup {
            chans: self.channels.drain().filter_map(|(_, c)| c.chan).collect(),
            owned: std::mem::take(&mut self.owned),
            pool: self.pool.clone(),
            slot: self.slot,
            own_pool: self.own_pool,
            owners: self.b.exclusive.clone(),
            session: self.info.id,
        };
        let _ = tokio::spawn(job.run()).await;
    }
}

struct Cleanup {
    chans: Vec<Chan>,
    owned: Vec<String>,
    pool: Option<Arc<Pool>>,
    slot: Option<usize>,
    own_pool: bool,
    owners: Arc<crate::exclusive::Owners>,
    session: u64,
}

impl Cleanup {
    async fn run(self) {
        if !self.owned.is_empty() {
            // Exclusive queues can only be deleted from the connection that declared them:
            // one of the session's channels, or a new one on its connection.
            let spare = match (
                self.chans.iter().find(|c| c.usable()),
                &self.pool,
                self.slot,
            ) {
                (Some(_), _, _) => None,
                (None, Some(pool), Some(i)) => {
                    tokio::time::timeout(rabbitmq_pool::RPC_TIMEOUT, pool.channel_on(i))
                        .await
                        .ok()
                        .and_then(Result::ok)
                }
                _ => None,
            };
            if let Some(chan) = self.chans.iter().find(|c| c.usable()).or(spare.as_ref()) {
                // One at a time: a channel's synchronous methods wait for their replies.
                for q in &self.owned {
                    let del = chan.queue_delete(q.as_str().into(), Default::default());
                    let _ = tokio::time::timeout(rabbitmq_pool::RPC_TIMEOUT, del).await;
                }
            }
        }
        for q in &self.owned {
            self.owners.release(q, self.session);
        }
        futures::future::join_all(self.chans.into_iter().map(close_broker_channel)).await;
        if let (true, Some(pool)) = (self.own_pool, self.pool) {
            pool.close().await;
        }
    }
}

async fn close_broker_channel(chan: Chan) {
    if chan.usable() {
        let close = chan.close(REPLY_SUCCESS, "closed by the client".into());
        let _ = tokio::time::timeout(rabbitmq_pool::RPC_TIMEOUT, close).await;
    }
}

fn ids(m: &AMQPClass) -> (u16, u16) {
    (m.get_amqp_class_id(), m.get_amqp_method_id())
}

fn name(m: &AMQPClass) -> &'static str {
    protocol_amqp::method_name(m.get_amqp_class_id(), m.get_amqp_method_id()).unwrap_or("method")
}

fn close_ok_channel() -> AMQPClass {
    AMQPClass::Channel(channel::AMQPMethod::CloseOk(channel::CloseOk {}))
}

/// A reply text fits a short string (255 octets), cut on a character boundary.
fn short(text: &str) -> ShortString {
    let mut end = text.len().min(255);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].into()
}
