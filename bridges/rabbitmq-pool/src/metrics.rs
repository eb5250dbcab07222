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
    /// The same per broker node (`host:port`), resolved once per node when a pool is made.
    pub node: Box<dyn Fn(&str) -> NodeMetrics + Send + Sync>,
}

/// One broker node's share of a pool: which node each connection is on, and where the
/// connections went after a loss.
#[derive(Clone)]
pub struct NodeMetrics {
    pub connections: Gauge,
    /// Connections re-established on this node after a loss (on this node or another).
    pub reconnects: Counter,
}
