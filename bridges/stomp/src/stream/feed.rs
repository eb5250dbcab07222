//! Each stream's own subscription to the backend, opened when the service starts and held
//! until it stops, so the stream hears every message on its prefix whether or not a client
//! is subscribed (its history and last values are there for the first one).

use std::sync::Arc;
use std::time::Duration;

use bridge_api::Background;

use super::{Stream, Streams};
use crate::backend::{AckMode, Backend, OpenRequest, Subscription};
use crate::destination::Destination;
use crate::inbox::Inbox;
use crate::metrics::StompMetrics;

/// Session ids for the feeds, far from the ones clients get.
const FEED_SESSION_BASE: u64 = u64::MAX - 1024;

pub fn start_feeds(
    streams: &Streams,
    bg: &Background,
    backend: Arc<dyn Backend>,
    metrics: &Arc<StompMetrics>,
) {
    for (i, stream) in streams.iter().enumerate() {
        let feed = Feed {
            stream: stream.clone(),
            backend: backend.clone(),
            session: FEED_SESSION_BASE + i as u64,
            inbox: Inbox::new(metrics.clone()),
        };
        let shutdown = bg.shutdown().clone();
        bg.spawn(async move { feed.run(shutdown).await });
    }
}

struct Feed {
    stream: Arc<Stream>,
    backend: Arc<dyn Backend>,
    session: u64,
    inbox: Arc<Inbox>,
}

impl Feed {
    fn subscription(&self) -> Subscription {
        let prefix = self.stream.rule().key_prefix();
        Subscription {
            key: 1,
            destination: Destination::Topic(format!("{prefix}#")),
            ack: AckMode::Auto,
            prefetch: 0,
            version: protocol_stomp::Version::V1_2,
            direct: None,
            feed: Some(self.stream.clone()),
            stream_offset: None,
        }
    }

    /// Subscribe, hold, and subscribe again (in a new epoch) whenever that fails, until
    /// shutdown. A broker backend re-establishes a held subscription by itself after an
    /// outage (telling the stream of the gap); this loop covers the first subscription.
    async fn run(self, shutdown: bridge_api::CancellationToken) {
        let mut delay = Duration::from_millis(250);
        let what = &self.stream.rule().destination;
        loop {
            let opened = self
                .backend
                .open(OpenRequest {
                    session_id: self.session,
                    inbox: self.inbox.clone(),
                    login: None,
                })
                .await;
            match opened {
                Ok(mut session) => {
                    let sub = self.subscription();
                    let subscribed = tokio::select! {
                        r = session.subscribe(&sub) => Some(r),
                        _ = shutdown.cancelled() => None,
                    };
                    match subscribed {
                        Some(Ok(())) => {
                            tracing::debug!(stream = %what, "stream feed subscribed");
                            shutdown.cancelled().await;
                            session.close().await;
                            return;
                        }
                        Some(Err(e)) => {
                            tracing::warn!(stream = %what, "stream feed: subscribe failed: {e}; retrying");
                            session.close().await;
                        }
                        None => {
                            session.close().await;
                            return;
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(stream = %what, "stream feed: backend unavailable: {e}; retrying")
                }
            }
            self.stream.history_lost();
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.cancelled() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
    }
}
