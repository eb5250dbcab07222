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
