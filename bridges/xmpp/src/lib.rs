//! The XMPP bridge: XMPP over WebSocket (RFC 7395, subprotocol `xmpp`) from the browser,
//! XMPP over TCP (RFC 6120) with STARTTLS or direct TLS to the server. SASL passes through
//! to the server; the gateway only checks that the login names the user the WebSocket
//! handshake authenticated, if any.

mod connect;
mod identity;
mod metrics;
mod session;
mod settings;
mod tls;

use std::sync::Arc;

use bridge_api::{
    async_trait, parse_settings, Bridge, BridgeError, BridgeFactory, BuildContext, Session,
    SettingsError,
};
use tokio_rustls::rustls::ClientConfig;

pub use identity::IdentityMode;
pub use settings::{TlsMode, XmppSettings};

pub const SUBPROTOCOLS: &[&str] = &["xmpp"];

pub struct XmppBridge {
    service: Arc<str>,
    settings: XmppSettings,
    limits: protocol_xmpp::Limits,
    /// The configured server, parsed once; `None` means SRV lookups per session.
    server: Option<connect::Target>,
    tls: Arc<ClientConfig>,
    metrics: metrics::Metrics,
}

#[async_trait]
impl Bridge for XmppBridge {
    fn subprotocols(&self) -> &[&'static str] {
        SUBPROTOCOLS
    }

    async fn serve(&self, session: Session) -> Result<(), BridgeError> {
        session::run(self, session).await
    }
}

pub struct XmppFactory;

impl BridgeFactory for XmppFactory {
    fn kind(&self) -> &'static str {
        "xmpp"
    }

    fn build(
        &self,
        ctx: BuildContext,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn Bridge>, SettingsError> {
        let mut settings: XmppSettings = parse_settings(settings)?;
        settings.validate()?;
        if settings.insecure {
            tracing::warn!(
                service = %ctx.service,
                "xmpp: insecure = true: the server's TLS certificate will not be verified"
            );
        }
        let tls = tls::client_config(&settings)?;
        let server = settings
            .server
            .as_deref()
            .and_then(connect::parse_host_port);
        Ok(Arc::new(XmppBridge {
            service: ctx.service,
            limits: settings.limits(),
            settings,
            server,
            tls,
            metrics: metrics::Metrics::new(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_api::{Incoming, Outbox, SessionInfo};

    struct NoRealm;

    #[async_trait]
    impl bridge_api::CredentialCheck for NoRealm {
        async fn check_password(&self, _: &str, _: &str) -> Option<bridge_api::Principal> {
            None
        }
    }

    fn build(settings: serde_json::Value) -> Result<Arc<dyn Bridge>, SettingsError> {
        let ctx = BuildContext {
            service: "xmpp".into(),
            credentials: Arc::new(NoRealm),
        };
        XmppFactory.build(ctx, settings)
    }

    #[test]
    fn factory_builds_and_names_bad_keys() {
        let bridge =
            build(serde_json::json!({"domains": ["localhost"], "insecure": true})).unwrap();
        assert_eq!(bridge.subprotocols(), ["xmpp"]);
        assert!(XmppFactory.default_service().is_none());
        let err = build(serde_json::json!({"domains": ["x"], "ca_file": "/nonexistent.pem"}))
            .err()
            .unwrap();
        assert_eq!(err.path, "ca_file");
    }

    /// Every idle session holds this future: opening and endings are boxed so that only
    /// the relay's state (TLS stream, XML reader, a small read buffer) stays in it.
    #[test]
    fn the_session_future_stays_small() {
        let settings: XmppSettings =
            parse_settings(serde_json::json!({"domains": ["x"], "insecure": true})).unwrap();
        let bridge = XmppBridge {
            service: "x".into(),
            limits: settings.limits(),
            tls: tls::client_config(&settings).unwrap(),
            settings,
            server: None,
            metrics: metrics::Metrics::new(),
        };
        let (outbox, _rx) = Outbox::channel(4);
        let session = Session {
            info: Arc::new(SessionInfo {
                id: 1,
                service: "x".into(),
                peer: "127.0.0.1:1".parse().unwrap(),
                origin: None,
                principal: None,
                subprotocol: Some("xmpp".into()),
                transport: "test",
            }),
            incoming: Incoming::new(futures::stream::empty()),
            outbox,
            shutdown: Default::default(),
        };
        let size = std::mem::size_of_val(&session::run(&bridge, session));
        assert!(size <= 6 * 1024, "session future is {size} bytes");
    }
}
