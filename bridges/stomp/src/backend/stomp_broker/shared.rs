//! The shared connection: one upstream SUBSCRIBE per topic for every auto-ack subscriber
//! of the service, fanned out locally by `fanout::Locals` (each MESSAGE frame encoded once
//! per subscription id and version). It reconnects with backoff and subscribes again to
//! every topic that still has subscribers; while it is down the service is not ready.
//!
//! Ordering: SUBSCRIBE and UNSUBSCRIBE frames are queued while the topic table is locked,
//! so the broker sees them in the order the table changed.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bridge_api::{Background, CancellationToken};
use protocol_stomp::{Command, Frame};

use super::conn::{Conn, Handler, Options, Receipt};
use super::failover::Rotation;
use super::metrics::Metrics;
use super::{message_from, Flavor};
use crate::backend::fanout::{FanOut, LocalSub};
use crate::backend::upstream::{settled, Upstream};
use crate::backend::BackendError;
use crate::inbox::SubKey;

/// Frames the shared connection may hold for the socket (SUBSCRIBE/UNSUBSCRIBE only: a
/// resubscription after a reconnect needs one per topic).
const QUEUE: usize = 8192;
/// A shared connection lost sooner than this after it opened does not reset the backoff.
const SHORT_LIVED: Duration = Duration::from_secs(5);

pub struct SharedConn {
    /// Which broker of the failover list the connection is on (shared with the sessions).
    rotation: Arc<Rotation>,
    max_frame_size: usize,
    metrics: Arc<Metrics>,
    state: Mutex<State>,
    up: AtomicBool,
    ids: AtomicU64,
    stop: CancellationToken,
}

struct State {
    conn: Option<Conn>,
    flavor: Flavor,
    /// Why the broker cannot be reached, while it cannot.
    outage: String,
    /// By upstream subscription id (`t-N`).
    topics: HashMap<String, Topic>,
    /// Upstream destination → upstream subscription id.
    by_dest: HashMap<String, String>,
}

struct Topic {
    dest: String,
    local: Upstream,
    /// The connection the topic's SUBSCRIBE was last queued on.
    generation: u64,
}

fn subscribe_frame(id: &str, dest: &str) -> Frame {
    Frame::new(Command::Subscribe)
        .header("id", id)
        .header("destination", dest)
        .header("ack", "auto")
}

fn unsubscribe_frame(id: &str) -> Frame {
    Frame::new(Command::Unsubscribe).header("id", id)
}

impl SharedConn {
    /// Not connected before [`start`](Self::start).
    pub fn new(rotation: Arc<Rotation>, max_frame_size: usize, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(SharedConn {
            rotation,
            max_frame_size,
            metrics,
            state: Mutex::new(State {
                conn: None,
                flavor: Flavor::Other,
                outage: "the gateway has not reached the STOMP broker yet".into(),
                topics: HashMap::new(),
                by_dest: HashMap::new(),
            }),
            up: AtomicBool::new(false),
            ids: AtomicU64::new(1),
            stop: CancellationToken::new(),
        })
    }

    /// Connect (and reconnect) in the background on `bg` until its shutdown, which closes
    /// the connection with a DISCONNECT.
    pub fn start(self: &Arc<Self>, bg: &Background) {
        bg.spawn(supervise(self.clone()));
        let shared = Arc::downgrade(self);
        let shutdown = bg.shutdown().clone();
        bg.spawn(async move {
            shutdown.cancelled().await;
            if let Some(shared) = shared.upgrade() {
                shared.stop();
            }
        });
    }

    pub fn stop(&self) {
        self.stop.cancel();
        if let Some(conn) = self.lock().conn.take() {
            conn.close();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Why the broker cannot be reached (for ERROR frames while it cannot).
    pub fn outage(&self) -> BackendError {
        BackendError::unavailable(format!(
            "{}; the gateway keeps retrying, connect again later",
            self.lock().outage
        ))
    }

    fn set_gauge(&self, st: &State) {
        self.metrics
            .shared_subscriptions
            .set(st.topics.len() as f64);
    }

    /// Add a subscriber to topic `key` (as in `/topic/KEY`), subscribing upstream if it is
    /// the first. Returns the upstream destination, which [`leave`](Self::leave) takes.
    pub async fn join(&self, key: &str, sub: LocalSub) -> Result<String, BackendError> {
        let (dest, phase, created) = {
            let mut st = self.lock();
            let Some(conn) = st.conn.clone() else {
                drop(st);
                return Err(self.outage());
            };
            let dest = st.flavor.topic(key)?;
            if let Some(id) = st.by_dest.get(&dest).cloned() {
                let topic = st.topics.get_mut(&id).expect("by_dest and topics agree");
                (dest, topic.local.join(sub), None)
            } else {
                let id = format!("t-{}", self.ids.fetch_add(1, Ordering::Relaxed));
                let receipt = conn.try_request(subscribe_frame(&id, &dest))?;
                let local = Upstream::new(self.metrics.local_subscribers.clone());
                let rx = local.join(sub);
                st.topics.insert(
                    id.clone(),
                    Topic {
                        dest: dest.clone(),
                        local,
                        generation: conn.generation(),
                    },
                );
                st.by_dest.insert(dest.clone(), id.clone());
                self.set_gauge(&st);
                (dest, rx, Some((id, conn.generation(), receipt)))
            }
        };
        if let Some((id, generation, receipt)) = created {
            let result = receipt.wait().await;
            let mut st = self.lock();
            let Some(topic) = st.topics.get(&id) else {
                // Everyone left meanwhile (and `leave` unsubscribed).
                return result.map(|_| dest);
            };
            return match result {
                Ok(()) => {
                    topic.local.go_live();
                    Ok(dest)
                }
                // Resubscribed on a newer connection meanwhile: that SUBSCRIBE stands for it.
                Err(_) if topic.generation != generation => {
                    topic.local.go_live();
                    Ok(dest)
                }
                Err(e) => {
                    if let Some(topic) = st.topics.remove(&id) {
                        st.by_dest.remove(&topic.dest);
                        topic.local.fail(e.clone());
                    }
                    self.set_gauge(&st);
                    Err(e)
                }
            };
        }
        settled(phase).await.map(|()| dest)
    }

    /// Remove a subscriber; the last one out unsubscribes upstream.
    pub fn leave(&self, dest: &str, session: u64, key: SubKey) {
        let mut st = self.lock();
        let Some(id) = st.by_dest.get(dest).cloned() else {
            return;
        };
        let topic = st.topics.get_mut(&id).expect("by_dest and topics agree");
        let Some(left) = topic.local.leave(session, key) else {
            return;
        };
        if left > 0 {
            return;
        }
        let generation = topic.generation;
        st.topics.remove(&id);
        st.by_dest.remove(dest);
        self.set_gauge(&st);
        if let Some(conn) = st.conn.as_ref().filter(|c| c.generation() == generation) {
            // Nobody waits for this receipt: an ERROR for it (the broker forgot the
            // subscription) is of no consequence.
            let _ = conn.try_request(unsubscribe_frame(&id));
        }
    }

    /// A connection is up: install it and queue a SUBSCRIBE for every topic.
    fn install(&self, conn: Conn) -> Vec<(String, Receipt)> {
        let mut st = self.lock();
        st.flavor = Flavor::of(conn.server());
        let generation = conn.generation();
        let mut receipts = Vec::new();
        let State { topics, .. } = &mut *st;
        for (id, topic) in topics.iter_mut() {
            topic.generation = generation;
            match conn.try_request(subscribe_frame(id, &topic.dest)) {
                Ok(r) => receipts.push((topic.dest.clone(), r)),
                Err(e) => tracing::warn!("resubscribing to {}: {e}", topic.dest),
            }
        }
        st.conn = Some(conn);
        self.up.store(true, Ordering::Relaxed);
        receipts
    }

    fn lost(&self, generation: u64, why: String) {
        let mut st = self.lock();
        if st
            .conn
            .as_ref()
            .is_some_and(|c| c.generation() == generation)
        {
            st.conn = None;
        }
        st.outage = why;
        self.up.store(false, Ordering::Relaxed);
        for topic in st.topics.values() {
            topic.local.locals().history_lost();
        }
    }

    fn fan_out(&self, generation: u64, frame: Frame) {
        let st = self.lock();
        let Some(id) = frame.headers.get("subscription") else {
            return;
        };
        let Some(topic) = st.topics.get(id) else {
            return;
        };
        if topic.generation != generation {
            return;
        }
        self.metrics.messages_in.increment(1);
        let msg = message_from(&frame, &topic.dest);
        let reached = topic
            .local
            .locals()
            .fan_out(&msg, &mut FanOut::new(&self.metrics.stomp));
        self.metrics.stomp.published("topic", reached);
    }
}

/// Deliveries on the shared connection go to the topic table (held weakly: the table owns
/// the connection, not the other way round).
struct Fanout(Weak<SharedConn>);

impl Handler for Fanout {
    fn message(&self, generation: u64, frame: Frame) {
        if let Some(shared) = self.0.upgrade() {
            shared.fan_out(generation, frame);
        }
    }
}

/// Connect to the first broker of the list that answers, resubscribe, wait for the end;
/// on a loss try the next broker at once, and back off only after a whole round failed;
/// until stopped.
async fn supervise(shared: Arc<SharedConn>) {
    let stop = shared.stop.clone();
    let rotation = shared.rotation.clone();
    let brokers = rotation.brokers();
    let members = brokers.members.len();
    let mut backoff = brokers.initial_delay;
    let mut failures = 0u32;
    let mut lost: Option<usize> = None;
    // The broker the last connection was on, to tell a failover from a reconnection.
    let mut last_on: Option<usize> = None;
    let handler: Arc<dyn Handler> = Arc::new(Fanout(Arc::downgrade(&shared)));
    loop {
        let mut connected = None;
        let mut last_error = None;
        for i in rotation.round(lost.take(), seed(failures)) {
            let member = &brokers.members[i];
            let attempt = Conn::connect(
                member,
                member.login.as_ref(),
                handler.clone(),
                Options {
                    max_frame_size: shared.max_frame_size,
                    queue: QUEUE,
                    gauge: shared.metrics.connections.clone(),
                },
            );
            let result = tokio::select! {
                _ = stop.cancelled() => return,
                r = attempt => r,
            };
            match result {
                Ok(conn) => {
                    connected = Some((i, conn));
                    break;
                }
                Err(e) => {
                    if members > 1 {
                        tracing::debug!(broker = %member.addr(), "STOMP broker {} of {members} did not answer: {e}", i + 1);
                    }
                    last_error = Some(e);
                }
            }
        }
        let Some((i, conn)) = connected else {
            let e = last_error.expect("a list has at least one broker");
            if failures == 0 {
                tracing::warn!(broker = %rotation.current().addr(), "cannot connect to the STOMP broker{}: {e}; retrying with backoff", if members > 1 { "s of the failover list" } else { "" });
            } else {
                tracing::debug!("STOMP broker still unreachable: {e}");
            }
            failures = failures.saturating_add(1);
            shared.lost(0, e.message);
            // Jitter, so many gateways do not reconnect in step.
            let jitter = Duration::from_millis(
                u64::from(std::process::id() % 97) + u64::from(failures % 7) * 13,
            );
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff + jitter) => {}
            }
            backoff = (backoff * 2).min(brokers.max_delay);
            continue;
        };
        rotation.settle(i);
        let addr = brokers.members[i].addr();
        match last_on {
            Some(prev) if prev != i => {
                shared.metrics.failovers.increment(1);
                tracing::warn!(broker = %addr, server = conn.server(), "failed over to STOMP broker {} of {members} (from {}); subscribing again to every topic", i + 1, brokers.members[prev].addr());
            }
            _ if failures > 0 => {
                tracing::info!(broker = %addr, "reconnected to the STOMP broker after {failures} failed attempts");
            }
            _ => {
                tracing::info!(broker = %addr, server = conn.server(), "connected to the STOMP broker")
            }
        }
        last_on = Some(i);
        failures = 0;
        let opened = std::time::Instant::now();
        let generation = conn.generation();
        let closed = conn.closed();
        for (dest, receipt) in shared.install(conn.clone()) {
            if let Err(e) = receipt.wait().await {
                tracing::warn!(broker = %addr, "resubscribing to {dest} failed: {e}");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => {
                conn.close();
                return;
            }
            _ = closed => {}
        }
        let why = conn.failure();
        drop(conn);
        shared.metrics.reconnects.increment(1);
        shared.lost(generation, why.message.clone());
        // A connection that broke soon after it opened (a broker that accepts and drops)
        // keeps the backoff growing and waits it out, so such brokers are not retried in
        // a hot loop; one that lived earns a fresh start.
        let short_lived = opened.elapsed() < SHORT_LIVED;
        backoff = if short_lived {
            (backoff * 2).min(brokers.max_delay)
        } else {
            brokers.initial_delay
        };
        if members > 1 {
            tracing::warn!(broker = %addr, "lost the shared STOMP broker connection: {why}; trying the next broker of the failover list");
            lost = Some(i);
            if !short_lived {
                // The next broker of the list, at once.
                continue;
            }
        } else {
            tracing::warn!(broker = %addr, "lost the shared STOMP broker connection: {why}; reconnecting");
        }
        let jitter = Duration::from_millis(u64::from(std::process::id() % 97));
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(backoff + jitter) => {}
        }
    }
}

/// Differs between gateways and rounds, for `randomize`.
fn seed(round: u32) -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (u64::from(std::process::id()) << 32 | u64::from(nanos)) ^ u64::from(round).rotate_left(17)
}
