//! One STOMP client's view of RabbitMQ: SENDs are published with confirms, topic
//! subscriptions join the shared upstreams, queue subscriptions get their own consumers,
//! and ACK/NACK go to the consumer that delivered the message.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use protocol_stomp::Headers;

use super::address::{self, Binding, SubscribeTarget};
use super::broker::Broker;
use super::consumer::{self, QueueConsumer, Spec};
use super::health::Health;
use super::mapping;
use super::publisher::Publish;
use crate::backend::{AckMode, BackendError, BackendSession, Subscription};
use crate::destination::Destination;
use crate::inbox::{AckToken, Inbox, SubKey};
use crate::settings::StompSettings;

pub struct RabbitMqSession {
    pub(super) broker: Arc<Broker>,
    /// Pass-through: the broker (and its connection) belongs to this session alone.
    pub(super) own_broker: bool,
    pub(super) settings: Arc<StompSettings>,
    pub(super) instance: Arc<str>,
    pub(super) session: u64,
    pub(super) inbox: Arc<Inbox>,
    pub(super) health: Arc<Health>,
    pub(super) topics: HashMap<SubKey, Binding>,
    pub(super) queues: HashMap<SubKey, Arc<QueueConsumer>>,
}

impl RabbitMqSession {
    fn temp_queue(&self, name: &str) -> String {
        address::temp_queue_name(&self.instance, self.session, name)
    }

    /// The prefetch for a queue subscription: the client's `prefetch-count`, else the
    /// subscription's queue bound, and never more than the inbox takes for it.
    fn prefetch(&self, sub: &Subscription) -> u16 {
        let (capacity, _) = self.settings.policy_for(&sub.destination.to_string());
        let bound = if sub.prefetch > 0 {
            capacity.max(sub.prefetch)
        } else {
            capacity
        };
        let want = if sub.ack != AckMode::Auto && sub.prefetch > 0 {
            sub.prefetch
        } else {
            bound
        };
        want.clamp(1, usize::from(u16::MAX)) as u16
    }

    /// Detach everything without waiting (also what dropping the session does).
    fn release(&mut self) {
        for (key, binding) in self.topics.drain() {
            self.broker.topics.unsubscribe(&binding, self.session, key);
        }
        for (key, c) in self.queues.drain() {
            c.stop();
            self.inbox.remove(key);
        }
    }
}

impl Drop for RabbitMqSession {
    fn drop(&mut self) {
        self.release();
        if self.own_broker {
            self.broker.pool.stop();
        }
    }
}

#[async_trait::async_trait]
impl BackendSession for RabbitMqSession {
    async fn publish(
        &mut self,
        destination: &Destination,
        headers: &Headers,
        body: Bytes,
    ) -> Result<(), BackendError> {
        self.health.check()?;
        let target = address::for_send(destination, |n| self.temp_queue(n));
        let dest = destination.to_string();
        if let Some((queue, address::Declare::Durable)) = &target.queue {
            let queue_type = self.settings.queue_types.for_destination(&dest);
            self.broker.ensure_queue(queue, &dest, queue_type).await?;
        }
        if let Destination::Exchange { exchange, .. } = destination {
            self.broker.ensure_exchange(exchange, &dest).await?;
        }
        let properties =
            mapping::to_amqp(headers).map_err(|e| BackendError::refused(format!("{dest}: {e}")))?;
        self.broker
            .publisher
            .publish(Publish {
                exchange: &target.exchange,
                routing_key: &target.routing_key,
                mandatory: target.mandatory,
                properties,
                body: &body,
                destination: &dest,
            })
            .await
    }

    async fn subscribe(&mut self, sub: &Subscription) -> Result<(), BackendError> {
        self.health.check()?;
        match address::for_subscribe(&sub.destination, |n| self.temp_queue(n)) {
            SubscribeTarget::Shared(binding) => {
                let local = sub.local(self.session, &self.inbox);
                // Recorded before waiting, so a session dropped meanwhile still detaches.
                self.topics.insert(sub.key, binding.clone());
                if let Err(e) = self.broker.topics.subscribe(binding, local).await {
                    self.topics.remove(&sub.key);
                    return Err(e);
                }
            }
            SubscribeTarget::Queue { name, declare } => {
                if sub.key > consumer::MAX_KEY {
                    return Err(BackendError::refused(
                        "too many subscriptions over this session's life; reconnect",
                    ));
                }
                let spec = Spec {
                    key: sub.key,
                    queue: name,
                    declare,
                    queue_type: self
                        .settings
                        .queue_types
                        .for_destination(&sub.destination.to_string()),
                    destination: sub.destination.to_string(),
                    auto_ack: sub.ack == AckMode::Auto,
                    prefetch: self.prefetch(sub),
                    stream_offset: sub.stream_offset.clone(),
                };
                let c = QueueConsumer::start(
                    spec,
                    self.broker.pool.clone(),
                    self.inbox.clone(),
                    self.health.clone(),
                    self.broker.metrics.clone(),
                    self.broker.ids.clone(),
                )
                .await?;
                self.queues.insert(sub.key, c);
            }
        }
        Ok(())
    }

    async fn unsubscribe(&mut self, key: SubKey) -> Result<(), BackendError> {
        if let Some(binding) = self.topics.remove(&key) {
            self.broker.topics.unsubscribe(&binding, self.session, key);
        }
        if let Some(c) = self.queues.remove(&key) {
            // Stopped first: its unacknowledged messages go back to the queue, including
            // those still waiting in the inbox.
            c.stop();
        }
        self.inbox.remove(key);
        Ok(())
    }

    async fn ack(&mut self, token: AckToken) -> Result<(), BackendError> {
        self.settle(token, false).await
    }

    async fn nack(&mut self, token: AckToken) -> Result<(), BackendError> {
        self.settle(token, true).await
    }

    fn drained(&mut self, key: SubKey) {
        if let Some(c) = self.queues.get(&key) {
            c.drained();
        }
    }

    fn temp_queue_address(&self, name: &str) -> String {
        format!("/amq/queue/{}", self.temp_queue(name))
    }

    async fn close(&mut self) {
        self.release();
        if self.own_broker {
            self.broker.pool.close().await;
        }
    }
}

impl RabbitMqSession {
    async fn settle(&mut self, token: AckToken, nack: bool) -> Result<(), BackendError> {
        self.health.check()?;
        let (key, generation, tag) = consumer::untoken(token);
        let Some(c) = self.queues.get(&key).cloned() else {
            // Unsubscribed meanwhile: the message went back to its queue.
            return Ok(());
        };
        c.settle(generation, tag, nack).await
    }
}
