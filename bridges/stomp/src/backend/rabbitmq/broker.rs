//! Everything sessions share on one set of connections: the pool, the confirm-mode
//! publisher, the shared topic subscriptions and the queues and exchanges known to exist.
//! A service has one (`credentials = "service"`); with pass-through credentials each
//! session has its own on its own connection.

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::ExchangeKind;

use super::declare;
use super::from_lapin;
use super::metrics::Metrics;
use super::publisher::Publisher;
use super::topics::TopicHub;
use crate::backend::BackendError;
use crate::queue_types::QueueType;
use rabbitmq_pool::timed;
use rabbitmq_pool::Pool;

pub struct Broker {
    pub pool: Arc<Pool>,
    pub publisher: Publisher,
    pub topics: Arc<TopicHub>,
    pub metrics: Arc<Metrics>,
    /// Message ids for MESSAGE frames, unique within the backend.
    pub ids: Arc<AtomicU64>,
    /// Queues declared and exchanges checked, with the pool generation they were seen in
    /// (a reconnection forgets them: the broker may have been reset).
    known: Mutex<(u64, HashSet<String>)>,
}

impl Broker {
    pub fn new(pool: Arc<Pool>, metrics: Arc<Metrics>, ids: Arc<AtomicU64>) -> Arc<Broker> {
        Arc::new(Broker {
            publisher: Publisher::new(pool.clone(), metrics.clone()),
            topics: TopicHub::new(pool.clone(), ids.clone(), metrics.clone()),
            pool,
            metrics,
            ids,
            known: Mutex::new((0, HashSet::new())),
        })
    }

    fn is_known(&self, what: &str) -> bool {
        let generation = self.pool.generation();
        let mut k = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if k.0 != generation {
            *k = (generation, HashSet::new());
        }
        k.1.contains(what)
    }

    fn remember(&self, what: String) {
        let mut k = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if k.1.len() < 10_000 {
            k.1.insert(what);
        }
    }

    /// Declare durable queue `name` once, of `queue_type` (on a channel of its own: a
    /// refusal closes the channel it happens on, and the publishing channels are shared).
    pub async fn ensure_queue(
        &self,
        name: &str,
        destination: &str,
        queue_type: Option<QueueType>,
    ) -> Result<(), BackendError> {
        let key = format!("q:{name}");
        if self.is_known(&key) {
            return Ok(());
        }
        let queue = ShortString::try_new(name)
            .map_err(|_| BackendError::refused("queue name longer than 255 bytes"))?;
        let what = || format!("declaring {destination}");
        timed(what, async {
            let chan = self.pool.channel().await?;
            chan.queue_declare(
                queue,
                QueueDeclareOptions::durable(),
                declare::arguments(queue_type),
            )
            .await
            .map_err(|e| from_lapin(&e, &what()))
        })
        .await
        .map_err(|e| declare::explain(e, name, destination, queue_type))?;
        self.remember(key);
        Ok(())
    }

    /// Check that exchange `name` exists before publishing to it, for the same reason:
    /// publishing to a missing exchange closes the (shared) channel.
    pub async fn ensure_exchange(&self, name: &str, destination: &str) -> Result<(), BackendError> {
        if name.starts_with("amq.") {
            return Ok(());
        }
        let key = format!("x:{name}");
        if self.is_known(&key) {
            return Ok(());
        }
        let exchange = ShortString::try_new(name)
            .map_err(|_| BackendError::refused("exchange name longer than 255 bytes"))?;
        let what = || format!("sending to {destination}");
        timed(what, async {
            let chan = self.pool.channel().await?;
            chan.exchange_declare(
                exchange,
                ExchangeKind::Topic,
                ExchangeDeclareOptions {
                    passive: true,
                    ..ExchangeDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| from_lapin(&e, &what()))
        })
        .await?;
        self.remember(key);
        Ok(())
    }
}
