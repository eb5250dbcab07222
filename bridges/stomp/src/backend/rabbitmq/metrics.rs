//! The RabbitMQ backend's metrics, resolved once per service so the per-message cost is an
//! atomic add. Every series carries `service`.

use std::sync::Arc;

use metrics::{Counter, Gauge, Histogram};

use rabbitmq_pool::{NodeMetrics, PoolMetrics};

use crate::metrics::StompMetrics;

pub struct Metrics {
    /// Open AMQP connections (pooled, or one per client with pass-through credentials),
    /// their channels and reconnections, as the pool counts them.
    pub pool: Arc<PoolMetrics>,
    /// Shared upstream subscriptions (one queue + consumer per topic pattern).
    pub upstream_subscriptions: Gauge,
    /// Local subscribers attached to the shared upstream subscriptions.
    pub local_subscribers: Gauge,
    pub confirm_seconds: Histogram,
    /// Messages the broker delivered to the gateway.
    pub messages_in: Counter,
    /// Messages the gateway published to the broker (confirmed).
    pub messages_out: Counter,
    /// The bridge's own series (fan-out, deliveries, policies) for this service.
    pub stomp: Arc<StompMetrics>,
    /// Times a shared subscription lost its upstream (broker outage) and how long until
    /// it was re-established: messages published meanwhile were not seen.
    pub upstream_gaps: Counter,
    pub upstream_gap_seconds: Histogram,
}

impl Metrics {
    pub fn new(service: &str, stomp: Arc<StompMetrics>) -> Arc<Metrics> {
        describe();
        let s = service.to_string();
        Arc::new(Metrics {
            pool: Arc::new(PoolMetrics {
                service: service.into(),
                connections: metrics::gauge!("gateway_stomp_backend_connections", "service" => s.clone()),
                channels: metrics::gauge!("gateway_stomp_backend_channels", "service" => s.clone()),
                reconnects: metrics::counter!(
                    "gateway_stomp_backend_reconnects_total", "service" => s.clone()
                ),
                node: Box::new({
                    let s = s.clone();
                    move |node: &str| NodeMetrics {
                        connections: metrics::gauge!(
                            "gateway_stomp_backend_node_connections",
                            "service" => s.clone(), "node" => node.to_string()
                        ),
                        reconnects: metrics::counter!(
                            "gateway_stomp_backend_node_reconnects_total",
                            "service" => s.clone(), "node" => node.to_string()
                        ),
                    }
                }),
            }),
            upstream_subscriptions: metrics::gauge!(
                "gateway_stomp_upstream_subscriptions", "service" => s.clone()
            ),
            local_subscribers: metrics::gauge!(
                "gateway_stomp_upstream_local_subscribers", "service" => s.clone()
            ),
            confirm_seconds: metrics::histogram!(
                "gateway_stomp_broker_confirm_seconds", "service" => s.clone()
            ),
            messages_in: metrics::counter!(
                "gateway_stomp_backend_messages_total", "service" => s.clone(), "direction" => "in"
            ),
            messages_out: metrics::counter!(
                "gateway_stomp_backend_messages_total", "service" => s.clone(), "direction" => "out"
            ),
            stomp,
            upstream_gaps: metrics::counter!(
                "gateway_stomp_upstream_gaps_total", "service" => s.clone()
            ),
            upstream_gap_seconds: metrics::histogram!(
                "gateway_stomp_upstream_gap_seconds", "service" => s
            ),
        })
    }

    /// Not on a hot path: failures are counted by reason as they happen.
    pub fn publish_failure(&self, reason: &'static str) {
        metrics::counter!(
            "gateway_stomp_publish_failures_total",
            "service" => self.pool.service.to_string(),
            "reason" => reason
        )
        .increment(1);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    crate::metrics::describe_backend();
    describe_gauge!(
        "gateway_stomp_backend_channels",
        "Open AMQP channels on the backend connections"
    );
    describe_gauge!(
        "gateway_stomp_backend_node_connections",
        "Open pooled AMQP connections on each RabbitMQ node"
    );
    describe_counter!(
        "gateway_stomp_backend_node_reconnects_total",
        "Pooled AMQP connections re-established on each RabbitMQ node after a loss"
    );
    describe_histogram!(
        "gateway_stomp_broker_confirm_seconds",
        Unit::Seconds,
        "Time from publishing to the broker's publisher confirm"
    );
    describe_counter!(
        "gateway_stomp_publish_failures_total",
        "SENDs the broker did not confirm, by reason"
    );
    describe_counter!(
        "gateway_stomp_upstream_gaps_total",
        "Shared subscriptions interrupted by a broker outage"
    );
    describe_histogram!(
        "gateway_stomp_upstream_gap_seconds",
        Unit::Seconds,
        "How long shared subscriptions were interrupted before re-subscribing"
    );
}
