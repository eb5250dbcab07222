//! STOMP 1.0, 1.1 and 1.2 over WebSocket (subprotocols `v12.stomp`, `v11.stomp`,
//! `v10.stomp`, `stomp`), with the broker behind it as a pluggable [`backend::Backend`]:
//! the embedded in-process broker by default.

mod acl;
mod amqp;
pub mod backend;
mod demo;
pub mod destination;
mod embedded;
pub mod fanout;
pub mod inbox;
mod message;
mod metrics;
mod session;
mod settings;
mod stomp_upstream;

use std::sync::Arc;
use std::time::Duration;

use bridge_api::{
    async_trait, parse_settings, Bridge, BridgeError, BridgeFactory, BuildContext, CredentialCheck,
    DefaultService, Session, SettingsError,
};
use protocol_stomp::Version;

pub use embedded::EmbeddedBroker;
pub use settings::StompSettings;

/// In server preference order.
pub const SUBPROTOCOLS: &[&str] = &["v12.stomp", "v11.stomp", "v10.stomp", "stomp"];

pub struct StompBridge {
    settings: StompSettings,
    backend: Arc<dyn backend::Backend>,
    credentials: Arc<dyn CredentialCheck>,
    acl: acl::Acl,
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

    async fn serve(&self, session: Session) -> Result<(), BridgeError> {
        let stomp = session::StompSession::new(self, session.info.clone(), session.outbox.clone());
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
        metrics::describe();
        acl::describe();
        let mut credentials = ctx.credentials;
        let backend: Arc<dyn backend::Backend> = if settings.backend == "embedded" {
            let broker = Arc::new(EmbeddedBroker::new(settings.max_queue_depth));
            if let Some(demo) = &settings.demo {
                demo::spawn(broker.clone(), demo.clone());
            }
            broker.spawn_gauges(Duration::from_secs(5));
            broker
        } else {
            if settings.credentials == settings::Credentials::PassThrough {
                credentials = Arc::new(amqp::BrokerChecksLogin);
            }
            if settings.backend.starts_with("stomp://") {
                Arc::new(
                    stomp_upstream::StompUpstream::start(&ctx.service, &settings)
                        .map_err(|e| SettingsError::new("backend", e))?,
                )
            } else {
                Arc::new(
                    amqp::AmqpBackend::start(&ctx.service, &settings)
                        .map_err(|e| SettingsError::new("backend", e))?,
                )
            }
        };
        Ok(Arc::new(StompBridge {
            settings,
            backend,
            credentials,
            acl,
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
                }]
            }),
            allow_no_subprotocol: false,
        })
    }
}
