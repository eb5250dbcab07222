//! Publishing with publisher confirms: a SEND resolves (and its receipt goes out) only once
//! RabbitMQ has confirmed the message. One confirm-mode channel per pooled connection is
//! shared by every session of the service; lapin matches confirms to publishes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::{BasicProperties, Confirmation};

use super::from_lapin;
use super::metrics::Metrics;
use crate::backend::BackendError;
use rabbitmq_pool::timed;
use rabbitmq_pool::{Chan, Pool};

/// A confirm that takes longer than this fails the SEND rather than holding the client
/// (and its memory) indefinitely; the broker may still have taken the message.
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a SEND waiting for its confirm looks whether the broker blocked the connection.
/// RabbitMQ says so (`connection.blocked`) only once the connection publishes during an alarm,
/// and then holds the message unconfirmed until the alarm clears.
const BLOCKED_POLL: Duration = Duration::from_millis(50);

pub struct Publisher {
    pool: Arc<Pool>,
    channels: Vec<tokio::sync::Mutex<Option<Arc<Chan>>>>,
    rr: AtomicUsize,
    metrics: Arc<Metrics>,
}

pub struct Publish<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub mandatory: bool,
    pub properties: BasicProperties,
    pub body: &'a [u8],
    /// The STOMP destination, for messages.
    pub destination: &'a str,
}

impl Publisher {
    pub fn new(pool: Arc<Pool>, metrics: Arc<Metrics>) -> Publisher {
        Publisher {
            channels: (0..pool.size())
                .map(|_| tokio::sync::Mutex::new(None))
                .collect(),
            pool,
            rr: AtomicUsize::new(0),
            metrics,
        }
    }

    /// A confirm-mode channel, opened on first use and again after a loss.
    async fn channel(&self) -> Result<Arc<Chan>, BackendError> {
        let n = self.channels.len();
        let start = self.rr.fetch_add(1, Ordering::Relaxed);
        let mut last = None;
        for k in 0..n {
            let i = (start + k) % n;
            let mut slot = self.channels[i].lock().await;
            if let Some(c) = slot.as_ref().filter(|c| c.usable()) {
                return Ok(c.clone());
            }
            *slot = None;
            let chan = match self.pool.channel_on(i).await {
                Ok(c) => c,
                Err(e) => {
                    last = Some(BackendError::from(e));
                    continue;
                }
            };
            if let Err(e) = chan.confirm_select(ConfirmSelectOptions::default()).await {
                last = Some(from_lapin(&e, "enabling publisher confirms"));
                continue;
            }
            let chan = Arc::new(chan);
            *slot = Some(chan.clone());
            return Ok(chan);
        }
        Err(last.unwrap_or_else(|| BackendError::unavailable(self.pool.outage())))
    }

    /// Publish and wait for the broker's confirm. Fails fast while the broker is down.
    pub async fn publish(&self, p: Publish<'_>) -> Result<(), BackendError> {
        let result = self.try_publish(&p).await;
        match &result {
            Ok(()) => self.metrics.messages_out.increment(1),
            Err(e) => {
                tracing::debug!(destination = p.destination, "publish failed: {e}");
            }
        }
        result
    }

    async fn try_publish(&self, p: &Publish<'_>) -> Result<(), BackendError> {
        let fail = |reason: &'static str, e: BackendError| {
            self.metrics.publish_failure(reason);
            e
        };
        if !self.pool.is_up() {
            return Err(fail(
                "unavailable",
                BackendError::unavailable(self.pool.outage()),
            ));
        }
        let chan = timed(
            || format!("publishing to {}", p.destination),
            self.channel(),
        )
        .await
        .map_err(|e| fail("unavailable", e))?;
        if chan.blocked() {
            return Err(fail(
                "blocked",
                BackendError::unavailable(format!(
                    "RabbitMQ at {} is blocking publishers (a memory or disk alarm); try later",
                    chan.node()
                )),
            ));
        }
        let exchange = ShortString::try_new(p.exchange)
            .map_err(|_| BackendError::refused("exchange name longer than 255 bytes"))?;
        let key = ShortString::try_new(p.routing_key)
            .map_err(|_| BackendError::refused("routing key longer than 255 bytes"))?;
        let started = Instant::now();
        let what = || format!("publishing to {}", p.destination);
        let confirm = timed(what, async {
            chan.basic_publish(
                exchange,
                key,
                BasicPublishOptions {
                    mandatory: p.mandatory,
                    immediate: false,
                },
                p.body,
                p.properties.clone(),
            )
            .await
            .map_err(|e| from_lapin(&e, &what()))
        })
        .await
        .map_err(|e| fail("channel", e))?;
        let confirmed = tokio::select! {
            r = tokio::time::timeout(CONFIRM_TIMEOUT, confirm) => r,
            _ = until_blocked(&chan) => {
                return Err(fail(
                    "blocked",
                    BackendError::unavailable(format!(
                        "RabbitMQ at {} is blocking publishers (a memory or disk alarm): the \
                         message to {} is not confirmed, though it may be delivered once the \
                         alarm clears",
                        chan.node(), p.destination
                    )),
                ))
            }
        };
        let confirmation = match confirmed {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                return Err(fail(
                    "channel",
                    from_lapin(&e, &format!("publishing to {}", p.destination)),
                ))
            }
            Err(_) => {
                return Err(fail(
                    "timeout",
                    BackendError::unavailable(format!(
                        "RabbitMQ did not confirm the message to {} within {CONFIRM_TIMEOUT:?}",
                        p.destination
                    )),
                ))
            }
        };
        self.metrics
            .confirm_seconds
            .record(started.elapsed().as_secs_f64());
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(fail(
                "unroutable",
                BackendError::refused(format!(
                    "{}: no queue to deliver to ({} {})",
                    p.destination, returned.reply_code, returned.reply_text
                )),
            )),
            Confirmation::Nack(_) => Err(fail(
                "nack",
                BackendError::unavailable(format!(
                    "RabbitMQ did not accept the message to {} (negative confirm)",
                    p.destination
                )),
            )),
        }
    }
}

async fn until_blocked(chan: &Chan) {
    while !chan.blocked() {
        tokio::time::sleep(BLOCKED_POLL).await;
    }
}
