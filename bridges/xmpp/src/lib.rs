//! The XMPP bridge: XMPP over WebSocket (RFC 7395, subprotocol `xmpp`) from the browser,
//! XMPP over TCP (RFC 6120) with STARTTLS or direct TLS to the server. SASL passes through
//! to the server; the gateway only checks that the login names the user the WebSocket
//! handshake authenticated, if any.

mod connect;
mod identity;
mod metrics;
mod session;
mod settings;

use std::sync::Arc;

use bridge_api::{
    async_trait, parse_settings, Bridge, BridgeError, BridgeFactory, BuildContext, Session,
    SettingsError,
};
use bridge_tls::TlsClient;

pub use identity::IdentityMode;
pub use settings::{TlsMode, XmppSettings};

pub const SUBPROTOCOLS: &[&str] = &["xmpp"];

pub struct XmppBridge {
    service: Arc<str>,
    settings: XmppSettings,
    limits: protocol_xmpp::Limits,
    /// The configured server, parsed once; `None` means SRV lookups per session.
    server: Option<connect::Target>,
    tls: TlsClient,
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
        let tls = TlsClient::new(&settings.tls_settings()).map_err(|e| {
            // The XMPP bridge's name for the shared `server_name`.
            let key = if e.key == "server_name" {
                "tls_server_name"
            } else {
                e.key
            };
            SettingsError::new(key, e.message)
        })?;
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
    use bridge_api::{testkit, EndKind, ErrorSource};

    fn build(settings: serde_json::Value) -> Result<Arc<dyn Bridge>, SettingsError> {
        XmppFactory.build(testkit::ctx("xmpp"), settings)
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
            tls: TlsClient::new(&settings.tls_settings()).unwrap(),
            settings,
            server: None,
            metrics: metrics::Metrics::new(),
        };
        let (session, _client) = testkit::session()
            .service("x")
            .subprotocol("xmpp")
            .queue(4)
            .scripted([]);
        let size = std::mem::size_of_val(&session::run(&bridge, session));
        assert!(size <= 6 * 1024, "session future is {size} bytes");
    }

    /// RFC 7395 3.2: text only. The client hears a stream error before the session ends.
    #[tokio::test]
    async fn a_binary_first_message_ends_with_unsupported_data() {
        let bridge =
            build(serde_json::json!({"domains": ["localhost"], "insecure": true})).unwrap();
        let (session, mut client) = testkit::session()
            .subprotocol("xmpp")
            .scripted([bridge_api::Message::binary(&b"<open/>"[..])]);
        let err = bridge.serve(session).await.unwrap_err();
        assert_eq!(err.source_side(), ErrorSource::Client);
        assert_eq!(err.end_kind(), EndKind::UnsupportedData);
        let texts = client.texts();
        assert!(
            texts.iter().any(|t| t.contains("unsupported-encoding")),
            "{texts:?}"
        );
        assert!(
            texts.last().is_some_and(|t| t.contains("<close")),
            "{texts:?}"
        );
    }
    /// A token that expires before the client opened its stream: the stream error follows
    /// an `<open/>` answer (RFC 6120 4.9.1.1), then `<close/>` (RFC 7395 3.6).
    #[tokio::test]
    async fn a_stop_before_open_is_told_as_a_policy_violation() {
        let bridge =
            build(serde_json::json!({"domains": ["localhost"], "insecure": true})).unwrap();
        let (session, mut client) = testkit::session().subprotocol("xmpp").live();
        client.stop(bridge_api::StopReason::CredentialExpired);
        let err = bridge.serve(session).await.unwrap_err();
        assert_eq!(err.source_side(), ErrorSource::Client);
        assert_eq!(err.end_kind(), EndKind::PolicyViolation);
        let texts = client.texts();
        assert_eq!(texts.len(), 3, "{texts:?}");
        assert!(texts[0].starts_with("<open"), "{texts:?}");
        assert!(
            texts[1].contains("<policy-violation")
                && texts[1].contains(">token expired</text></stream:error>"),
            "{texts:?}"
        );
        assert!(texts[2].starts_with("<close"), "{texts:?}");

        let (session, mut client) = testkit::session().subprotocol("xmpp").live();
        client.shutdown();
        bridge
            .serve(session)
            .await
            .expect("a drain before open ends quietly");
        assert!(client.texts().is_empty());
    }
}
