//! The embedded broker: topics with RabbitMQ-style wildcards and queues with competing
//! consumers, acknowledgements and redelivery, all in memory inside the gateway process.

mod queues;
pub(crate) mod topics;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bridge_api::Background;
use bytes::Bytes;
use protocol_stomp::Headers;

use crate::backend::fanout::{FanOut, LocalSub};
use crate::backend::{AckMode, Backend, BackendError, BackendSession, OpenRequest, Subscription};
use crate::destination::Destination;
use crate::inbox::{AckToken, Inbox, SubKey};
use crate::message::SharedMessage;
use crate::metrics::StompMetrics;
use queues::Queues;
use topics::TopicTree;

pub struct EmbeddedBroker {
    inner: Arc<Inner>,
}

struct Inner {
    topics: RwLock<TopicTree>,
    queues: Mutex<Queues>,
    ids: AtomicU64,
    max_queue_depth: usize,
    metrics: Arc<StompMetrics>,
}

impl EmbeddedBroker {
    pub fn new(max_queue_depth: usize, metrics: Arc<StompMetrics>) -> Self {
        EmbeddedBroker {
            inner: Arc::new(Inner {
                topics: RwLock::new(TopicTree::default()),
                queues: Mutex::new(Queues::default()),
                ids: AtomicU64::new(1),
                max_queue_depth,
                metrics,
            }),
        }
    }

    /// Refresh the destination and depth gauges every `period` until `bg` shuts down.
    fn start_gauges(&self, bg: &Background, period: std::time::Duration) {
        let inner = Arc::downgrade(&self.inner);
        let shutdown = bg.shutdown().clone();
        bg.spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => {}
                }
                let Some(inner) = inner.upgrade() else { return };
                let patterns = inner
                    .topics
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .pattern_count();
                let (queues, depth) = {
                    let q = inner.queues();
                    (q.count(), q.depth())
                };
                inner.metrics.broker_gauges(patterns, queues, depth);
            }
        });
    }

    /// Publish from inside the gateway (the demo feed), as a client SEND would.
    pub fn publish(
        &self,
        destination: &Destination,
        headers: &Headers,
        body: Bytes,
    ) -> Result<(), BackendError> {
        self.inner.publish(destination, headers, body, None)
    }
}

impl Inner {
    fn next_id(&self) -> u64 {
        self.ids.fetch_add(1, Ordering::Relaxed)
    }

    fn queues(&self) -> std::sync::MutexGuard<'_, Queues> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(
        &self,
        destination: &Destination,
        headers: &Headers,
        body: Bytes,
        session: Option<u64>,
    ) -> Result<(), BackendError> {
        let message = |dest: String| {
            Arc::new(SharedMessage::new(
                dest,
                format!("m-{}", self.next_id()),
                headers,
                body.clone(),
            ))
        };
        match destination {
            Destination::Topic(key) => {
                let msg = message(destination.to_string());
                let topics = self.topics.read().unwrap_or_else(|p| p.into_inner());
                let mut fan = FanOut::new(&self.metrics);
                topics.for_each_match(key, |sub: &LocalSub| fan.deliver(&msg, sub));
                drop(topics);
                self.metrics.published("topic", fan.finish());
                Ok(())
            }
            Destination::Queue(name) => {
                let msg = message(destination.to_string());
                self.queues()
                    .publish(name, msg, self.max_queue_depth, &|| self.next_id())?;
                self.metrics.published("queue", 1);
                Ok(())
            }
            Destination::TempQueue(name) => {
                // A session sending to its own temp queue; others reach it by its address.
                let Some(session) = session else {
                    return Err(BackendError::refused("temp queues belong to a session"));
                };
                let qname = temp_queue_name(session, name);
                let msg = message(format!("/queue/{qname}"));
                self.queues()
                    .publish(&qname, msg, self.max_queue_depth, &|| self.next_id())?;
                self.metrics.published("queue", 1);
                Ok(())
            }
            Destination::AmqQueue(_) | Destination::Exchange { .. } => {
                Err(rabbitmq_only(destination))
            }
        }
    }
}

/// `/amq/queue/` and `/exchange/` name broker objects the embedded broker does not have.
fn rabbitmq_only(destination: &Destination) -> BackendError {
    BackendError::refused(format!(
        "{destination}: /amq/queue/ and /exchange/ destinations need the RabbitMQ backend \
         (backend = \"amqp://...\"); the embedded broker has /topic/, /queue/ and /temp-queue/"
    ))
}

fn temp_queue_name(session: u64, name: &str) -> String {
    format!("tmp.{session}.{name}")
}

#[async_trait::async_trait]
impl Backend for EmbeddedBroker {
    fn start(&self, bg: &Background) {
        self.start_gauges(bg, std::time::Duration::from_secs(5));
    }

    async fn open(&self, req: OpenRequest) -> Result<Box<dyn BackendSession>, BackendError> {
        Ok(Box::new(EmbeddedSession {
            broker: self.inner.clone(),
            session: req.session_id,
            inbox: req.inbox,
            subs: HashMap::new(),
            temp_queues: Vec::new(),
        }))
    }
}

enum SubTarget {
    Topic(String),
    Queue(String),
}

struct EmbeddedSession {
    broker: Arc<Inner>,
    session: u64,
    inbox: Arc<Inbox>,
    subs: HashMap<SubKey, SubTarget>,
    temp_queues: Vec<String>,
}

impl EmbeddedSession {
    fn remove_sub(&mut self, key: SubKey) {
        let Some(target) = self.subs.remove(&key) else {
            return;
        };
        let undelivered = self.inbox.remove(key);
        match target {
            SubTarget::Topic(pattern) => {
                let mut topics = self
                    .broker
                    .topics
                    .write()
                    .unwrap_or_else(|p| p.into_inner());
                topics.remove(&pattern, self.session, key);
            }
            SubTarget::Queue(name) => {
                self.broker.queues().remove_consumer(
                    &name,
                    self.session,
                    key,
                    undelivered,
                    &|| self.broker.next_id(),
                );
            }
        }
    }
}

#[async_trait::async_trait]
impl BackendSession for EmbeddedSession {
    async fn publish(
        &mut self,
        destination: &Destination,
        headers: &Headers,
        body: Bytes,
    ) -> Result<(), BackendError> {
        self.broker
            .publish(destination, headers, body, Some(self.session))
    }

    async fn subscribe(&mut self, sub: &Subscription) -> Result<(), BackendError> {
        if sub.stream_offset.is_some() {
            return Err(BackendError::refused(
                "x-stream-offset reads a RabbitMQ stream queue; the embedded broker has none",
            ));
        }
        match &sub.destination {
            Destination::Topic(pattern) => {
                self.broker
                    .topics
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(pattern, sub.local(self.session, &self.inbox));
                self.subs.insert(sub.key, SubTarget::Topic(pattern.clone()));
            }
            Destination::Queue(name) | Destination::TempQueue(name) => {
                let qname = match &sub.destination {
                    Destination::TempQueue(_) => {
                        let q = temp_queue_name(self.session, name);
                        self.temp_queues.push(q.clone());
                        q
                    }
                    _ => name.clone(),
                };
                self.broker.queues().add_consumer(
                    &qname,
                    queues::Consumer {
                        session: self.session,
                        key: sub.key,
                        inbox: self.inbox.clone(),
                        ack: sub.ack,
                        prefetch: if sub.ack == AckMode::Auto {
                            0
                        } else {
                            sub.prefetch
                        },
                        outstanding: 0,
                    },
                    &|| self.broker.next_id(),
                );
                self.subs.insert(sub.key, SubTarget::Queue(qname));
            }
            Destination::AmqQueue(_) | Destination::Exchange { .. } => {
                return Err(rabbitmq_only(&sub.destination))
            }
        }
        Ok(())
    }

    async fn unsubscribe(&mut self, key: SubKey) -> Result<(), BackendError> {
        self.remove_sub(key);
        Ok(())
    }

    async fn ack(&mut self, token: AckToken) -> Result<(), BackendError> {
        self.broker
            .queues()
            .settle(token, false, &|| self.broker.next_id());
        Ok(())
    }

    async fn nack(&mut self, token: AckToken) -> Result<(), BackendError> {
        self.broker
            .queues()
            .settle(token, true, &|| self.broker.next_id());
        Ok(())
    }

    fn drained(&mut self, key: SubKey) {
        if let Some(SubTarget::Queue(name)) = self.subs.get(&key) {
            self.broker
                .queues()
                .dispatch(name, &|| self.broker.next_id());
        }
    }

    fn temp_queue_address(&self, name: &str) -> String {
        format!("/queue/{}", temp_queue_name(self.session, name))
    }

    async fn close(&mut self) {
        let keys: Vec<SubKey> = self.subs.keys().copied().collect();
        for key in keys {
            self.remove_sub(key);
        }
        let mut queues = self.broker.queues();
        for q in self.temp_queues.drain(..) {
            queues.delete(&q);
        }
    }
}

#[cfg(test)]
mod tests;
