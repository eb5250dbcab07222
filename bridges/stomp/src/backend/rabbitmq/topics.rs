//! Shared upstream subscriptions: every local subscriber to the same (exchange, pattern)
//! hangs off ONE broker queue — exclusive, auto-deleted, bound once — with ONE consumer.
//! Its deliveries are fanned out by `fanout::Locals` (straight into the clients' outbox
//! lanes for `ack:auto` subscribers; each queue applies its slow-consumer policy; fan-out
//! never waits), with the MESSAGE frame encoded once per (subscription id, version). The last local subscriber leaving deletes the queue.
//! A broker outage does not end the subscribers' sessions: the upstream is declared, bound
//! and consumed again once a connection is back, and the gap is counted.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bridge_api::CancellationToken;
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::Consumer;

use super::address::{self, Binding};
use super::from_lapin;
use super::mapping;
use super::metrics::Metrics;
use crate::backend::fanout::{FanOut, LocalSub};
use crate::backend::names::BrokerNames;
use crate::backend::upstream::{settled, Upstream};
use crate::backend::BackendError;
use crate::inbox::SubKey;
use crate::message::SharedMessage;
use rabbitmq_pool::timed;
use rabbitmq_pool::{Chan, Pool};

/// Unacknowledged deliveries the broker may push to one shared consumer.
const PREFETCH: u16 = 1000;
/// Acknowledge (cumulatively) every this many deliveries: well below the prefetch, so
/// the consumer never stalls waiting for an ack that an idle stream would not send.
const ACK_EVERY: u16 = 100;
/// Messages the broker keeps for a shared consumer that falls behind (oldest dropped).
const MAX_LENGTH: i32 = 10_000;

/// One broker queue bound for `binding`, and its local subscribers.
struct SharedQueue {
    binding: Binding,
    local: Upstream,
    stop: CancellationToken,
}

pub struct TopicHub {
    pool: Arc<Pool>,
    upstreams: Mutex<HashMap<Binding, Arc<SharedQueue>>>,
    ids: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    /// Upstream queues are named after this gateway (`stomp-gw.<node>.<random>.topic.N`).
    names: BrokerNames,
}

impl TopicHub {
    pub fn new(
        pool: Arc<Pool>,
        ids: Arc<AtomicU64>,
        metrics: Arc<Metrics>,
        names: BrokerNames,
    ) -> Arc<TopicHub> {
        Arc::new(TopicHub {
            pool,
            upstreams: Mutex::new(HashMap::new()),
            ids,
            metrics,
            names,
        })
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Binding, Arc<SharedQueue>>> {
        self.upstreams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Attach `local` to the upstream for `binding`, creating it if needed; resolves once
    /// the upstream is bound (so nothing published after the receipt is missed).
    pub async fn subscribe(
        self: &Arc<Self>,
        binding: Binding,
        local: LocalSub,
    ) -> Result<(), BackendError> {
        let phase = {
            let mut map = self.map();
            let up = map
                .entry(binding.clone())
                .or_insert_with(|| {
                    let up = Arc::new(SharedQueue {
                        binding: binding.clone(),
                        local: Upstream::new(self.metrics.local_subscribers.clone()),
                        stop: CancellationToken::new(),
                    });
                    self.metrics.upstream_subscriptions.increment(1.0);
                    tokio::spawn(self.clone().run(up.clone()));
                    up
                })
                .clone();
            up.local.join(local)
        };
        settled(phase).await
    }

    /// Detach a local subscriber; the last one out cancels the consumer and deletes the queue.
    pub fn unsubscribe(&self, binding: &Binding, session: u64, key: SubKey) {
        let mut map = self.map();
        let Some(up) = map.get(binding).cloned() else {
            return;
        };
        let Some(left) = up.local.leave(session, key) else {
            return;
        };
        if left == 0 {
            map.remove(binding);
            self.metrics.upstream_subscriptions.decrement(1.0);
            up.stop.cancel();
        }
    }

    /// The first setup failed: the upstream goes away and its waiting subscribers get `e`.
    fn retire(&self, up: &Arc<SharedQueue>, e: BackendError) {
        let mut map = self.map();
        if map.get(&up.binding).is_some_and(|u| Arc::ptr_eq(u, up)) {
            map.remove(&up.binding);
            self.metrics.upstream_subscriptions.decrement(1.0);
        }
        // Under the map lock: nobody joins it any more, and those who did are told.
        up.local.fail(e);
    }

    async fn setup(
        &self,
        binding: &Binding,
    ) -> Result<(Chan, Consumer, ShortString), BackendError> {
        let what = || format!("subscribing to {}", binding.destination_for(&binding.key));
        let chan = self.pool.channel().await?;
        chan.basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .map_err(|e| from_lapin(&e, &what()))?;
        // Bounded at the broker too: a gateway that cannot keep up loses the oldest
        // messages there, as its own subscribers' queues do by default.
        let mut args = FieldTable::default();
        args.insert("x-max-length".into(), AMQPValue::LongInt(MAX_LENGTH));
        // Named after the gateway, with a fresh number per declaration (a redeclaration
        // after an outage never meets a queue the old connection may still hold).
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let name = ShortString::try_new(address::topic_queue_name(&self.names, n))
            .map_err(|_| BackendError::refused("queue name longer than 255 bytes"))?;
        let queue = chan
            .queue_declare(
                name,
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                args,
            )
            .await
            .map_err(|e| from_lapin(&e, &what()))?;
        let name = queue.name().clone();
        let exchange = ShortString::try_new(binding.exchange.as_str())
            .map_err(|_| BackendError::refused("exchange name longer than 255 bytes"))?;
        let key = ShortString::try_new(binding.key.as_str())
            .map_err(|_| BackendError::refused("binding key longer than 255 bytes"))?;
        chan.queue_bind(
            name.clone(),
            exchange,
            key,
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| from_lapin(&e, &what()))?;
        // Acknowledged in batches (below) rather than no_ack: with a prefetch, the messages
        // lapin buffers for a busy gateway stay bounded; the fan-out itself never waits.
        let consumer = chan
            .basic_consume(
                name.clone(),
                ShortString::default(),
                BasicConsumeOptions {
                    exclusive: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| from_lapin(&e, &what()))?;
        Ok((chan, consumer, name))
    }

    async fn run(self: Arc<Self>, up: Arc<SharedQueue>) {
        let mut lost_at: Option<Instant> = None;
        let mut live_once = false;
        let mut retry = Duration::from_millis(250);
        loop {
            // Not abandoned midway when the last subscriber leaves: an exclusive queue
            // declared without a consumer would live as long as the pooled connection.
            let setup = timed(
                || {
                    format!(
                        "subscribing to {}",
                        up.binding.destination_for(&up.binding.key)
                    )
                },
                self.setup(&up.binding),
            )
            .await;
            if up.stop.is_cancelled() {
                if let Ok((chan, _, queue)) = setup {
                    let _ = chan
                        .queue_delete(queue, QueueDeleteOptions::default())
                        .await;
                }
                return;
            }
            let (chan, mut consumer, queue) = match setup {
                Ok(s) => s,
                Err(e) if !live_once => {
                    tracing::debug!(binding = ?up.binding, "shared subscription failed: {e}");
                    self.retire(&up, e);
                    return;
                }
                Err(e) => {
                    // Usually the broker is still (or again) away; the pool logs that.
                    tracing::debug!(binding = ?up.binding, "re-subscribing failed: {e}; retrying");
                    if !self.pool.wait_up(&up.stop).await {
                        return;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = up.stop.cancelled() => return,
                    }
                    retry = (retry * 2).min(Duration::from_secs(3));
                    continue;
                }
            };
            retry = Duration::from_millis(250);
            if let Some(t) = lost_at.take() {
                self.metrics
                    .upstream_gap_seconds
                    .record(t.elapsed().as_secs_f64());
                tracing::info!(binding = ?up.binding, gap = ?t.elapsed(), "shared subscription re-established");
            }
            if !live_once {
                live_once = true;
                up.local.go_live();
            }
            let mut fan = FanOut::new(&self.metrics.stomp);
            let mut unacked = 0u16;
            loop {
                tokio::select! {
                    biased;
                    _ = up.stop.cancelled() => {
                        // Deleting the queue cancels its consumer; dropping the channel closes it.
                        delete_queue(&chan, queue).await;
                        return;
                    }
                    d = consumer.next() => match d {
                        Some(Ok(d)) => {
                            let tag = d.delivery_tag;
                            self.fan_out(&up, d, &mut fan);
                            unacked += 1;
                            if unacked >= ACK_EVERY {
                                unacked = 0;
                                let multiple = BasicAckOptions { multiple: true };
                                if let Err(e) = chan.basic_ack(tag, multiple).await {
                                    tracing::debug!(binding = ?up.binding, "ack failed: {e}");
                                }
                            }
                        }
                        Some(Err(e)) => tracing::debug!(binding = ?up.binding, "consumer error: {e}"),
                        None => break,
                    },
                }
            }
            if up.stop.is_cancelled() {
                return;
            }
            if !self.pool.reconnects() {
                // A pass-through client's own connection: its session fails with the
                // outage (and its client reconnects as itself); there is no gap to bridge.
                tracing::debug!(binding = ?up.binding, "subscription ended with its client's connection");
                return;
            }
            // The broker went away (or deleted the queue): subscribers keep their sessions
            // and get messages again once the binding is back.
            self.metrics.upstream_gaps.increment(1);
            up.local.locals().history_lost();
            lost_at = Some(Instant::now());
            tracing::warn!(binding = ?up.binding, "shared subscription lost; re-subscribing when RabbitMQ is back");
            drop(consumer);
            drop(chan);
            // Give the pool a moment to notice a dead connection before asking it for a
            // channel again.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(300)) => {}
                _ = up.stop.cancelled() => return,
            }
            if !self.pool.wait_up(&up.stop).await {
                return;
            }
        }
    }

    fn fan_out(&self, up: &SharedQueue, d: lapin::message::Delivery, fan: &mut FanOut) {
        self.metrics.messages_in.increment(1);
        if up.local.locals().is_empty() {
            return;
        }
        let message = Arc::new(SharedMessage::new(
            up.binding.destination_for(d.routing_key.as_str()),
            format!("m-{}", self.ids.fetch_add(1, Ordering::Relaxed)),
            &mapping::to_stomp(&d.properties),
            Bytes::from(d.data),
        ));
        let reached = up.local.locals().fan_out(&message, fan);
        self.metrics.stomp.published("topic", reached);
    }
}

async fn delete_queue(chan: &Chan, queue: ShortString) {
    let _ = tokio::time::timeout(
        rabbitmq_pool::RPC_TIMEOUT,
        chan.queue_delete(queue, QueueDeleteOptions::default()),
    )
    .await;
}
