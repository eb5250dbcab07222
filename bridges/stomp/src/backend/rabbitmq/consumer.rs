//! A queue subscription's own AMQP consumer, on its own channel, with `basic.qos` prefetch.
//! Deliveries go into the subscriber's inbox with `Inbox::offer`; the prefetch never exceeds
//! the subscription's queue bound, so the offer always has room.
//!
//! - `client` / `client-individual`: each delivery carries an [`AckToken`] that STOMP
//!   ACK/NACK turn into `basic.ack` / `basic.nack(requeue)` on the right channel and tag.
//! - `auto`: consumed with `no_ack = false` and acknowledged once the session has taken the
//!   message from the inbox for its client (seen when the consumer holds the last reference
//!   to it), rather than `no_ack = true`: a message still queued in the gateway when the
//!   client leaves goes back to the queue instead of being lost, and the broker never pushes
//!   more than the inbox holds.
//!
//! When the client goes away the channel closes and RabbitMQ requeues whatever was not
//! acknowledged. When the broker goes away, a subscription with unacknowledged messages
//! fails its session with an ERROR naming the outage (they will be redelivered, perhaps to
//! someone else); one without is consumed again once the broker is back.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bridge_api::CancellationToken;
use bytes::Bytes;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};
use lapin::Consumer;
use tokio::sync::Notify;

use super::address::Declare;
use super::declare;
use super::from_lapin;
use super::health::Health;
use super::mapping;
use super::metrics::Metrics;
use crate::backend::BackendError;
use crate::inbox::{AckToken, Delivery, Inbox, SubKey};
use crate::message::SharedMessage;
use rabbitmq_pool::timed;
use rabbitmq_pool::{Chan, Pool};

/// How often an auto-ack consumer checks for taken messages without being told.
const SWEEP_PERIOD: Duration = Duration::from_millis(200);

// An AckToken packs the subscription key, the consumer's incarnation (bumped when it is
// consumed again after an outage, so a stale token is never applied to a new channel's
// tags) and the delivery tag.
const TAG_BITS: u32 = 40;
const GEN_BITS: u32 = 4;
const TAG_MASK: u64 = (1 << TAG_BITS) - 1;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;
/// Subscription keys above this cannot be packed into a token.
pub const MAX_KEY: SubKey = (1 << (64 - TAG_BITS - GEN_BITS)) - 1;

pub fn token(key: SubKey, generation: u64, tag: u64) -> AckToken {
    AckToken(
        (u64::from(key) << (TAG_BITS + GEN_BITS))
            | ((generation & GEN_MASK) << TAG_BITS)
            | (tag & TAG_MASK),
    )
}

/// (subscription key, generation, delivery tag)
pub fn untoken(t: AckToken) -> (SubKey, u64, u64) {
    (
        (t.0 >> (TAG_BITS + GEN_BITS)) as SubKey,
        (t.0 >> TAG_BITS) & GEN_MASK,
        t.0 & TAG_MASK,
    )
}

pub struct Spec {
    pub key: SubKey,
    pub queue: String,
    pub declare: Declare,
    /// For a declared durable queue: its type (`queue_types`).
    pub queue_type: Option<crate::queue_types::QueueType>,
    /// The STOMP destination (the `destination` header of its messages).
    pub destination: String,
    pub auto_ack: bool,
    pub prefetch: u16,
    pub stream_offset: Option<crate::backend::StreamOffset>,
}

pub struct QueueConsumer {
    spec: Spec,
    pool: Arc<Pool>,
    inbox: Arc<Inbox>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    ids: Arc<AtomicU64>,
    /// The channel deliveries came on, for acks; `None` while the broker is away.
    chan: Mutex<Option<Arc<Chan>>>,
    generation: AtomicU64,
    /// auto: (tag, message) handed to the inbox and not yet acknowledged, oldest first.
    in_flight: Mutex<VecDeque<(u64, Arc<SharedMessage>)>>,
    /// client modes: deliveries handed to the inbox and not yet ACKed or NACKed.
    unsettled: AtomicUsize,
    poke: Notify,
    stop: CancellationToken,
}

impl QueueConsumer {
    /// Declare (if the destination says so), set the prefetch and consume; the consumer
    /// then runs by itself until [`QueueConsumer::stop`].
    pub async fn start(
        spec: Spec,
        pool: Arc<Pool>,
        inbox: Arc<Inbox>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        ids: Arc<AtomicU64>,
    ) -> Result<Arc<QueueConsumer>, BackendError> {
        let c = Arc::new(QueueConsumer {
            spec,
            pool,
            inbox,
            health,
            metrics,
            ids,
            chan: Mutex::new(None),
            generation: AtomicU64::new(0),
            in_flight: Mutex::new(VecDeque::new()),
            unsettled: AtomicUsize::new(0),
            poke: Notify::new(),
            stop: CancellationToken::new(),
        });
        let (chan, consumer) = c.timed_setup().await?;
        *c.chan_slot() = Some(chan);
        tokio::spawn(c.clone().run(consumer));
        Ok(c)
    }

    fn chan_slot(&self) -> std::sync::MutexGuard<'_, Option<Arc<Chan>>> {
        self.chan.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn in_flight(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Arc<SharedMessage>)>> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stop consuming; the channel closes and RabbitMQ requeues what was not acknowledged.
    /// Call before taking the subscription's undelivered messages out of the inbox: an
    /// auto-ack sweep after that would take them for delivered.
    pub fn stop(&self) {
        let _guard = self.in_flight();
        self.stop.cancel();
    }

    /// The session moved messages of this subscription to its client.
    pub fn drained(&self) {
        if self.spec.auto_ack {
            self.poke.notify_one();
        }
    }

    pub async fn settle(&self, generation: u64, tag: u64, nack: bool) -> Result<(), BackendError> {
        if generation != self.generation.load(Ordering::Relaxed) & GEN_MASK {
            // Delivered on a channel that is gone: RabbitMQ requeued it already.
            return Err(BackendError::unavailable(format!(
                "{}: the message was delivered before the broker connection was lost; \
                 it will be redelivered",
                self.spec.destination
            )));
        }
        let _ = self
            .unsettled
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        let chan = self.chan_slot().clone();
        let Some(chan) = chan else {
            return Err(BackendError::unavailable(self.pool.outage()));
        };
        let what = || format!("acknowledging a message of {}", self.spec.destination);
        timed(what, async {
            if nack {
                chan.basic_nack(
                    tag,
                    BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    },
                )
                .await
                .map_err(|e| from_lapin(&e, &what()))
            } else {
                chan.basic_ack(tag, BasicAckOptions::default())
                    .await
                    .map_err(|e| from_lapin(&e, &what()))
            }
        })
        .await
    }

    async fn timed_setup(&self) -> Result<(Arc<Chan>, Consumer), BackendError> {
        timed(
            || format!("subscribing to {}", self.spec.destination),
            self.setup(),
        )
        .await
    }

    async fn setup(&self) -> Result<(Arc<Chan>, Consumer), BackendError> {
        let what = || format!("subscribing to {}", self.spec.destination);
        let lapin_err = |e: lapin::Error| from_lapin(&e, &what());
        let queue = ShortString::try_new(self.spec.queue.as_str())
            .map_err(|_| BackendError::refused("queue name longer than 255 bytes"))?;
        let chan = self.pool.channel().await?;
        chan.basic_qos(self.spec.prefetch, BasicQosOptions::default())
            .await
            .map_err(lapin_err)?;
        let declare = match self.spec.declare {
            Declare::No => None,
            Declare::Durable => Some(QueueDeclareOptions::durable()),
            Declare::Temporary => Some(QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            }),
        };
        if let Some(options) = declare {
            let arguments = match self.spec.declare {
                Declare::Durable => declare::arguments(self.spec.queue_type),
                _ => FieldTable::default(),
            };
            chan.queue_declare(queue.clone(), options, arguments)
                .await
                .map_err(lapin_err)
                .map_err(|e| {
                    declare::explain(
                        e,
                        &self.spec.queue,
                        &self.spec.destination,
                        self.spec.queue_type,
                    )
                })?;
        }
        let consumer = chan
            .basic_consume(
                queue,
                ShortString::default(),
                BasicConsumeOptions::default(),
                consume_arguments(self.spec.stream_offset.as_ref()),
            )
            .await
            .map_err(lapin_err)?;
        Ok((Arc::new(chan), consumer))
    }

    async fn run(self: Arc<Self>, mut consumer: Consumer) {
        let mut sweep = tokio::time::interval(SWEEP_PERIOD);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let mut reason = String::from("the broker cancelled the consumer");
            loop {
                tokio::select! {
                    biased;
                    _ = self.stop.cancelled() => return,
                    d = consumer.next() => match d {
                        Some(Ok(d)) => self.on_delivery(d).await,
                        Some(Err(e)) => reason = e.to_string(),
                        None => break,
                    },
                    _ = self.poke.notified(), if self.spec.auto_ack => self.sweep().await,
                    _ = sweep.tick(), if self.spec.auto_ack => self.sweep().await,
                }
            }
            if self.stop.is_cancelled() {
                return;
            }
            drop(consumer);
            let node = self.chan_slot().take().map(|c| c.node().to_string());
            self.in_flight().clear();
            let pending = self.unsettled.swap(0, Ordering::Relaxed);
            if pending > 0 {
                let node = node.unwrap_or_else(|| self.pool.endpoints());
                self.health.fail(format!(
                    "RabbitMQ connection lost ({reason}) on node {node}: {pending} \
                     unacknowledged message(s) of {} will be redelivered; {}",
                    self.spec.destination,
                    self.pool.failover_note(&node)
                ));
                return;
            }
            // Nothing outstanding: carry on once the broker is back.
            match self.resubscribe().await {
                Some(c) => consumer = c,
                None => return,
            }
        }
    }

    async fn resubscribe(&self) -> Option<Consumer> {
        let mut retry = Duration::from_millis(250);
        // Give the pool a moment to notice a dead connection first.
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(300)) => {}
            _ = self.stop.cancelled() => return None,
        }
        loop {
            if !self.pool.wait_up(&self.stop).await {
                return None;
            }
            match self.timed_setup().await {
                Ok((chan, consumer)) => {
                    if self.stop.is_cancelled() {
                        return None;
                    }
                    self.generation.fetch_add(1, Ordering::Relaxed);
                    *self.chan_slot() = Some(chan);
                    tracing::info!(destination = %self.spec.destination, "queue subscription re-established");
                    return Some(consumer);
                }
                Err(e) if e.kind == crate::backend::BackendErrorKind::Refused => {
                    // E.g. an /amq/queue/ queue that did not survive the restart.
                    self.health.fail(e.message);
                    return None;
                }
                Err(_) => {
                    tokio::select! {
                        _ = tokio::time::sleep(retry) => {}
                        _ = self.stop.cancelled() => return None,
                    }
                    retry = (retry * 2).min(Duration::from_secs(3));
                }
            }
        }
    }

    async fn on_delivery(&self, d: lapin::message::Delivery) {
        self.metrics.messages_in.increment(1);
        let tag = d.delivery_tag;
        let message = Arc::new(SharedMessage::new(
            self.spec.destination.clone(),
            format!("m-{}", self.ids.fetch_add(1, Ordering::Relaxed)),
            &mapping::to_stomp(&d.properties),
            Bytes::from(d.data),
        ));
        let generation = self.generation.load(Ordering::Relaxed);
        let delivery = Delivery {
            message: message.clone(),
            ack: (!self.spec.auto_ack).then(|| token(self.spec.key, generation, tag)),
            redelivered: d.redelivered,
            frame: None,
        };
        // Counted before the offer: the session may take (and ACK) it at once.
        if self.spec.auto_ack {
            self.in_flight().push_back((tag, message));
        } else {
            self.unsettled.fetch_add(1, Ordering::Relaxed);
        }
        if self.inbox.offer(self.spec.key, delivery).is_err() {
            // The subscription is going away (or the prefetch exceeded its bound): the
            // message goes back to the queue.
            if self.spec.auto_ack {
                self.in_flight().retain(|(t, _)| *t != tag);
            } else {
                self.unsettled.fetch_sub(1, Ordering::Relaxed);
            }
            let chan = self.chan_slot().clone();
            if let Some(chan) = chan {
                let _ = chan
                    .basic_nack(
                        tag,
                        BasicNackOptions {
                            multiple: false,
                            requeue: true,
                        },
                    )
                    .await;
            }
        }
    }

    /// auto: acknowledge (cumulatively) the messages the session has taken, oldest first.
    async fn sweep(&self) {
        let last = {
            let mut q = self.in_flight();
            if self.stop.is_cancelled() {
                return;
            }
            crate::backend::handed_over::pop_handed_over(&mut q, |(_, m)| m).map(|(tag, _)| tag)
        };
        let Some(tag) = last else { return };
        let chan = self.chan_slot().clone();
        if let Some(chan) = chan {
            if let Err(e) = chan
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
            {
                tracing::debug!(destination = %self.spec.destination, "ack failed: {e}");
            }
        }
    }
}

/// `basic.consume` arguments: where a stream queue is read from.
fn consume_arguments(offset: Option<&crate::backend::StreamOffset>) -> FieldTable {
    use crate::backend::StreamOffset;
    use lapin::types::{AMQPValue, LongString};
    let mut args = FieldTable::default();
    let value = match offset {
        None => return args,
        Some(StreamOffset::First) => AMQPValue::LongString(LongString::from("first")),
        Some(StreamOffset::Last) => AMQPValue::LongString(LongString::from("last")),
        Some(StreamOffset::Next) => AMQPValue::LongString(LongString::from("next")),
        Some(StreamOffset::Offset(n)) => AMQPValue::LongLongInt(*n),
        Some(StreamOffset::Timestamp(t)) => AMQPValue::Timestamp(*t),
    };
    args.insert("x-stream-offset".into(), value);
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip() {
        for (key, generation, tag) in [(1, 0, 1), (MAX_KEY, 15, TAG_MASK), (77, 3, 123_456_789)] {
            assert_eq!(untoken(token(key, generation, tag)), (key, generation, tag));
        }
        // Generations wrap within their bits.
        assert_eq!(untoken(token(5, 17, 9)), (5, 1, 9));
    }
}
