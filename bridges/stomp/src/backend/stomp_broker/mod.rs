//! A STOMP broker behind the bridge (ActiveMQ Classic, or any STOMP 1.2 broker over TCP),
//! selected by `backend = "stomp://user:pass@host:port"`.
//!
//! - `conn.rs`: one broker connection (our codec, receipts, heart-beats).
//! - `shared.rs`: the service's shared connection; one upstream SUBSCRIBE per topic for all
//!   auto-ack subscribers, fanned out locally; reconnects with backoff.
//! - `session.rs`: a client's own connection for SENDs (each awaits the broker's RECEIPT),
//!   queue subscriptions and acknowledgements (forwarded with the broker's ack ids).
//!
//! Destinations go to the broker as they are (`/topic/K`, `/queue/Q`); ActiveMQ's "any
//! number of words" wildcard is `>`, so a trailing `#` becomes `>` there. `/temp-queue/N`
//! becomes an ordinary queue private to the session.

mod conn;
mod failover;
mod metrics;
mod session;
mod shared;
mod uri;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bridge_api::{Background, CancellationToken};
use protocol_stomp::Frame;

use crate::backend::names::BrokerNames;
use crate::backend::{Backend, BackendError, BackendSession, OpenRequest};
use crate::destination::Destination;
use crate::message::SharedMessage;
use crate::settings::{Credentials, StompSettings};
use failover::Rotation;
pub(crate) use failover::{parse_brokers, Brokers};
use metrics::Metrics;
use rabbitmq_pool::probe;
use session::StompBrokerSession;
use shared::SharedConn;

/// What the broker is, as far as destination names go (from CONNECTED's `server`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavor {
    ActiveMq,
    Other,
}

impl Flavor {
    fn of(server: &str) -> Flavor {
        if server.starts_with("ActiveMQ/") {
            Flavor::ActiveMq
        } else {
            Flavor::Other
        }
    }

    /// The broker's name for topic (pattern) `key`.
    fn topic(self, key: &str) -> Result<String, BackendError> {
        if self == Flavor::ActiveMq && key.split('.').any(|w| w == "#") {
            let mut words: Vec<&str> = key.split('.').collect();
            let last = words.len() - 1;
            if words[..last].contains(&"#") {
                return Err(BackendError::refused(format!(
                    "/topic/{key}: ActiveMQ matches any number of words (#) only at the end of a pattern"
                )));
            }
            words[last] = ">";
            return Ok(format!("/topic/{}", words.join(".")));
        }
        Ok(format!("/topic/{key}"))
    }
}

/// A MESSAGE frame from the broker as the bridge holds it (the broker's destination and
/// message-id; its other headers are passed on).
fn message_from(frame: &Frame, fallback_destination: &str) -> Arc<SharedMessage> {
    Arc::new(SharedMessage::new(
        frame
            .headers
            .get("destination")
            .unwrap_or(fallback_destination)
            .to_string(),
        frame.headers.get("message-id").unwrap_or("").to_string(),
        &frame.headers,
        frame.body.clone(),
    ))
}

/// What every session of the service shares.
pub(crate) struct Core {
    /// The broker (of the failover list) the service uses now.
    rotation: Arc<Rotation>,
    settings: Arc<StompSettings>,
    metrics: Arc<Metrics>,
    /// Service credentials only: the shared connection for topic fan-out.
    shared: Option<Arc<SharedConn>>,
    /// Each session logs in with its client's login and passcode.
    pass_through: bool,
    /// Names this gateway's temp queues apart from other gateways' on the same broker.
    names: BrokerNames,
}

impl Core {
    /// The broker's destination for what a client named.
    fn upstream(
        &self,
        destination: &Destination,
        flavor: Flavor,
        session: u64,
    ) -> Result<String, BackendError> {
        match destination {
            Destination::Topic(key) => flavor.topic(key),
            Destination::Queue(q) => Ok(format!("/queue/{q}")),
            Destination::TempQueue(name) => {
                Ok(format!("/queue/{}", self.temp_queue(session, name)))
            }
            #[allow(unreachable_patterns)]
            other => Err(BackendError::refused(format!(
                "{other}: a STOMP broker backend serves /topic/, /queue/ and /temp-queue/ destinations"
            ))),
        }
    }

    fn temp_queue(&self, session: u64, name: &str) -> String {
        self.names.temp_queue("gateway-tmp", session, name)
    }
}

pub struct StompBrokerBackend {
    core: Arc<Core>,
    /// Pass-through: whether each broker's port answered lately (ready while any does:
    /// sessions try them in turn).
    reachable: Vec<Arc<AtomicBool>>,
    stop: CancellationToken,
}

impl StompBrokerBackend {
    /// Checks and wiring only; connecting begins at [`Backend::start`] (in the background:
    /// an unreachable broker makes the service not ready, it does not stop the gateway).
    pub fn new(
        service: &str,
        node: &str,
        brokers: Brokers,
        settings: &StompSettings,
        stomp: Arc<crate::metrics::StompMetrics>,
    ) -> Result<StompBrokerBackend, String> {
        let metrics = Metrics::new(service, stomp);
        let pass_through = settings.credentials == Credentials::PassThrough;
        let stop = CancellationToken::new();
        let reachable = brokers
            .members
            .iter()
            .map(|_| Arc::new(AtomicBool::new(false)))
            .collect();
        let rotation = Arc::new(Rotation::new(brokers));
        let shared = if pass_through {
            None
        } else {
            Some(SharedConn::new(
                rotation.clone(),
                settings.max_frame_size,
                metrics.clone(),
            ))
        };
        Ok(StompBrokerBackend {
            core: Arc::new(Core {
                rotation,
                settings: Arc::new(settings.clone()),
                metrics,
                shared,
                pass_through,
                names: BrokerNames::new(node),
            }),
            reachable,
            stop,
        })
    }
}

#[async_trait::async_trait]
impl Backend for StompBrokerBackend {
    fn is_ready(&self) -> bool {
        match &self.core.shared {
            Some(shared) => shared.is_up(),
            None => self.reachable.iter().any(|r| r.load(Ordering::Relaxed)),
        }
    }

    fn start(&self, bg: &Background) {
        match &self.core.shared {
            Some(shared) => shared.start(bg),
            None => {
                let stop = self.stop.clone();
                let shutdown = bg.shutdown().clone();
                let members = &self.core.rotation.brokers().members;
                for (member, flag) in members.iter().zip(&self.reachable) {
                    bg.spawn(probe(
                        "STOMP broker",
                        member.addr(),
                        flag.clone(),
                        stop.clone(),
                    ));
                }
                bg.spawn(async move {
                    shutdown.cancelled().await;
                    stop.cancel();
                });
            }
        }
    }

    async fn open(&self, req: OpenRequest) -> Result<Box<dyn BackendSession>, BackendError> {
        if let Some(shared) = &self.core.shared {
            if !shared.is_up() {
                return Err(shared.outage());
            }
            return Ok(Box::new(StompBrokerSession::new(
                self.core.clone(),
                req.session_id,
                req.inbox,
                None,
            )));
        }
        if req.login.is_none() {
            return Err(BackendError::refused(
                "this service logs in to the STOMP broker as the client: CONNECT needs login and passcode",
            ));
        }
        let mut session =
            StompBrokerSession::new(self.core.clone(), req.session_id, req.inbox, req.login);
        // Log in now, so a bad login is refused at CONNECT with the broker's words.
        match session.conn().await {
            Ok(_) => {
                self.reachable[self.core.rotation.current_index()].store(true, Ordering::Relaxed)
            }
            Err(e) => {
                // Every broker of the list was tried.
                if e.kind == crate::backend::BackendErrorKind::Unavailable {
                    for r in &self.reachable {
                        r.store(false, Ordering::Relaxed);
                    }
                }
                return Err(e);
            }
        }
        Ok(Box::new(session))
    }
}

impl Drop for StompBrokerBackend {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(shared) = &self.core.shared {
            shared.stop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn activemq_wildcards() {
        let a = Flavor::of("ActiveMQ/5.17.2");
        assert_eq!(a, Flavor::ActiveMq);
        assert_eq!(a.topic("prices.#").unwrap(), "/topic/prices.>");
        assert_eq!(a.topic("prices.*").unwrap(), "/topic/prices.*");
        assert_eq!(a.topic("#").unwrap(), "/topic/>");
        assert!(a.topic("a.#.b").is_err());
        let other = Flavor::of("ActiveMQ-Artemis/2.31");
        assert_eq!(other, Flavor::Other);
        assert_eq!(other.topic("a.#.b").unwrap(), "/topic/a.#.b");
    }
}
