//! One client's view of a STOMP broker.
//!
//! Auto-ack topic subscriptions join the service's shared connection (service credentials).
//! Everything else — SENDs, queue subscriptions, acknowledgements, and with pass-through
//! credentials every subscription — uses a connection of the session's own, opened on first
//! need (at CONNECT with pass-through credentials, so a bad login is refused at once).
//!
//! Flow control: subscriptions with acks go upstream with a prefetch window no larger than
//! the subscription's inbox queue, so the broker never sends more than the queue can hold.
//! Auto-ack queue subscriptions are acknowledged upstream by the gateway once the client
//! has the messages (a cumulative `client` ACK), so a slow client holds the broker back
//! instead of losing messages, as with the embedded broker.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use protocol_stomp::{Command, Frame, Headers, Version};

use super::conn::{Conn, Handler, Options};

use super::{message_from, Core, Flavor};
use crate::backend::{AckMode, BackendError, BackendErrorKind, BackendSession, Subscription};
use crate::destination::Destination;
use crate::inbox::{AckToken, Delivery, Inbox, SubKey};
use crate::message::SharedMessage;

/// Frames a session's own connection may hold for the socket (one request at a time is
/// in flight; this is slack).
const QUEUE: usize = 16;

/// Headers of a client SEND that are not forwarded as they are.
const NOT_FORWARDED: &[&str] = &["destination", "receipt", "transaction", "content-length"];

fn during(e: BackendError, what: &str) -> BackendError {
    match e.kind {
        BackendErrorKind::Refused => {
            BackendError::refused(format!("the broker refused {what}: {}", e.message))
        }
        BackendErrorKind::Unavailable => {
            BackendError::unavailable(format!("{what}: {}", e.message))
        }
    }
}

enum Route {
    /// On the shared connection, by upstream destination.
    Shared(String),
    Own,
}

pub struct StompBrokerSession {
    core: Arc<Core>,
    session: u64,
    inbox: Arc<Inbox>,
    /// The client's login, for pass-through credentials.
    login: Option<(String, String)>,
    conn: Option<Conn>,
    own: Arc<Own>,
    routes: HashMap<SubKey, Route>,
}

/// The part of the session its own connection's task sees.
struct Own {
    inbox: Arc<Inbox>,
    core: Arc<Core>,
    state: Mutex<OwnState>,
}

#[derive(Default)]
struct OwnState {
    version: Option<Version>,
    subs: HashMap<SubKey, OwnSub>,
    unacked: HashMap<u64, Unacked>,
    next_token: u64,
    /// Set once the own connection failed with subscriptions on it: every later operation
    /// reports it.
    failure: Option<BackendError>,
    /// The own connection ended with nothing on it: the next use opens a new one.
    reopen: bool,
    /// Every live subscription (own or shared), newest last: where a failure's ERROR goes.
    live: Vec<(SubKey, Version)>,
    /// Cumulative ACKs waiting for the socket, the newest per subscription.
    control: HashMap<SubKey, Frame>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The broker forgets a message once sent (auto-ack topics).
    Auto,
    /// The client acknowledges each message (client and client-individual).
    Client,
    /// Auto-ack queues: the gateway acknowledges what the client was handed.
    Gateway,
}

struct OwnSub {
    upstream_id: String,
    mode: Mode,
    /// `Gateway` mode: delivered and not yet acknowledged upstream, oldest first.
    in_flight: VecDeque<(Arc<SharedMessage>, String)>,
}

struct Unacked {
    key: SubKey,
    ack_id: String,
    message_id: String,
    upstream_id: String,
}

fn ack_frame(
    command: Command,
    version: Version,
    ack_id: &str,
    message_id: &str,
    sub: &str,
) -> Frame {
    if version == Version::V1_2 {
        Frame::new(command).header("id", ack_id)
    } else {
        Frame::new(command)
            .header("message-id", message_id)
            .header("subscription", sub)
    }
}

impl Own {
    fn lock(&self) -> std::sync::MutexGuard<'_, OwnState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// For `Gateway` subscriptions: a cumulative ACK up to the newest message the session
    /// has handed to its client. Delivered messages are a prefix of `in_flight` (the inbox
    /// is first-in first-out) and only ours still holds them once the session let go.
    fn collect_acks(&self, st: &mut OwnState, key: SubKey) {
        let version = st.version.unwrap_or(Version::V1_2);
        let Some(sub) = st.subs.get_mut(&key).filter(|s| s.mode == Mode::Gateway) else {
            return;
        };
        let newest = crate::backend::handed_over::pop_handed_over(&mut sub.in_flight, |(m, _)| m);
        if let Some((msg, ack_id)) = newest {
            let frame = ack_frame(
                Command::Ack,
                version,
                &ack_id,
                &msg.message_id,
                &sub.upstream_id,
            );
            st.control.insert(key, frame);
        }
    }
}

impl Handler for Own {
    fn message(&self, _generation: u64, frame: Frame) {
        let Some(key) = frame
            .headers
            .get("subscription")
            .and_then(|s| s.strip_prefix("s-"))
            .and_then(|k| k.parse::<SubKey>().ok())
        else {
            return;
        };
        let mut st = self.lock();
        let version = st.version.unwrap_or(Version::V1_2);
        let Some(sub) = st.subs.get_mut(&key) else {
            // Unsubscribed meanwhile; unacknowledged, so the broker sends it again elsewhere.
            return;
        };
        self.core.metrics.messages_in.increment(1);
        let message = message_from(&frame, "");
        let redelivered = frame.headers.get("redelivered") == Some("true");
        let ack_id = match version {
            Version::V1_2 => frame.headers.get("ack"),
            _ => frame.headers.get("message-id"),
        }
        .unwrap_or("")
        .to_string();
        let mut ack = None;
        match sub.mode {
            Mode::Auto => {}
            Mode::Gateway => sub.in_flight.push_back((message.clone(), ack_id)),
            Mode::Client => {
                let upstream_id = sub.upstream_id.clone();
                st.next_token += 1;
                let token = st.next_token;
                st.unacked.insert(
                    token,
                    Unacked {
                        key,
                        ack_id,
                        message_id: message.message_id.clone(),
                        upstream_id,
                    },
                );
                ack = Some(AckToken(token));
            }
        }
        self.inbox.deliver(
            key,
            Delivery {
                message,
                ack,
                redelivered,
                frame: None,
            },
        );
    }

    fn take_control(&self, out: &mut Vec<Frame>) {
        let mut st = self.lock();
        if !st.control.is_empty() {
            out.extend(st.control.drain().map(|(_, f)| f));
        }
    }

    fn closed(&self, reason: Option<&BackendError>) {
        let Some(reason) = reason else { return };
        let target = {
            let mut st = self.lock();
            if st.failure.is_some() {
                return;
            }
            if st.subs.is_empty() {
                // Only SENDs used it: nothing was lost.
                st.reopen = true;
                return;
            }
            st.failure = Some(reason.clone());
            st.live.last().copied()
        };
        // The session ends with an ERROR naming the reason (as for RabbitMQ's outages).
        // Its queue subscriptions and unacknowledged messages were the lost broker's: with
        // a failover list the client is told that the broker changes under them.
        if target.is_some() {
            tracing::info!("STOMP session lost its broker connection: {reason}");
            let message = if self.core.rotation.brokers().is_failover() {
                format!(
                    "{}; the gateway fails over to the next broker of its list, where this \
                     session's queue subscriptions do not exist: connect and subscribe again",
                    reason.message
                )
            } else {
                reason.message.clone()
            };
            self.inbox.fail(message);
        }
    }
}

impl StompBrokerSession {
    pub(super) fn new(
        core: Arc<Core>,
        session: u64,
        inbox: Arc<Inbox>,
        login: Option<(String, String)>,
    ) -> Self {
        let own = Arc::new(Own {
            inbox: inbox.clone(),
            core: core.clone(),
            state: Mutex::new(OwnState::default()),
        });
        StompBrokerSession {
            core,
            session,
            inbox,
            login,
            conn: None,
            own,
            routes: HashMap::new(),
        }
    }

    fn check(&self) -> Result<(), BackendError> {
        match &self.own.lock().failure {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    /// The session's own connection, opened on first use.
    pub(super) async fn conn(&mut self) -> Result<Conn, BackendError> {
        self.check()?;
        if let Some(c) = &self.conn {
            if !std::mem::take(&mut self.own.lock().reopen) {
                return Ok(c.clone());
            }
        }
        let login = if self.core.pass_through {
            self.login.as_ref()
        } else {
            self.core.rotation.current().login.as_ref()
        };
        let opts = || Options {
            max_frame_size: self.core.settings.max_frame_size,
            queue: QUEUE,
            gauge: self.core.metrics.connections.clone(),
        };
        let rotation = &self.core.rotation;
        let conn = if self.core.shared.is_some() {
            // Where the shared connection is, so the session's SENDs reach the same
            // broker as the service's topic subscriptions.
            Conn::connect(rotation.current(), login, self.own.clone(), opts()).await?
        } else {
            // Pass-through: the first broker of the list that answers, from the one in use.
            let mut last = None;
            let mut found = None;
            for i in rotation.round(None, u64::from(self.session as u32)) {
                let member = &rotation.brokers().members[i];
                match Conn::connect(member, login, self.own.clone(), opts()).await {
                    Ok(c) => {
                        rotation.settle(i);
                        found = Some(c);
                        break;
                    }
                    // A refused login is the client's answer, whichever broker gave it.
                    Err(e) if e.kind != crate::backend::BackendErrorKind::Unavailable => {
                        return Err(e)
                    }
                    Err(e) => last = Some(e),
                }
            }
            match found {
                Some(c) => c,
                None => return Err(last.expect("a list has at least one broker")),
            }
        };
        self.own.lock().version = Some(conn.version());
        self.conn = Some(conn.clone());
        Ok(conn)
    }

    fn live(&self, key: SubKey, version: Version) {
        self.own.lock().live.push((key, version));
    }

    async fn subscribe_own(&mut self, sub: &Subscription) -> Result<(), BackendError> {
        let conn = self.conn().await?;
        let dest = self
            .core
            .upstream(&sub.destination, Flavor::of(conn.server()), self.session)?;
        let is_topic = matches!(sub.destination, Destination::Topic(_));
        let mode = match sub.ack {
            AckMode::Auto if is_topic => Mode::Auto,
            AckMode::Auto => Mode::Gateway,
            AckMode::Client | AckMode::ClientIndividual => Mode::Client,
        };
        let upstream_id = format!("s-{}", sub.key);
        let mut frame = Frame::new(Command::Subscribe)
            .header("id", upstream_id.as_str())
            .header("destination", dest.as_str())
            .header(
                "ack",
                match mode {
                    Mode::Auto => "auto",
                    Mode::Gateway => "client",
                    Mode::Client => "client-individual",
                },
            );
        if let Some(offset) = &sub.stream_offset {
            // RabbitMQ's STOMP plugin reads stream queues from here.
            frame = frame.header("x-stream-offset", offset.header_value());
        }
        if mode != Mode::Auto {
            // Never more unacknowledged messages than the subscription's queue holds.
            let window = match sub.prefetch {
                0 => {
                    self.core
                        .settings
                        .policy_for(&sub.destination.to_string())
                        .0
                }
                n => n,
            }
            .to_string();
            frame = frame
                .header("activemq.prefetchSize", window.as_str())
                .header("prefetch-count", window);
        }
        // Registered first: the broker may deliver before its RECEIPT arrives.
        self.own.lock().subs.insert(
            sub.key,
            OwnSub {
                upstream_id,
                mode,
                in_flight: VecDeque::new(),
            },
        );
        if let Err(e) = conn.request(frame).await {
            self.own.lock().subs.remove(&sub.key);
            return Err(e);
        }
        Ok(())
    }

    /// Forget an own subscription; ACK what its client already has.
    fn drop_own(&self, key: SubKey) -> Option<OwnSub> {
        let mut st = self.own.lock();
        self.own.collect_acks(&mut st, key);
        st.unacked.retain(|_, u| u.key != key);
        st.subs.remove(&key)
    }
}

#[async_trait::async_trait]
impl BackendSession for StompBrokerSession {
    async fn publish(
        &mut self,
        destination: &Destination,
        headers: &Headers,
        body: Bytes,
    ) -> Result<(), BackendError> {
        let what = format!("SEND to {destination}");
        let conn = self.conn().await.map_err(|e| during(e, &what))?;
        let dest = self
            .core
            .upstream(destination, Flavor::of(conn.server()), self.session)?;
        let mut frame = Frame::new(Command::Send).header("destination", dest);
        for (k, v) in headers.iter() {
            if !NOT_FORWARDED.contains(&k) {
                frame.headers.push(k, v);
            }
        }
        conn.request(frame.with_body(body))
            .await
            .map_err(|e| during(e, &what))?;
        self.core.metrics.messages_out.increment(1);
        Ok(())
    }

    async fn subscribe(&mut self, sub: &Subscription) -> Result<(), BackendError> {
        self.check()?;
        let what = format!("SUBSCRIBE to {}", sub.destination);
        if let (Some(shared), AckMode::Auto, Destination::Topic(key)) =
            (&self.core.shared, sub.ack, &sub.destination)
        {
            let dest = shared
                .join(key, sub.local(self.session, &self.inbox))
                .await
                .map_err(|e| during(e, &what))?;
            self.routes.insert(sub.key, Route::Shared(dest));
        } else {
            self.subscribe_own(sub)
                .await
                .map_err(|e| during(e, &what))?;
            self.routes.insert(sub.key, Route::Own);
        }
        self.live(sub.key, sub.version);
        Ok(())
    }

    async fn unsubscribe(&mut self, key: SubKey) -> Result<(), BackendError> {
        self.own.lock().live.retain(|(k, _)| *k != key);
        match self.routes.remove(&key) {
            None => {
                self.inbox.remove(key);
                Ok(())
            }
            Some(Route::Shared(dest)) => {
                if let Some(shared) = &self.core.shared {
                    shared.leave(&dest, self.session, key);
                }
                self.inbox.remove(key);
                Ok(())
            }
            Some(Route::Own) => {
                let sub = self.drop_own(key);
                // Whatever the client never got goes back to the broker unacknowledged.
                drop(self.inbox.remove(key));
                let (Some(sub), Some(conn)) = (sub, self.conn.clone()) else {
                    return Ok(());
                };
                self.check()?;
                conn.request(Frame::new(Command::Unsubscribe).header("id", sub.upstream_id))
                    .await
                    .map_err(|e| during(e, "UNSUBSCRIBE"))
            }
        }
    }

    async fn ack(&mut self, token: AckToken) -> Result<(), BackendError> {
        self.settle(token, Command::Ack).await
    }

    async fn nack(&mut self, token: AckToken) -> Result<(), BackendError> {
        self.settle(token, Command::Nack).await
    }

    fn drained(&mut self, key: SubKey) {
        {
            let mut st = self.own.lock();
            self.own.collect_acks(&mut st, key);
            if st.control.is_empty() {
                return;
            }
        }
        if let Some(conn) = &self.conn {
            conn.wake();
        }
    }

    fn temp_queue_address(&self, name: &str) -> String {
        format!("/queue/{}", self.core.temp_queue(self.session, name))
    }

    async fn close(&mut self) {
        let keys: Vec<SubKey> = self.routes.keys().copied().collect();
        for key in keys {
            match self.routes.remove(&key) {
                Some(Route::Shared(dest)) => {
                    if let Some(shared) = &self.core.shared {
                        shared.leave(&dest, self.session, key);
                    }
                }
                Some(Route::Own) => {
                    self.drop_own(key);
                }
                None => {}
            }
            self.inbox.remove(key);
        }
        // Dropping the last handle writes the pending ACKs, then DISCONNECT; the broker
        // redelivers whatever stayed unacknowledged.
        self.conn = None;
    }
}

impl StompBrokerSession {
    async fn settle(&mut self, token: AckToken, command: Command) -> Result<(), BackendError> {
        self.check()?;
        let (frame, what) = {
            let mut st = self.own.lock();
            let version = st.version.unwrap_or(Version::V1_2);
            let Some(u) = st.unacked.remove(&token.0) else {
                // Its subscription ended: the broker already took the message back.
                return Ok(());
            };
            (
                ack_frame(command, version, &u.ack_id, &u.message_id, &u.upstream_id),
                format!("{} of message {}", command.as_str(), u.message_id),
            )
        };
        let Some(conn) = self.conn.clone() else {
            return Ok(());
        };
        conn.request(frame).await.map_err(|e| during(e, &what))
    }
}
