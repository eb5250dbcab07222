//! STOMP 1.0, 1.1 and 1.2 over WebSocket (subprotocols `v12.stomp`, `v11.stomp`,
//! `v10.stomp`, `stomp`), with the broker behind it as a pluggable [`backend::Backend`]:
//! the embedded in-process broker by default.

mod acl;
mod backend;
mod demo;
mod destination;
mod inbox;
mod message;
mod metrics;
mod queue_types;
mod session;
mod settings;
mod stream;

use std::sync::Arc;

use backend::uri::BackendUri;
use bridge_api::{
    async_trait, parse_settings, Background, Bridge, BridgeError, BridgeFactory, BuildContext,
    CredentialCheck, DefaultService, Session, SettingsError,
};
use bridge_tls::TlsClient;
use metrics::StompMetrics;
use protocol_stomp::Version;

use backend::embedded::EmbeddedBroker;
use settings::StompSettings;

/// In server preference order.
const SUBPROTOCOLS: &[&str] = &["v12.stomp", "v11.stomp", "v10.stomp", "stomp"];

struct StompBridge {
    settings: StompSettings,
    backend: Arc<dyn backend::Backend>,
    credentials: Arc<dyn CredentialCheck>,
    /// Logins are checked against the gateway's realm (not passed through to the broker):
    /// the gateway then knows who the client is, and follows it (admin view, revocation).
    realm_logins: bool,
    acl: acl::Acl,
    metrics: Arc<StompMetrics>,
    streams: stream::Streams,
    /// The embedded broker, when it is the backend: the demo feed publishes into it.
    embedded: Option<Arc<EmbeddedBroker>>,
}

impl StompBridge {
    /// The versions a client may negotiate given the subprotocol it was accepted with.
    fn versions_for(&self, subprotocol: Option<&str>) -> &'static [Version] {
        match subprotocol {
            Some("v10.stomp") => &[Version::V1_0],
            Some("v11.stomp") => &[Version::V1_0, Version::V1_1],
            _ => &[Version::V1_0, Version::V1_1, Version::V1_2],
        }
    }
}

#[async_trait]
impl Bridge for StompBridge {
    fn subprotocols(&self) -> &[&'static str] {
        SUBPROTOCOLS
    }

    fn is_ready(&self) -> bool {
        self.backend.is_ready()
    }

    fn start(&self, bg: Background) {
        self.backend.start(&bg);
        stream::start_feeds(&self.streams, &bg, self.backend.clone(), &self.metrics);
        if let (Some(broker), Some(demo)) = (&self.embedded, &self.settings.demo) {
            demo::start(&bg, broker.clone(), demo.clone());
        }
    }

    async fn serve(&self, session: Session) -> Result<(), BridgeError> {
        let stomp = session::StompSession::new(self, &session);
        stomp.run(session).await
    }
}

pub struct StompFactory;

impl BridgeFactory for StompFactory {
    fn kind(&self) -> &'static str {
        "stomp"
    }

    fn build(
        &self,
        ctx: BuildContext,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn Bridge>, SettingsError> {
        let settings: StompSettings = parse_settings(settings)?;
        settings
            .validate()
            .map_err(|(path, msg)| SettingsError::new(path, msg))?;
        let acl = acl::Acl::compile(&settings.acl)
            .map_err(|(path, msg)| SettingsError::new(path, msg))?;
        let metrics = StompMetrics::new(&ctx.service);
        acl::describe();
        session::describe_refresh_metrics();
        stream::describe_metrics();
        let mut credentials = ctx.credentials;
        let realm_logins = settings.backend.is_embedded()
            || settings.credentials != settings::Credentials::PassThrough;
        if !realm_logins {
            credentials = Arc::new(backend::probe::BrokerChecksLogin);
        }
        let tls = if settings.backend.is_tls() {
            if settings.tls.insecure {
                tracing::warn!(
                    service = %ctx.service,
                    "stomp: tls.insecure = true: the broker's TLS certificate will not be verified"
                );
            }
            Some(
                TlsClient::new(&settings.tls)
                    .map_err(|e| SettingsError::new(format!("tls.{}", e.key), e.message))?,
            )
        } else {
            None
        };
        let mut embedded = None;
        let backend: Arc<dyn backend::Backend> = match &settings.backend {
            BackendUri::Embedded => {
                let broker = Arc::new(EmbeddedBroker::new(
                    settings.max_queue_depth,
                    metrics.clone(),
                ));
                embedded = Some(broker.clone());
                broker
            }
            BackendUri::StompBroker(endpoint) => Arc::new(
                backend::stomp_broker::StompBrokerBackend::new(
                    &ctx.service,
                    backend::stomp_broker::Endpoint {
                        tls,
                        ..endpoint.clone()
                    },
                    &settings,
                    metrics.clone(),
                )
                .map_err(|e| SettingsError::new("backend", e))?,
            ),
            BackendUri::RabbitMq(nodes) => Arc::new(
                backend::rabbitmq::RabbitMqBackend::new(
                    &ctx.service,
                    nodes.clone(),
                    tls,
                    &settings,
                    metrics.clone(),
                )
                .map_err(|e| SettingsError::new("backend", e))?,
            ),
        };
        let streams = stream::Streams::new(&settings.streams, &metrics);
        Ok(Arc::new(StompBridge {
            streams,
            settings,
            backend,
            credentials,
            realm_logins,
            acl,
            metrics,
            embedded,
        }))
    }

    fn default_service(&self) -> Option<DefaultService> {
        Some(DefaultService {
            path: "/ws",
            settings: serde_json::json!({
                "demo": {},
                "policy": [{
                    "destination": "/topic/prices.",
                    "policy": "conflate",
                    "conflate_key": "destination",
                    "queue": 64
                }],
                // The dashboard's snapshot on subscribe and resume after a reconnect.
                "stream": [{
                    "destination": "/topic/prices.",
                    "history": 10000,
                    "history_age": "5m",
                    "snapshot_keys": 10000
                }]
            }),
            allow_no_subprotocol: false,
        })
    }
}
