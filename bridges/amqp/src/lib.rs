//! AMQP 0-9-1 over WebSocket, terminated: the gateway plays the broker towards the client
//! (protocol header, Connection.Start/Tune/Open with SASL PLAIN or AMQPLAIN, heart-beats,
//! Close) and maps each client channel onto a lapin channel on one of the service's pooled
//! RabbitMQ connections. So the broker sees `pool_size` connections whatever the number of
//! browsers, the gateway's realm and ACLs decide who may do what, and one client can never
//! touch another's deliveries, consumers or exclusive queues.
//!
//! Clients send no subprotocol (CloudAMQP's `AMQPWebSocketClient`, Kaazing's client) or
//! `amqp`, which AMQP 1.0 clients send too: versions are told apart by the protocol header.

mod acl;
mod exclusive;
mod metrics;
mod session;
mod settings;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bridge_api::{
    async_trait, parse_settings, Background, Bridge, BridgeError, BridgeFactory, BuildContext,
    CancellationToken, CredentialCheck, DefaultService, Session, SettingsError,
};
use bridge_tls::TlsClient;
use rabbitmq_pool::lapin::uri::{AMQPScheme, AMQPUri};
use rabbitmq_pool::Pool;

use metrics::AmqpMetrics;
use settings::{AmqpSettings, Credentials};

const SUBPROTOCOLS: &[&str] = &["amqp"];

struct AmqpBridge {
    service: Arc<str>,
    settings: AmqpSettings,
    /// The broker's nodes (one, or a cluster's); all serve the same vhost.
    nodes: Vec<AMQPUri>,
    /// Pass-through: the node the next client's own connection tries first.
    next_node: std::sync::atomic::AtomicUsize,
    /// For `amqps://`.
    tls: Option<TlsClient>,
    /// The service's pool (service credentials), `None` with pass-through credentials.
    pool: Option<Arc<Pool>>,
    /// With pass-through credentials: whether the broker's port answers.
    reachable: Arc<AtomicBool>,
    credentials: Arc<dyn CredentialCheck>,
    acl: acl::Acl,
    exclusive: Arc<exclusive::Owners>,
    metrics: Arc<AmqpMetrics>,
}

#[async_trait]
impl Bridge for AmqpBridge {
    fn subprotocols(&self) -> &[&'static str] {
        SUBPROTOCOLS
    }

    fn is_ready(&self) -> bool {
        match &self.pool {
            Some(pool) => pool.is_up(),
            None => self.reachable.load(Ordering::Relaxed),
        }
    }

    fn gates_readiness(&self) -> bool {
        self.settings.gate_readiness
    }

    fn start(&self, bg: Background) {
        match &self.pool {
            Some(pool) => pool.start(bg.tracker(), bg.shutdown().clone()),
            None => {
                let stop: CancellationToken = bg.shutdown().clone();
                bg.spawn(rabbitmq_pool::probe_any(
                    "RabbitMQ",
                    self.nodes.iter().map(rabbitmq_pool::endpoint).collect(),
                    self.reachable.clone(),
                    stop,
                ));
            }
        }
    }

    async fn serve(&self, session: Session) -> Result<(), BridgeError> {
        session::AmqpSession::new(self, &session).run(session).await
    }
}

impl AmqpBridge {
    /// Why the broker is unreachable, for the clients that lose it.
    fn pool_outage(&self, pool: Option<&Pool>) -> String {
        match pool {
            Some(p) if !p.is_up() => p.outage(),
            _ => "the connection was lost".into(),
        }
    }
}

/// Parse and check the backend: one URI (`amqp://` or `amqps://`) or a cluster's nodes as
/// a comma-separated list of them.
fn parse_nodes(raw: &str) -> Result<Vec<AMQPUri>, String> {
    rabbitmq_pool::parse_nodes(raw, parse_uri)
}

/// Parse and check one node's URI.
fn parse_uri(raw: &str) -> Result<AMQPUri, String> {
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

/// The service's TLS client for `amqps://`; TLS settings on a plain URI are a mistake.
fn tls_client(
    service: &str,
    uri: &AMQPUri,
    settings: &AmqpSettings,
) -> Result<Option<TlsClient>, SettingsError> {
    if uri.scheme != AMQPScheme::AMQPS {
        if !settings.tls.is_default() {
            return Err(SettingsError::new(
                "tls",
                "TLS settings apply to an amqps:// backend; the backend is amqp://",
            ));
        }
        return Ok(None);
    }
    if settings.tls.insecure {
        tracing::warn!(
            service = %service,
            "amqp: tls.insecure = true: the broker's TLS certificate will not be verified"
        );
    }
    TlsClient::new(&settings.tls)
        .map(Some)
        .map_err(|e| SettingsError::new(format!("tls.{}", e.key), e.message))
}

pub struct AmqpFactory;

impl BridgeFactory for AmqpFactory {
    fn kind(&self) -> &'static str {
        "amqp"
    }

    fn build(
        &self,
        ctx: BuildContext,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn Bridge>, SettingsError> {
        let settings: AmqpSettings = parse_settings(settings)?;
        settings
            .validate()
            .map_err(|(path, msg)| SettingsError::new(path, msg))?;
        let nodes = parse_nodes(&settings.backend).map_err(|e| SettingsError::new("backend", e))?;
        // Every node has the first one's scheme (checked when parsed).
        let tls = tls_client(&ctx.service, &nodes[0], &settings)?;
        let acl = acl::Acl::new(&settings.acl).map_err(|(p, m)| SettingsError::new(p, m))?;
        let metrics = AmqpMetrics::new(&ctx.service);
        let pool = (settings.credentials == Credentials::Service).then(|| {
            Pool::supervised(
                nodes.clone(),
                tls.clone(),
                format!("gateway amqp {}", ctx.service),
                settings.pool_size,
                metrics.pool.clone(),
            )
        });
        Ok(Arc::new(AmqpBridge {
            service: ctx.service,
            settings,
            nodes,
            next_node: Default::default(),
            tls,
            pool,
            reachable: Arc::new(AtomicBool::new(false)),
            credentials: ctx.credentials,
            acl,
            exclusive: Arc::default(),
            metrics,
        }))
    }

    fn default_service(&self) -> Option<DefaultService> {
        Some(DefaultService {
            path: "/amqp",
            // A local RabbitMQ checks the logins (guest/guest works from loopback), and a
            // machine without one still reports ready: the other demos do not need it.
            settings: serde_json::json!({
                "credentials": "pass-through",
                "gate_readiness": false,
            }),
            allow_no_subprotocol: true,
        })
    }
}

#[cfg(test)]
mod tests;
