//! The STOMP-broker backend's metrics, resolved once per service. The names are the ones
//! the RabbitMQ backend uses for the same things, so dashboards do not care which broker
//! is behind a service.

use std::sync::Arc;

use metrics::{Counter, Gauge};

use crate::metrics::StompMetrics;

pub struct Metrics {
    /// Shared upstream subscriptions (one SUBSCRIBE per topic on the shared connection).
    pub shared_subscriptions: Gauge,
    /// Local subscribers fed by them.
    pub local_subscribers: Gauge,
    /// Open broker connections: the shared one and one per session that needed its own.
    pub connections: Gauge,
    pub reconnects: Counter,
    /// The shared connection moved to another broker of the failover list.
    pub failovers: Counter,
    /// Messages the broker delivered to the gateway / the gateway sent to it (receipted).
    pub messages_in: Counter,
    pub messages_out: Counter,
    /// The bridge's own series (fan-out, deliveries, policies) for this service.
    pub stomp: Arc<StompMetrics>,
}

impl Metrics {
    pub fn new(service: &str, stomp: Arc<StompMetrics>) -> Arc<Metrics> {
        describe();
        let s = service.to_string();
        Arc::new(Metrics {
            shared_subscriptions: metrics::gauge!(
                "gateway_stomp_upstream_subscriptions", "service" => s.clone()
            ),
            local_subscribers: metrics::gauge!(
                "gateway_stomp_upstream_local_subscribers", "service" => s.clone()
            ),
            connections: metrics::gauge!("gateway_stomp_backend_connections", "service" => s.clone()),
            reconnects: metrics::counter!(
                "gateway_stomp_backend_reconnects_total", "service" => s.clone()
            ),
            failovers: metrics::counter!(
                "gateway_stomp_backend_failovers_total", "service" => s.clone()
            ),
            messages_in: metrics::counter!(
                "gateway_stomp_backend_messages_total", "service" => s.clone(), "direction" => "in"
            ),
            messages_out: metrics::counter!(
                "gateway_stomp_backend_messages_total", "service" => s, "direction" => "out"
            ),
            stomp,
        })
    }
}

fn describe() {
    crate::metrics::describe_backend();
}
