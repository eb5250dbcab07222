//! One fallback session: the state its requests share (replay buffer, open stream, up
//! queue) and the task that runs the bridge on the same `Session` the WebSocket transport
//! builds (`Outbox::channel(outgoing_queue)`, an `Incoming` fed by POSTs, a child shutdown
//! token). The task's pump drains the outbox in batches into the replay buffer, and ends
//! the session when the client deletes it, leaves it without a stream for `grace`, does
//! not read (the buffer stays full for `grace`), loses events, or sends a message over the
//! size limit. While the buffer is full the pump takes nothing from the outbox, so the
//! bridge sees the backpressure (and its lanes' slow-consumer policies act) as it would
//! behind a full socket.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bridge_api::{Bridge, Message, Outbox, OutboxReceiver, Outgoing, Session, SessionInfo};
use bytes::{Bytes, BytesMut};
use futures::future::Either;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::registry::{Fallback, SessionPermit};
use super::replay::ReplayBuffer;
use super::sse::{self, Next};
use super::upstream::UpStream;
use crate::limits::{record_trip, record_trips, trip, SessionSlots};
use crate::services::{Service, TrafficCounters};
use crate::transport::{close_for_bridge_result, code, truncate_reason, CloseFrame};

/// Messages taken from the outbox per batch at most (as the WebSocket writer does).
const MAX_BATCH: usize = 128;

/// `reason` label values of `gateway_http_fallback_sessions_reaped_total`.
pub mod reaped {
    pub const GRACE: &str = "grace";
    pub const OVERFLOW: &str = "overflow";
    pub const EVENTS_LOST: &str = "events_lost";
}

/// Why the client's side ended the session (set by a request, acted on by the pump).
#[derive(Debug, Clone)]
enum ClientEnd {
    Deleted,
    EventsLost,
    TooBig(String),
}

struct StreamSlot {
    generation: u64,
    open: bool,
    /// When the last stream closed (or the session started).
    since: Instant,
    waker: Option<Waker>,
}

struct State {
    replay: ReplayBuffer,
    stream: StreamSlot,
    up: VecDeque<Message>,
    up_waker: Option<Waker>,
    up_closed: bool,
    /// The last up seq handed to the bridge.
    applied: u64,
    ending: Option<ClientEnd>,
    /// The pump waits for a stream to take what is buffered.
    paused: bool,
    /// The close event, once the session has ended.
    close: Option<Bytes>,
    close_taken: bool,
}

/// What the session's requests and its task share.
pub struct Shared {
    pub id: Arc<str>,
    pub service: Arc<Service>,
    pub info: Arc<SessionInfo>,
    /// The service's HTTP counters, also counting into this session's own.
    counters: TrafficCounters,
    /// Fingerprint of the credentials the session was opened with (see `routes`).
    pub credentials: Option<u64>,
    /// Lines about this session, from its task or from its requests, are written in it.
    pub span: tracing::Span,
    state: Mutex<State>,
    /// Wakes the pump: a stream came or went, the client deleted, a resume failed.
    control: Notify,
    /// Wakes a POST waiting for the bridge to take the previous one's messages.
    up_room: Notify,
    post_in_flight: AtomicBool,
}

/// Where a POST's messages went.
pub enum Applied {
    /// Queued for the bridge; the last up seq applied.
    Ok(u64),
    /// The first seq is past the next one expected.
    Gap { expected: u64 },
    /// The session is over.
    Gone,
}

/// Holds the session's one POST slot.
pub struct PostSlot<'a>(&'a Shared);

impl Drop for PostSlot<'_> {
    fn drop(&mut self) {
        self.0.post_in_flight.store(false, Ordering::Release);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next frame for stream `generation`: at most `budget` bytes of events (0 once
    /// the stream has written `stream_bytes`; the close event still goes out).
    pub(super) fn next_for_stream(&self, generation: u64, budget: usize, cx: &Context<'_>) -> Next {
        let mut st = self.lock();
        if st.stream.generation != generation {
            return Next::End;
        }
        if budget > 0 || st.close.is_some() {
            let budget = if st.close.is_some() {
                usize::MAX
            } else {
                budget
            };
            if let Some(chunk) = st.replay.take_pending(budget) {
                let resume_pump = std::mem::take(&mut st.paused);
                drop(st);
                if resume_pump {
                    self.control.notify_one();
                }
                return Next::Data { chunk, last: false };
            }
        }
        if let Some(close) = st.close.clone() {
            st.close_taken = true;
            drop(st);
            self.control.notify_one();
            return Next::Data {
                chunk: close,
                last: true,
            };
        }
        match &st.stream.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.stream.waker = Some(cx.waker().clone()),
        }
        Next::Wait
    }

    /// Stream `generation`'s response is gone (ended, replaced or the client hung up).
    pub(super) fn stream_gone(&self, generation: u64) {
        let mut st = self.lock();
        if st.stream.generation == generation && st.stream.open {
            st.stream.open = false;
            st.stream.since = Instant::now();
            st.stream.waker = None;
            drop(st);
            self.control.notify_one();
        }
    }

    /// A new stream resuming after `last`; replaces any open one. Returns its generation.
    /// A resume point the buffer cannot serve ends the session (the stream gets the close).
    pub fn attach(&self, last: Option<u64>) -> u64 {
        let mut st = self.lock();
        if let Err(e) = st.replay.resume(last) {
            self.span.in_scope(
                || tracing::debug!(http_session = %self.id, ?last, "cannot resume: {e:?}"),
            );
            st.replay.skip_all();
            if st.close.is_none() {
                st.ending.get_or_insert(ClientEnd::EventsLost);
            }
        }
        let old = st.stream.waker.take();
        st.stream.generation += 1;
        st.stream.open = true;
        let generation = st.stream.generation;
        drop(st);
        if let Some(w) = old {
            w.wake();
        }
        self.control.notify_one();
        generation
    }

    /// DELETE: the client closes the session (1000).
    pub fn delete(&self) {
        self.lock().ending.get_or_insert(ClientEnd::Deleted);
        self.control.notify_one();
    }

    /// A message over the size limit ends the session like the WebSocket limit (1009).
    pub fn too_big(&self, reason: String) {
        record_trip(trip::MESSAGE_SIZE);
        self.lock().ending.get_or_insert(ClientEnd::TooBig(reason));
        self.control.notify_one();
    }

    /// The POST slot, unless another POST holds it.
    pub fn try_post(&self) -> Option<PostSlot<'_>> {
        self.post_in_flight
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
            .then_some(PostSlot(self))
    }

    pub fn ack(&self, id: u64) {
        self.lock().replay.ack(id);
    }

    /// The next up seq expected (for a 409 before any waiting).
    pub fn expected(&self) -> u64 {
        self.lock().applied + 1
    }

    pub fn is_over(&self) -> bool {
        let st = self.lock();
        st.close.is_some() || st.ending.is_some()
    }

    /// Hands `messages` (the first has up seq `seq`) to the bridge, skipping those already
    /// applied; waits while the bridge has not taken the previous POST's messages yet.
    pub async fn apply(&self, seq: u64, messages: Vec<Message>) -> Applied {
        let counters = &self.counters;
        loop {
            let room = self.up_room.notified();
            {
                let mut st = self.lock();
                if st.up_closed || st.close.is_some() {
                    return Applied::Gone;
                }
                let expected = st.applied + 1;
                if seq > expected {
                    return Applied::Gap { expected };
                }
                let skip = (expected - seq) as usize;
                if skip >= messages.len() {
                    return Applied::Ok(st.applied);
                }
                if st.up.is_empty() {
                    for msg in messages.into_iter().skip(skip) {
                        counters.received(msg.len());
                        st.up.push_back(msg);
                        st.applied += 1;
                    }
                    let applied = st.applied;
                    let waker = st.up_waker.take();
                    drop(st);
                    if let Some(w) = waker {
                        w.wake();
                    }
                    return Applied::Ok(applied);
                }
            }
            room.await;
        }
    }

    /// The bridge's next client message (see `upstream::UpStream`).
    pub(super) fn poll_up(&self, cx: &Context<'_>) -> Poll<Option<Message>> {
        let mut st = self.lock();
        if let Some(msg) = st.up.pop_front() {
            if st.up.is_empty() {
                if st.up.capacity() > 64 {
                    st.up.shrink_to(0);
                }
                drop(st);
                self.up_room.notify_one();
            }
            return Poll::Ready(Some(msg));
        }
        if st.up_closed {
            return Poll::Ready(None);
        }
        match &st.up_waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => st.up_waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Publishes the session's end: the open stream (if any) gets the close event after
    /// what is pending; the bridge's `Incoming` ends; a waiting POST gives up.
    fn publish_close(&self, frame: &CloseFrame) {
        let mut st = self.lock();
        st.close = Some(sse::close_event(
            frame.code,
            &truncate_reason(&frame.reason),
        ));
        st.up_closed = true;
        st.up.clear();
        let stream = st.stream.waker.take();
        let up = st.up_waker.take();
        drop(st);
        for w in [stream, up].into_iter().flatten() {
            w.wake();
        }
        self.up_room.notify_waiters();
    }

    /// Waits (bounded) until the open stream has taken the close event, so a drain does
    /// not exit before it is written.
    async fn close_delivered(&self, within: Duration) {
        let _ = tokio::time::timeout(within, async {
            loop {
                let notified = self.control.notified();
                {
                    let st = self.lock();
                    if !st.stream.open || st.close_taken {
                        return;
                    }
                }
                notified.await;
            }
        })
        .await;
    }
}

/// Settings a session task needs, copied out of the configuration once.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub outgoing_queue: usize,
    pub linger: Duration,
    pub grace: Duration,
    pub replay_bytes: usize,
}

/// Starts the session's task on `tasks` (the gateway's session tracker, which the drain
/// waits for) and returns its shared state, already registered under `id`.
#[allow(clippy::too_many_arguments)]
pub fn start(
    fallback: &Arc<Fallback>,
    tasks: &tokio_util::task::TaskTracker,
    shutdown: &CancellationToken,
    registry: &Arc<crate::sessions::SessionRegistry>,
    service: Arc<Service>,
    info: Arc<SessionInfo>,
    slots: SessionSlots,
    permit: SessionPermit,
    id: Arc<str>,
    credentials: Option<u64>,
) -> Arc<Shared> {
    let settings = fallback.session_settings.clone();
    let session_shutdown = shutdown.child_token();
    let control = registry.control(info.id, session_shutdown.clone(), &info);
    let (outbox, outbox_rx) = Outbox::channel(settings.outgoing_queue);
    let registered = registry.register(info.clone(), control.clone(), outbox_rx.depth());
    let counters = service
        .http_counters
        .for_session(registered.traffic().clone());
    let shared = Arc::new(Shared {
        id: id.clone(),
        counters: counters.clone(),
        service: service.clone(),
        info: info.clone(),
        credentials,
        span: crate::logging::session_span(&info),
        state: Mutex::new(State {
            replay: ReplayBuffer::new(settings.replay_bytes),
            stream: StreamSlot {
                generation: 0,
                open: false,
                since: Instant::now(),
                waker: None,
            },
            up: VecDeque::new(),
            up_waker: None,
            up_closed: false,
            applied: 0,
            ending: None,
            paused: false,
            close: None,
            close_taken: false,
        }),
        control: Notify::new(),
        up_room: Notify::new(),
        post_in_flight: AtomicBool::new(false),
    });
    fallback.registry.insert(id, shared.clone());

    let session = Session {
        info: info.clone(),
        incoming: bridge_api::Incoming::new(UpStream::new(shared.clone())),
        outbox,
        shutdown: session_shutdown.clone(),
        control: control.clone(),
    };
    let labels = [
        ("service", service.name.to_string()),
        ("subprotocol", info.subprotocol.clone().unwrap_or_default()),
        ("transport", "http".to_string()),
    ];
    let active = metrics::gauge!("gateway_sessions_active", &labels);
    let duration = metrics::histogram!(
        "gateway_session_duration_seconds",
        "service" => service.name.to_string(),
        "transport" => "http"
    );
    active.increment(1.0);
    let started = std::time::Instant::now();
    shared
        .span
        .in_scope(|| tracing::debug!(http_session = %shared.id, "session start"));

    let bridge: Arc<dyn Bridge> = service.bridge.clone();
    let (finish_tx, finish_rx) = oneshot::channel::<CloseFrame>();
    let pump = Pump {
        shared: shared.clone(),
        rx: outbox_rx,
        counters,
        grace: settings.grace,
        next_id: 1,
        scratch: Vec::new(),
        ends: Vec::new(),
    };
    let pump_fut = Box::pin(pump.run(finish_rx));
    let task_shared = shared.clone();
    let fallback = fallback.clone();
    tasks.spawn(async move {
        let _slots = slots;
        let _permit = permit;
        let _registered = registered;
        let shared = task_shared;
        // As on WebSocket: the bridge in the span, the pump (every delivery) outside it.
        let bridge_fut = bridge.serve(session).instrument(shared.span.clone());
        match crate::transport::wake_apart(bridge_fut, pump_fut).await {
            Either::Left((result, pump_fut)) => {
                shared
                    .span
                    .in_scope(|| crate::transport::log_session_end(&result));
                let frame = control
                    .stop_reason()
                    .as_ref()
                    .and_then(crate::transport::close_for_stop)
                    .unwrap_or_else(|| {
                        close_for_bridge_result(&result, session_shutdown.is_cancelled())
                    });
                let _ = finish_tx.send(frame);
                pump_fut.await;
            }
            Either::Right(((), bridge_fut)) => {
                session_shutdown.cancel();
                let _ = crate::transport::wind_up(bridge_fut, settings.linger, &shared.span).await;
            }
        }
        shared.close_delivered(settings.linger).await;
        fallback.registry.remove(&shared.id);
        active.decrement(1.0);
        duration.record(started.elapsed().as_secs_f64());
        shared
            .span
            .in_scope(|| tracing::debug!(http_session = %shared.id, "session end"));
    });
    shared
}

/// The session's writer: outbox → encoded events → replay buffer → the open stream.
struct Pump {
    shared: Arc<Shared>,
    rx: OutboxReceiver,
    counters: TrafficCounters,
    grace: Duration,
    next_id: u64,
    /// Reused between batches.
    scratch: Vec<Outgoing>,
    ends: Vec<usize>,
}

impl Pump {
    /// Runs until the session ends; the close event is published when this returns.
    async fn run(mut self, mut finish: oneshot::Receiver<CloseFrame>) {
        let grace = tokio::time::sleep(self.grace);
        tokio::pin!(grace);
        let mut outbox_open = true;
        let mut armed = None;
        let stall = tokio::time::sleep(self.grace);
        tokio::pin!(stall);
        let mut stalled = false;
        let frame = loop {
            let (detached, ending, full) = {
                let mut st = self.shared.lock();
                let full = st.replay.is_full();
                st.paused = full;
                (
                    (!st.stream.open).then_some(st.stream.since),
                    st.ending.clone(),
                    full,
                )
            };
            if full && !stalled {
                stall.as_mut().reset(Instant::now() + self.grace);
            }
            stalled = full;
            if let Some(end) = ending {
                break self.client_end(end);
            }
            if let Some(since) = detached.filter(|s| armed != Some(*s)) {
                armed = Some(since);
                grace.as_mut().reset(since + self.grace);
            }
            let control = self.shared.control.notified();
            tokio::select! {
                biased;
                frame = &mut finish => {
                    let frame = frame.unwrap_or(CloseFrame { code: code::NORMAL, reason: String::new() });
                    // What the bridge queued before it finished still goes out; a close it
                    // queued says more than "normal".
                    break self.drain().unwrap_or(frame);
                }
                _ = control => {}
                item = self.rx.recv(), if outbox_open && !full => match item {
                    Some(Outgoing::Message(msg)) => {
                        if let Some(frame) = self.batch(Some(msg)) {
                            break frame;
                        }
                    }
                    Some(Outgoing::Close(end)) => break end.into(),
                    None => outbox_open = false,
                },
                _ = &mut stall, if full => break self.overflow(),
                _ = &mut grace, if detached.is_some() => {
                    metrics::counter!("gateway_http_fallback_sessions_reaped_total", "reason" => reaped::GRACE).increment(1);
                    self.shared.span.in_scope(|| tracing::debug!(http_session = %self.shared.id, "no event stream for {:?}: session ends", self.grace));
                    break CloseFrame { code: code::GOING_AWAY, reason: "no event stream".into() };
                }
            }
        };
        self.rx.close();
        self.count_full();
        self.shared.publish_close(&frame);
    }

    fn client_end(&mut self, end: ClientEnd) -> CloseFrame {
        match end {
            ClientEnd::Deleted => CloseFrame {
                code: code::NORMAL,
                reason: String::new(),
            },
            ClientEnd::EventsLost => {
                metrics::counter!("gateway_http_fallback_sessions_reaped_total", "reason" => reaped::EVENTS_LOST).increment(1);
                CloseFrame {
                    code: code::POLICY_VIOLATION,
                    reason: "events lost".into(),
                }
            }
            ClientEnd::TooBig(reason) => CloseFrame {
                code: code::MESSAGE_TOO_BIG,
                reason,
            },
        }
    }

    fn overflow(&mut self) -> CloseFrame {
        record_trip(trip::OUTGOING_QUEUE);
        metrics::counter!("gateway_http_fallback_sessions_reaped_total", "reason" => reaped::OVERFLOW).increment(1);
        self.shared.span.in_scope(|| tracing::debug!(http_session = %self.shared.id, "event stream not read for {:?}: replay buffer full", self.grace));
        CloseFrame {
            code: code::POLICY_VIOLATION,
            reason: "events not read (replay buffer full)".into(),
        }
    }

    /// Encodes `first` and what else is queued (up to a batch) into one chunk, appends it to
    /// the replay buffer and wakes the stream. Returns the close the bridge queued, if any.
    fn batch(&mut self, first: Option<Message>) -> Option<CloseFrame> {
        let mut items = std::mem::take(&mut self.scratch);
        if let Some(first) = first {
            items.push(Outgoing::Message(first));
        }
        let room = MAX_BATCH - items.len();
        self.rx.try_recv_many(&mut items, room);
        let mut close = None;
        let mut len = 0;
        let mut id = self.next_id;
        for item in &items {
            match item {
                Outgoing::Message(msg) if close.is_none() => {
                    len += sse::encoded_len(id, msg);
                    id += 1;
                }
                Outgoing::Message(_) => {}
                Outgoing::Close(end) => {
                    close.get_or_insert_with(|| CloseFrame::from(end.clone()));
                }
            }
        }
        let mut buf = BytesMut::with_capacity(len);
        self.ends.clear();
        for item in items.drain(..) {
            let Outgoing::Message(msg) = item else {
                break; // a close: what follows it is dropped
            };
            self.counters.sent(msg.len());
            sse::encode(&mut buf, self.next_id, &msg);
            self.next_id += 1;
            self.ends.push(buf.len());
        }
        self.scratch = items;
        self.count_full();
        let mut st = self.shared.lock();
        st.replay.push_batch(buf.freeze(), &self.ends);
        let waker = st.stream.waker.take();
        drop(st);
        if let Some(w) = waker {
            w.wake();
        }
        close
    }

    /// After the bridge finished: everything still queued, and a close it queued.
    fn drain(&mut self) -> Option<CloseFrame> {
        loop {
            if !self.rx.has_queued() {
                return None;
            }
            if let Some(frame) = self.batch(None) {
                return Some(frame);
            }
        }
    }

    /// A bridge's `try_send` on a full outbox is a limit trip, as on WebSocket.
    fn count_full(&self) {
        let n = self.rx.take_full();
        if n > 0 {
            record_trips(trip::OUTGOING_QUEUE, n);
        }
    }
}
