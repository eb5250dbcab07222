//! The echo bridge: every client message comes back unchanged, text as text, binary as
//! binary. It is what the Autobahn suite runs against, and the smallest example of a bridge.

use std::sync::Arc;

use bridge_api::{
    async_trait, parse_settings, Bridge, BridgeError, BridgeFactory, BuildContext, DefaultService,
    Session, SettingsError,
};
use serde::Deserialize;

/// Subprotocol tokens the echo bridge answers to.
pub const SUBPROTOCOLS: &[&str] = &["echo"];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EchoSettings {}

pub struct EchoBridge;

#[async_trait]
impl Bridge for EchoBridge {
    fn subprotocols(&self) -> &[&'static str] {
        SUBPROTOCOLS
    }

    async fn serve(&self, session: Session) -> Result<(), BridgeError> {
        let Session {
            mut incoming,
            outbox,
            shutdown,
            ..
        } = session;
        let mut cancelled = std::pin::pin!(shutdown.cancelled());
        loop {
            let msg = tokio::select! {
                biased;
                _ = &mut cancelled => return Ok(()),
                msg = incoming.recv() => msg,
            };
            let Some(msg) = msg else { return Ok(()) };
            if outbox.send(msg).await.is_err() {
                return Ok(());
            }
        }
    }
}

pub struct EchoFactory;

impl BridgeFactory for EchoFactory {
    fn kind(&self) -> &'static str {
        "echo"
    }

    fn build(
        &self,
        _ctx: BuildContext,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn Bridge>, SettingsError> {
        let _: EchoSettings = parse_settings(settings)?;
        Ok(Arc::new(EchoBridge))
    }

    fn default_service(&self) -> Option<DefaultService> {
        Some(DefaultService {
            path: "/echo",
            settings: serde_json::json!({}),
            allow_no_subprotocol: true,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_api::{testkit, Message, Outgoing};

    #[tokio::test]
    async fn echoes_text_and_binary_in_order() {
        let input = vec![Message::text("hi"), Message::binary(vec![0u8, 1, 2])];
        let (session, mut client) = testkit::session().scripted(input.clone());
        EchoBridge.serve(session).await.unwrap();
        for expected in input {
            match client.next().await {
                Some(Outgoing::Message(m)) => assert_eq!(m, expected),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(client.next().await.is_none());
    }

    #[tokio::test]
    async fn shutdown_ends_the_session() {
        let (session, client) = testkit::session().live();
        client.shutdown();
        EchoBridge.serve(session).await.unwrap();
    }

    #[test]
    fn rejects_unknown_settings() {
        let err = EchoFactory
            .build(testkit::ctx("echo"), serde_json::json!({"bogus": 1}))
            .err()
            .unwrap();
        assert!(err.to_string().contains("bogus"));
    }
}
