//! The RabbitMQ backend (AMQP 0-9-1 through lapin), selected by
//! `backend = "amqp://user:pass@host:port/vhost"` (`amqps://` over the service's TLS client),
//! or a cluster's nodes as a comma-separated list of such URIs: the pool spreads its
//! connections over them and fails over between them.
//!
//! Offloading is the point: a service keeps `pool_size` connections whatever the number of
//! clients (`pool.rs`); all auto-ack subscribers of one topic pattern share one broker queue
//! and consumer, fanned out locally (`topics.rs`); queue subscriptions with acks get a
//! consumer of their own (`consumer.rs`); SENDs resolve on publisher confirms
//! (`publisher.rs`). Destinations and headers map the way RabbitMQ's STOMP plugin maps them
//! (`address.rs`, `mapping.rs`).

mod address;
mod broker;
mod consumer;
mod declare;
mod health;
mod mapping;
mod metrics;
mod publisher;
mod session;
mod topics;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use bridge_api::{Background, CancellationToken};
use bridge_tls::TlsClient;
use lapin::uri::AMQPUri;

use crate::backend::names::BrokerNames;
use crate::backend::{Backend, BackendError, BackendSession, OpenRequest};
use crate::settings::{Credentials, StompSettings};
use broker::Broker;
use health::Health;
use metrics::Metrics;
use rabbitmq_pool::probe_any;
use rabbitmq_pool::Pool;
use session::RabbitMqSession;

/// Parse and check a backend URI (`amqp://` or `amqps://`), one node of a list.
pub fn parse_uri(raw: &str) -> Result<AMQPUri, String> {
    if !raw.starts_with("amqp://") && !raw.starts_with("amqps://") {
        return Err(format!(
            "unknown backend {raw:?}: use \"embedded\" or \"amqp://user:pass@host:port/vhost\""
        ));
    }
    let mut uri: AMQPUri = raw
        .parse()
        .map_err(|e| format!("bad AMQP URI: {e} (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)"))?;
    // A broker that vanishes without closing its sockets is noticed within two heart-beats;
    // RabbitMQ's default (60 s) is long for a gateway. `?heartbeat=N` wins.
    if uri.query.heartbeat.is_none() {
        uri.query.heartbeat = Some(10);
    }
    Ok(uri)
}

/// lapin's error as the session needs it; `what` says what was being done.
pub(crate) fn from_lapin(e: &lapin::Error, what: &str) -> BackendError {
    rabbitmq_pool::from_lapin(e, what).into()
}

pub struct RabbitMqBackend {
    /// The broker's nodes (one, or a cluster's).
    nodes: Vec<AMQPUri>,
    /// Pass-through: where the next client's own connection is tried first, so clients
    /// spread over the nodes.
    next_node: AtomicUsize,
    /// For `amqps://`.
    tls: Option<TlsClient>,
    service: Arc<str>,
    settings: Arc<StompSettings>,
    /// Names this gateway's queues apart from other gateways' on the same broker.
    names: BrokerNames,
    metrics: Arc<Metrics>,
    ids: Arc<AtomicU64>,
    mode: Mode,
}

enum Mode {
    /// One pool and one set of shared subscriptions for every session.
    Service(Arc<Broker>),
    /// Each session logs in as its client; readiness comes from probing the broker's port.
    PassThrough {
        reachable: Arc<AtomicBool>,
        stop: CancellationToken,
    },
}

impl RabbitMqBackend {
    /// Checks and wiring only; connecting begins at [`Backend::start`] (in the background:
    /// an unreachable broker makes the service not ready, not the gateway fail).
    pub fn new(
        service: &str,
        node: &str,
        nodes: Vec<AMQPUri>,
        tls: Option<TlsClient>,
        settings: &StompSettings,
        stomp: Arc<crate::metrics::StompMetrics>,
    ) -> Result<RabbitMqBackend, String> {
        if nodes.is_empty() {
            return Err("no RabbitMQ node given".into());
        }
        let metrics = Metrics::new(service, stomp);
        let ids = Arc::new(AtomicU64::new(1));
        let names = BrokerNames::new(node);
        let mode = match settings.credentials {
            Credentials::Service => {
                let pool = Pool::supervised(
                    nodes.clone(),
                    tls.clone(),
                    format!("gateway stomp {service} (node {})", names.owner()),
                    settings.pool_size,
                    metrics.pool.clone(),
                );
                Mode::Service(Broker::new(
                    pool,
                    metrics.clone(),
                    ids.clone(),
                    names.clone(),
                ))
            }
            Credentials::PassThrough => {
                let reachable = Arc::new(AtomicBool::new(false));
                Mode::PassThrough {
                    reachable,
                    stop: CancellationToken::new(),
                }
            }
        };
        Ok(RabbitMqBackend {
            nodes,
            next_node: AtomicUsize::new(0),
            tls,
            service: service.into(),
            settings: Arc::new(settings.clone()),
            names,
            metrics,
            ids,
            mode,
        })
    }

    fn session(
        &self,
        broker: Arc<Broker>,
        own_broker: bool,
        health: Arc<Health>,
        req: &OpenRequest,
    ) -> RabbitMqSession {
        RabbitMqSession {
            broker,
            own_broker,
            settings: self.settings.clone(),
            names: self.names.clone(),
            session: req.session_id,
            inbox: req.inbox.clone(),
            health,
            topics: HashMap::new(),
            queues: HashMap::new(),
        }
    }

    async fn open_as_client(
        &self,
        req: &OpenRequest,
        health: Arc<Health>,
    ) -> Result<Arc<Broker>, BackendError> {
        let Some((user, pass)) = &req.login else {
            return Err(BackendError::refused(
                "this service logs in to RabbitMQ as the client: CONNECT needs login and passcode",
            ));
        };
        let nodes = rabbitmq_pool::as_user(&self.nodes, user, pass);
        let name = format!(
            "gateway stomp {} session {} (node {})",
            self.service,
            req.session_id,
            self.names.owner()
        );
        let start = self.next_node.fetch_add(1, Ordering::Relaxed);
        let (conn, uri) =
            match rabbitmq_pool::connect_any(&nodes, start, self.tls.as_ref(), &name).await {
                Ok((c, i)) => (c, nodes[i].clone()),
                Err(e) if rabbitmq_pool::is_refusal(&e) => {
                    return Err(BackendError::refused(format!(
                        "RabbitMQ refused the login for {user:?}: {}",
                        rabbitmq_pool::describe_connect(&e)
                    )))
                }
                Err(e) => {
                    if let Mode::PassThrough { reachable, .. } = &self.mode {
                        reachable.store(false, Ordering::Relaxed);
                    }
                    return Err(BackendError::unavailable(format!(
                        "RabbitMQ at {} is unavailable ({})",
                        rabbitmq_pool::endpoints(&nodes),
                        rabbitmq_pool::describe_connect(&e)
                    )));
                }
            };
        // A lost connection fails the session: its client reconnects as itself.
        let pool = Pool::single(conn, uri, name, self.metrics.pool.clone(), move |reason| {
            health.fail(format!("RabbitMQ connection lost ({reason})"));
        });
        if let Mode::PassThrough { reachable, .. } = &self.mode {
            reachable.store(true, Ordering::Relaxed);
        }
        let broker = Broker::new(
            pool,
            self.metrics.clone(),
            self.ids.clone(),
            self.names.clone(),
        );
        Ok(broker)
    }
}

#[async_trait::async_trait]
impl Backend for RabbitMqBackend {
    fn is_ready(&self) -> bool {
        match &self.mode {
            Mode::Service(broker) => broker.pool.is_up(),
            Mode::PassThrough { reachable, .. } => reachable.load(Ordering::Relaxed),
        }
    }

    fn start(&self, bg: &Background) {
        match &self.mode {
            Mode::Service(broker) => broker.pool.start(bg.tracker(), bg.shutdown().clone()),
            Mode::PassThrough { reachable, stop } => {
                let addrs = self.nodes.iter().map(rabbitmq_pool::endpoint).collect();
                let stop = stop.clone();
                let shutdown = bg.shutdown().clone();
                bg.spawn(probe_any(
                    "RabbitMQ",
                    addrs,
                    reachable.clone(),
                    stop.clone(),
                ));
                bg.spawn(async move {
                    shutdown.cancelled().await;
                    stop.cancel();
                });
            }
        }
    }

    async fn open(&self, req: OpenRequest) -> Result<Box<dyn BackendSession>, BackendError> {
        match &self.mode {
            Mode::Service(broker) => {
                if !broker.pool.is_up() {
                    return Err(BackendError::unavailable(broker.pool.outage()));
                }
                let health = Health::new(req.inbox.clone());
                Ok(Box::new(self.session(broker.clone(), false, health, &req)))
            }
            Mode::PassThrough { .. } => {
                let health = Health::new(req.inbox.clone());
                let broker = self.open_as_client(&req, health.clone()).await?;
                Ok(Box::new(self.session(broker, true, health, &req)))
            }
        }
    }
}

impl Drop for RabbitMqBackend {
    fn drop(&mut self) {
        match &self.mode {
            Mode::Service(broker) => broker.pool.stop(),
            Mode::PassThrough { stop, .. } => stop.cancel(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris() {
        let u = parse_uri("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(u.vhost, "/");
        assert_eq!(rabbitmq_pool::endpoint(&u), "127.0.0.1:5672");
        // amqps:// defaults to RabbitMQ's TLS port.
        let u = parse_uri("amqps://u:p@broker.internal/%2f").unwrap();
        assert_eq!(rabbitmq_pool::endpoint(&u), "broker.internal:5671");
        assert!(parse_uri("stomp://h:61613")
            .unwrap_err()
            .contains("unknown backend"));
        assert!(parse_uri("amqp://h:notaport/").is_err());
    }
}
