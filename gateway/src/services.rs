//! The service table: which bridge serves a (path, offered subprotocols) pair.

use std::collections::HashMap;
use std::sync::Arc;

use bridge_api::{Background, Bridge, BridgeFactory, BuildContext, CredentialCheck};
use metrics::Counter;

use crate::config::ServiceConfig;
use crate::origin::OriginPolicy;

mod error;
mod instance;
mod reconcile;

pub use error::{ServiceError, ServiceErrorKind};
pub use instance::{Instance, Retired};
pub use reconcile::ServiceChanges;

/// Per-service traffic counters, resolved once so the hot path only bumps atomics.
#[derive(Clone)]
pub struct TrafficCounters {
    pub messages_in: Counter,
    pub bytes_in: Counter,
    pub messages_out: Counter,
    pub bytes_out: Counter,
    /// The one session's own counts, once the counters belong to a session.
    pub session: Option<Arc<crate::sessions::SessionTraffic>>,
}

impl TrafficCounters {
    /// `transport` is `websocket` or `http`.
    pub fn new(service: &str, transport: &'static str) -> Self {
        let labels = [
            ("service", service.to_string()),
            ("transport", transport.to_string()),
        ];
        TrafficCounters {
            messages_in: metrics::counter!("gateway_messages_in_total", &labels),
            bytes_in: metrics::counter!("gateway_bytes_in_total", &labels),
            messages_out: metrics::counter!("gateway_messages_out_total", &labels),
            bytes_out: metrics::counter!("gateway_bytes_out_total", &labels),
            session: None,
        }
    }

    /// These counters, also counting into one session's own.
    pub fn for_session(&self, session: Arc<crate::sessions::SessionTraffic>) -> Self {
        TrafficCounters {
            session: Some(session),
            ..self.clone()
        }
    }

    pub fn received(&self, bytes: usize) {
        self.messages_in.increment(1);
        self.bytes_in.increment(bytes as u64);
        if let Some(s) = &self.session {
            s.received(bytes);
        }
    }

    pub fn sent(&self, bytes: usize) {
        self.messages_out.increment(1);
        self.bytes_out.increment(bytes as u64);
        if let Some(s) = &self.session {
            s.sent(1, bytes as u64);
        }
    }
}

pub struct Service {
    pub name: Arc<str>,
    pub bridge: Arc<dyn Bridge>,
    pub allow_no_subprotocol: bool,
    pub origins: OriginPolicy,
    pub require_auth: bool,
    pub require_roles: Vec<String>,
    /// Traffic over WebSocket and over the HTTP fallback.
    pub counters: TrafficCounters,
    pub http_counters: TrafficCounters,
    /// permessage-deflate, when the service turned it on.
    pub compression: Option<crate::deflate::CompressionConfig>,
    /// The bridge's work beside its sessions: started after building, stopped at drain
    /// (or, once a reload replaced the bridge, when its last session has ended).
    pub background: Background,
    /// The table entry it was built from; a reload compares it with the new one.
    pub config: ServiceConfig,
    /// Shared by every `Service` (and so every session) using this bridge; the last one
    /// gone stops the background work of a bridge a reload retired.
    pub instance: Arc<Instance>,
}

/// Services grouped by path, in configuration order (which is the server's preference).
pub struct ServiceTable {
    by_path: HashMap<String, Vec<Arc<Service>>>,
    all: Vec<Arc<Service>>,
}

/// Why no service could take a handshake.
#[derive(Debug, PartialEq, Eq)]
pub enum NoService {
    UnknownPath,
    NoSubprotocol { supported: Vec<&'static str> },
}

impl ServiceTable {
    pub fn build(
        configs: &[ServiceConfig],
        factories: &[Box<dyn BridgeFactory>],
        credentials: Arc<dyn CredentialCheck>,
        node: &str,
    ) -> Result<ServiceTable, ServiceError> {
        let mut by_path: HashMap<String, Vec<Arc<Service>>> = HashMap::new();
        let mut all = Vec::new();
        for (i, cfg) in configs.iter().enumerate() {
            let key = |field: &str| format!("service[{i}].{field}");
            let fail = |field: &str, kind: ServiceErrorKind| ServiceError {
                at: key(field),
                kind,
            };
            if all.iter().any(|s: &Arc<Service>| *s.name == cfg.name) {
                return Err(fail(
                    "name",
                    ServiceErrorKind::DuplicateName(cfg.name.clone()),
                ));
            }
            if !cfg.path.starts_with('/') {
                return Err(fail(
                    "path",
                    ServiceErrorKind::RelativePath(cfg.path.clone()),
                ));
            }
            let factory = factories
                .iter()
                .find(|f| f.kind() == cfg.bridge)
                .ok_or_else(|| {
                    let known = factories.iter().map(|f| f.kind()).collect();
                    let bridge = cfg.bridge.clone();
                    fail("bridge", ServiceErrorKind::UnknownBridge { bridge, known })
                })?;
            let ctx = BuildContext {
                service: cfg.name.as_str().into(),
                credentials: credentials.clone(),
                node: node.into(),
            };
            let bridge = factory.build(ctx, cfg.settings.clone()).map_err(|e| {
                let at = if e.path.is_empty() {
                    "settings".to_string()
                } else {
                    format!("settings.{}", e.path)
                };
                fail(&at, ServiceErrorKind::Settings(e.message))
            })?;
            let origins = OriginPolicy::new(&cfg.allowed_origins, cfg.allow_missing_origin)
                .map_err(|e| fail("allowed_origins", e.into()))?;
            if let Some(c) = &cfg.compression {
                c.check().map_err(|(field, why)| {
                    fail(
                        &format!("compression.{field}"),
                        ServiceErrorKind::Settings(why),
                    )
                })?;
            }
            let background = Background::new(cfg.name.as_str());
            let service = Arc::new(Service {
                name: cfg.name.as_str().into(),
                instance: Instance::new(cfg.name.as_str(), bridge.clone(), background.clone()),
                config: cfg.clone(),
                bridge,
                allow_no_subprotocol: cfg.allow_no_subprotocol,
                origins,
                require_auth: cfg.require_auth || !cfg.require_roles.is_empty(),
                require_roles: cfg.require_roles.clone(),
                counters: TrafficCounters::new(&cfg.name, "websocket"),
                http_counters: TrafficCounters::new(&cfg.name, "http"),
                compression: cfg.compression.clone().filter(|c| c.enabled),
                background,
            });
            by_path
                .entry(cfg.path.clone())
                .or_default()
                .push(service.clone());
            all.push(service);
        }
        Ok(ServiceTable { by_path, all })
    }

    pub fn has_path(&self, path: &str) -> bool {
        self.by_path.contains_key(path)
    }

    /// The services at `path`, in configuration order (none: not a service path).
    pub fn at_path(&self, path: &str) -> &[Arc<Service>] {
        self.by_path.get(path).map_or(&[], Vec::as_slice)
    }

    pub fn all(&self) -> &[Arc<Service>] {
        &self.all
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Service>> {
        self.all.iter().find(|s| *s.name == *name)
    }

    /// The first service at `path` (configuration order) and the first of its subprotocols
    /// (the bridge's order) that the client offered. A client offering nothing gets the first
    /// service that accepts that.
    pub fn select(
        &self,
        path: &str,
        offered: &[&str],
    ) -> Result<(Arc<Service>, Option<&'static str>), NoService> {
        let services = self.by_path.get(path).ok_or(NoService::UnknownPath)?;
        if offered.is_empty() {
            if let Some(s) = services.iter().find(|s| s.allow_no_subprotocol) {
                return Ok((s.clone(), None));
            }
        }
        for service in services {
            for token in service.bridge.subprotocols() {
                if offered.iter().any(|o| o == token) {
                    return Ok((service.clone(), Some(token)));
                }
            }
        }
        Err(NoService::NoSubprotocol {
            supported: services
                .iter()
                .flat_map(|s| s.bridge.subprotocols().iter().copied())
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_api::{async_trait, testkit, BridgeError, Session, SettingsError};

    struct Fake(&'static str, &'static [&'static str]);
    struct FakeBridge(&'static [&'static str]);
    #[async_trait]
    impl Bridge for FakeBridge {
        fn subprotocols(&self) -> &[&'static str] {
            self.0
        }
        async fn serve(&self, _: Session) -> Result<(), BridgeError> {
            Ok(())
        }
    }
    impl BridgeFactory for Fake {
        fn kind(&self) -> &'static str {
            self.0
        }
        fn build(
            &self,
            _: BuildContext,
            _: serde_json::Value,
        ) -> Result<Arc<dyn Bridge>, SettingsError> {
            Ok(Arc::new(FakeBridge(self.1)))
        }
    }
    fn svc(name: &str, path: &str, bridge: &str, no_sub: bool) -> ServiceConfig {
        ServiceConfig {
            name: name.into(),
            path: path.into(),
            bridge: bridge.into(),
            allow_no_subprotocol: no_sub,
            allowed_origins: vec![],
            allow_missing_origin: true,
            require_auth: false,
            require_roles: vec![],
            settings: serde_json::json!({}),
            compression: None,
        }
    }

    fn table(configs: &[ServiceConfig]) -> Result<ServiceTable, ServiceError> {
        let factories: Vec<Box<dyn BridgeFactory>> = vec![
            Box::new(Fake("stomp", &["v12.stomp", "v11.stomp", "stomp"])),
            Box::new(Fake("xmpp", &["xmpp"])),
        ];
        ServiceTable::build(configs, &factories, Arc::new(testkit::NoRealm), "test")
    }

    #[test]
    fn server_preference_wins_over_client_order() {
        let t = table(&[
            svc("s", "/ws", "stomp", false),
            svc("x", "/ws", "xmpp", false),
        ])
        .unwrap();
        let (s, tok) = t.select("/ws", &["stomp", "v11.stomp", "xmpp"]).unwrap();
        assert_eq!((&*s.name, tok), ("s", Some("v11.stomp")));
        let (s, tok) = t.select("/ws", &["xmpp"]).unwrap();
        assert_eq!((&*s.name, tok), ("x", Some("xmpp")));
    }

    #[test]
    fn refusals() {
        let t = table(&[svc("s", "/ws", "stomp", false)]).unwrap();
        assert!(matches!(
            t.select("/nope", &["stomp"]),
            Err(NoService::UnknownPath)
        ));
        assert!(matches!(
            t.select("/ws", &["mqtt"]),
            Err(NoService::NoSubprotocol { .. })
        ));
        assert!(matches!(
            t.select("/ws", &[]),
            Err(NoService::NoSubprotocol { .. })
        ));
    }

    #[test]
    fn no_subprotocol_when_allowed() {
        let t = table(&[svc("s", "/ws", "stomp", true)]).unwrap();
        let (_, tok) = t.select("/ws", &[]).unwrap();
        assert_eq!(tok, None);
    }

    #[test]
    fn config_errors_name_the_key() {
        let err = |configs: &[ServiceConfig]| table(configs).err().unwrap().to_string();
        assert_eq!(
            err(&[svc("s", "/ws", "mqtt", false)]),
            "service[0].bridge: unknown bridge `mqtt` (known: stomp, xmpp)"
        );
        assert_eq!(
            err(&[svc("s", "ws", "stomp", false)]),
            "service[0].path: `ws` must start with /"
        );
        assert_eq!(
            err(&[
                svc("s", "/a", "stomp", false),
                svc("s", "/b", "xmpp", false)
            ]),
            "service[1].name: duplicate service name `s`"
        );
        let mut bad_origin = svc("s", "/ws", "stomp", false);
        bad_origin.allowed_origins = vec!["example.com".into()];
        assert_eq!(
            err(&[bad_origin]),
            "service[0].allowed_origins: origin `example.com` needs a scheme, e.g. https://example.com"
        );
    }
}
