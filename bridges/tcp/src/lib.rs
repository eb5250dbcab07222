//! The TCP bridge (the websockify job): each session opens one TCP connection to the
//! service's target and copies bytes both ways, so IRC, telnet or any TCP protocol reaches a
//! browser. Backpressure holds in both directions: a slow client stops reads from the target
//! (the bounded outbox fills), a slow target stops reads from the client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bridge_api::{
    async_trait, parse_settings, Bridge, BridgeError, BridgeFactory, BuildContext, Message,
    Session, SettingsError,
};
use bytes::BytesMut;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// websockify's binary subprotocol: WebSocket binary messages carry raw TCP bytes.
pub const SUBPROTOCOLS: &[&str] = &["binary"];

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_read_chunk() -> usize {
    8 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpSettings {
    /// `host:port` of the server each session connects to.
    target: String,
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    connect_timeout: Duration,
    /// Largest chunk read from the target per client message.
    #[serde(default = "default_read_chunk")]
    read_chunk: usize,
}

pub struct TcpBridge {
    service: Arc<str>,
    settings: TcpSettings,
}

impl TcpBridge {
    async fn connect(&self) -> Result<TcpStream, BridgeError> {
        let started = Instant::now();
        let result = tokio::time::timeout(
            self.settings.connect_timeout,
            TcpStream::connect(&self.settings.target),
        )
        .await;
        let failure = |why: String| {
            metrics::counter!("gateway_tcp_connect_failures_total", "service" => self.service.to_string())
                .increment(1);
            tracing::warn!(service = %self.service, target = %self.settings.target, "tcp connect failed: {why}");
            BridgeError::backend(format!("cannot reach {}: {why}", self.settings.target))
        };
        let stream = match result {
            Err(_) => return Err(failure("connect timed out".into())),
            Ok(Err(e)) => return Err(failure(e.to_string())),
            Ok(Ok(stream)) => stream,
        };
        metrics::histogram!("gateway_tcp_connect_seconds", "service" => self.service.to_string())
            .record(started.elapsed().as_secs_f64());
        // Interactive protocols (telnet, IRC) suffer from Nagle's delay; the bridge already
        // forwards whole client messages, so coalescing buys nothing.
        let _ = stream.set_nodelay(true);
        Ok(stream)
    }
}

#[async_trait]
impl Bridge for TcpBridge {
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
        let stream = self.connect().await?;
        let (mut from_target, mut to_target) = stream.into_split();
        let chunk = self.settings.read_chunk.max(512);

        let client_to_target = async {
            while let Some(msg) = incoming.recv().await {
                to_target
                    .write_all(&msg.payload())
                    .await
                    .map_err(|e| BridgeError::backend("write to target failed").with_cause(e))?;
            }
            // The client closed: pass the end on so the target sees a clean FIN.
            let _ = to_target.shutdown().await;
            Ok::<_, BridgeError>(())
        };
        let target_to_client = async {
            let mut buf = BytesMut::new();
            loop {
                buf.reserve(chunk);
                let n = from_target
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| BridgeError::backend("read from target failed").with_cause(e))?;
                if n == 0 {
                    return Ok::<_, BridgeError>(());
                }
                if outbox
                    .send(Message::Binary(buf.split().freeze()))
                    .await
                    .is_err()
                {
                    return Ok(());
                }
            }
        };
        tokio::select! {
            r = client_to_target => r,
            r = target_to_client => r,
            _ = shutdown.cancelled() => Ok(()),
        }
    }
}

pub struct TcpFactory;

impl BridgeFactory for TcpFactory {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn build(
        &self,
        ctx: BuildContext,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn Bridge>, SettingsError> {
        let settings: TcpSettings = parse_settings(settings)?;
        if !settings.target.contains(':') {
            return Err(SettingsError::new("target", "expected host:port"));
        }
        Ok(Arc::new(TcpBridge {
            service: ctx.service,
            settings,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_api::{testkit, EndKind, ErrorSource, Outgoing};
    use tokio::net::TcpListener;

    fn bridge(target: String) -> Arc<dyn Bridge> {
        TcpFactory
            .build(testkit::ctx("t"), serde_json::json!({ "target": target }))
            .unwrap()
    }

    #[tokio::test]
    async fn copies_bytes_both_ways_and_closes_when_target_closes() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 5];
            s.read_exact(&mut buf).await.unwrap();
            s.write_all(&buf).await.unwrap();
            s.write_all(b"!").await.unwrap();
        });
        let (session, mut client) = testkit::session().subprotocol("binary").live();
        client.send(Message::binary(&b"hello"[..]));
        bridge(addr.to_string()).serve(session).await.unwrap();
        let mut got = Vec::new();
        while let Some(Outgoing::Message(m)) = client.next().await {
            got.extend_from_slice(&m.payload());
        }
        assert_eq!(got, b"hello!");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn the_client_leaving_ends_the_target_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).await.unwrap();
            got
        });
        let (session, _client) = testkit::session()
            .subprotocol("binary")
            .scripted([Message::binary(&b"bye"[..])]);
        bridge(addr.to_string()).serve(session).await.unwrap();
        assert_eq!(server.await.unwrap(), b"bye");
    }

    #[tokio::test]
    async fn unreachable_target_is_a_backend_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let (session, _client) = testkit::session().scripted([]);
        let err = bridge(addr.to_string()).serve(session).await.unwrap_err();
        assert_eq!(err.source_side(), ErrorSource::Backend);
        assert_eq!(err.end_kind(), EndKind::BackendFailed);
    }

    #[test]
    fn target_must_have_a_port() {
        let err = TcpFactory
            .build(
                testkit::ctx("t"),
                serde_json::json!({ "target": "localhost" }),
            )
            .err()
            .unwrap();
        assert_eq!(err.path, "target");
    }
}
