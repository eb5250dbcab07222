//! The pool's gauges and counters, resolved by the bridge that owns the pool (it picks the
//! names and labels, so each bridge keeps the series its users scrape).

use std::sync::Arc;

use metrics::{Counter, Gauge};

pub struct PoolMetrics {
    /// For logs: which service the pool belongs to.
    pub service: Arc<str>,
    /// Open AMQP connections.
    pub connections: Gauge,
    /// Open channels on them.
    pub channels: Gauge,
    /// Connections re-established after a loss.
    pub reconnects: Counter,
}
