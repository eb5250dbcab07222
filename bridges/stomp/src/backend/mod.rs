//! The broker behind the bridge, as the STOMP session sees it, and its three
//! implementations side by side: the embedded in-process broker, RabbitMQ (over AMQP 0-9-1,
//! through lapin) and any STOMP broker (ActiveMQ, Artemis, RabbitMQ's STOMP plugin).
//! `fanout` is what they share: the local fan-out of one upstream subscription.

pub(crate) mod embedded;
pub mod fanout;
pub(crate) mod handed_over;
pub(crate) mod names;
pub(crate) mod probe;
pub(crate) mod rabbitmq;
pub(crate) mod stomp_broker;
pub(crate) mod upstream;
pub(crate) mod uri;

use std::fmt;
use std::sync::Arc;

use bridge_api::Background;
use bytes::Bytes;
use protocol_stomp::Headers;

use crate::destination::Destination;
use crate::inbox::{AckToken, Inbox, SubKey};
use fanout::{DirectSub, LocalSub, Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Auto,
    /// Cumulative: an ACK covers every earlier message of the subscription.
    Client,
    ClientIndividual,
}

impl AckMode {
    pub fn parse(s: Option<&str>) -> Result<AckMode, String> {
        match s.unwrap_or("auto") {
            "auto" => Ok(AckMode::Auto),
            "client" => Ok(AckMode::Client),
            "client-individual" => Ok(AckMode::ClientIndividual),
            other => Err(format!(
                "unknown ack mode {other:?}: use auto, client or client-individual"
            )),
        }
    }
}

/// One SUBSCRIBE, as the backend needs it.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub key: SubKey,
    pub destination: Destination,
    pub ack: AckMode,
    /// Most unacknowledged messages in flight (client ack modes); 0 = no limit.
    pub prefetch: usize,
    /// The session's STOMP version, so fan-out can encode MESSAGE frames once for all
    /// subscribers that share an id and version.
    pub version: protocol_stomp::Version,
    /// For `ack:auto` topic subscriptions: the lane of the client's outbox that a topic
    /// fan-out writes to directly (see `fanout`).
    pub direct: Option<Arc<DirectSub>>,
    /// For a stream's own subscription: the stream its messages feed.
    pub feed: Option<Arc<crate::stream::Stream>>,
    /// Where to start reading a RabbitMQ stream queue (`x-stream-offset`).
    pub stream_offset: Option<StreamOffset>,
}

/// The SUBSCRIBE header `x-stream-offset`, as RabbitMQ's STOMP plugin takes it: `first`,
/// `last`, `next`, `offset=N` (or just `N`) or `timestamp=SECONDS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamOffset {
    First,
    Last,
    Next,
    Offset(i64),
    Timestamp(u64),
}

impl StreamOffset {
    pub fn parse(raw: &str) -> Result<StreamOffset, String> {
        let bad = || {
            format!("x-stream-offset {raw:?}: use first, last, next, offset=N or timestamp=SECONDS")
        };
        Ok(match raw {
            "first" => StreamOffset::First,
            "last" => StreamOffset::Last,
            "next" => StreamOffset::Next,
            _ => {
                if let Some(t) = raw.strip_prefix("timestamp=") {
                    StreamOffset::Timestamp(t.parse().map_err(|_| bad())?)
                } else {
                    let n = raw.strip_prefix("offset=").unwrap_or(raw);
                    let n: i64 = n.parse().map_err(|_| bad())?;
                    if n < 0 {
                        return Err(bad());
                    }
                    StreamOffset::Offset(n)
                }
            }
        })
    }

    /// The header value again, for a STOMP broker that understands it.
    pub fn header_value(&self) -> String {
        match self {
            StreamOffset::First => "first".into(),
            StreamOffset::Last => "last".into(),
            StreamOffset::Next => "next".into(),
            StreamOffset::Offset(n) => format!("offset={n}"),
            StreamOffset::Timestamp(t) => format!("timestamp={t}"),
        }
    }
}

impl Subscription {
    /// Where a topic fan-out delivers this subscription's messages: its lane when it has
    /// one, else the session's inbox.
    pub fn fan_out_target(&self, inbox: &Arc<Inbox>) -> Target {
        if let Some(stream) = &self.feed {
            return Target::Stream(stream.clone());
        }
        match &self.direct {
            Some(d) => Target::Direct(d.clone()),
            None => Target::Session {
                inbox: inbox.clone(),
                key: self.key,
            },
        }
    }

    /// A local subscriber of a topic fan-out for session `session`.
    pub fn local(&self, session: u64, inbox: &Arc<Inbox>) -> LocalSub {
        LocalSub {
            session,
            key: self.key,
            target: self.fan_out_target(inbox),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendErrorKind {
    /// The broker refused what the client asked (full queue, no permission, bad login).
    Refused,
    /// The broker is unreachable or failed.
    Unavailable,
}

#[derive(Debug, Clone)]
pub struct BackendError {
    pub kind: BackendErrorKind,
    pub message: String,
}

impl BackendError {
    pub fn refused(message: impl Into<String>) -> Self {
        BackendError {
            kind: BackendErrorKind::Refused,
            message: message.into(),
        }
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        BackendError {
            kind: BackendErrorKind::Unavailable,
            message: message.into(),
        }
    }
}

impl From<rabbitmq_pool::Error> for BackendError {
    fn from(e: rabbitmq_pool::Error) -> Self {
        let kind = match e.kind {
            rabbitmq_pool::ErrorKind::Refused => BackendErrorKind::Refused,
            rabbitmq_pool::ErrorKind::Unavailable => BackendErrorKind::Unavailable,
        };
        BackendError {
            kind,
            message: e.message,
        }
    }
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

pub struct OpenRequest {
    pub session_id: u64,
    /// Where the backend puts this session's deliveries.
    pub inbox: Arc<Inbox>,
    /// The client's STOMP login and passcode, for pass-through credentials.
    pub login: Option<(String, String)>,
}

#[async_trait::async_trait]
pub trait Backend: Send + Sync + 'static {
    fn is_ready(&self) -> bool {
        true
    }

    /// Start connecting, probing and whatever else runs beside the sessions, on `bg`.
    fn start(&self, _bg: &Background) {}

    async fn open(&self, req: OpenRequest) -> Result<Box<dyn BackendSession>, BackendError>;
}

/// A client's view of the broker. Deliveries arrive through the session's inbox.
#[async_trait::async_trait]
pub trait BackendSession: Send {
    /// Resolves once the broker has accepted the message (so a receipt may be sent).
    async fn publish(
        &mut self,
        destination: &Destination,
        headers: &Headers,
        body: Bytes,
    ) -> Result<(), BackendError>;

    async fn subscribe(&mut self, sub: &Subscription) -> Result<(), BackendError>;

    async fn unsubscribe(&mut self, key: SubKey) -> Result<(), BackendError>;

    async fn ack(&mut self, token: AckToken) -> Result<(), BackendError>;

    /// Return the message to its queue, to be redelivered (flagged as such).
    async fn nack(&mut self, token: AckToken) -> Result<(), BackendError>;

    /// The session moved deliveries of `key` to its client: there is room for more.
    fn drained(&mut self, key: SubKey);

    /// Where replies to `/temp-queue/NAME` should be sent (the rewritten `reply-to`).
    fn temp_queue_address(&self, name: &str) -> String;

    /// The session ended: unacknowledged queue messages go back to their queues.
    async fn close(&mut self);
}
