//! The bridge's series, every one labelled with its service.

use std::sync::Arc;

use metrics::{Counter, Gauge};
use rabbitmq_pool::{NodeMetrics, PoolMetrics};

pub struct AmqpMetrics {
    service: String,
    pub pool: Arc<PoolMetrics>,
    pub sessions: Gauge,
    pub channels: Gauge,
    pub publishes: Counter,
    pub deliveries: Counter,
    pub returns: Counter,
    pub confirms_ack: Counter,
    pub confirms_nack: Counter,
    pub acks: Counter,
    pub nacks: Counter,
    pub rejects: Counter,
    pub logins_refused: Counter,
    /// By class, resolved once: methods are counted on the hot path.
    methods_in: Vec<Counter>,
    methods_out: Vec<Counter>,
}

const CLASSES: [&str; 9] = [
    "connection",
    "channel",
    "access",
    "exchange",
    "queue",
    "basic",
    "confirm",
    "tx",
    "unknown",
];

/// A method class's index in [`CLASSES`].
fn class_index(class_id: u16) -> usize {
    match class_id {
        10 => 0,
        20 => 1,
        30 => 2,
        40 => 3,
        50 => 4,
        60 => 5,
        85 => 6,
        90 => 7,
        _ => 8,
    }
}

impl AmqpMetrics {
    pub fn new(service: &str) -> Arc<AmqpMetrics> {
        describe();
        let s = service.to_string();
        Arc::new(AmqpMetrics {
            pool: Arc::new(PoolMetrics {
                service: service.into(),
                connections: metrics::gauge!("gateway_amqp_backend_connections", "service" => s.clone()),
                channels: metrics::gauge!("gateway_amqp_backend_channels", "service" => s.clone()),
                reconnects: metrics::counter!("gateway_amqp_backend_reconnects_total", "service" => s.clone()),
                node: Box::new({
                    let s = s.clone();
                    move |node: &str| NodeMetrics {
                        connections: metrics::gauge!(
                            "gateway_amqp_backend_node_connections",
                            "service" => s.clone(), "node" => node.to_string()
                        ),
                        reconnects: metrics::counter!(
                            "gateway_amqp_backend_node_reconnects_total",
                            "service" => s.clone(), "node" => node.to_string()
                        ),
                    }
                }),
            }),
            sessions: metrics::gauge!("gateway_amqp_sessions", "service" => s.clone()),
            channels: metrics::gauge!("gateway_amqp_channels", "service" => s.clone()),
            publishes: metrics::counter!("gateway_amqp_publishes_total", "service" => s.clone()),
            deliveries: metrics::counter!("gateway_amqp_deliveries_total", "service" => s.clone()),
            returns: metrics::counter!("gateway_amqp_returns_total", "service" => s.clone()),
            confirms_ack: metrics::counter!("gateway_amqp_confirms_total", "service" => s.clone(), "result" => "ack"),
            confirms_nack: metrics::counter!("gateway_amqp_confirms_total", "service" => s.clone(), "result" => "nack"),
            acks: metrics::counter!("gateway_amqp_acks_total", "service" => s.clone(), "kind" => "ack"),
            nacks: metrics::counter!("gateway_amqp_acks_total", "service" => s.clone(), "kind" => "nack"),
            rejects: metrics::counter!("gateway_amqp_acks_total", "service" => s.clone(), "kind" => "reject"),
            logins_refused: metrics::counter!("gateway_amqp_logins_refused_total", "service" => s.clone()),
            methods_in: CLASSES
                .iter()
                .map(|c| metrics::counter!("gateway_amqp_methods_in_total", "service" => s.clone(), "class" => *c))
                .collect(),
            methods_out: CLASSES
                .iter()
                .map(|c| metrics::counter!("gateway_amqp_methods_out_total", "service" => s.clone(), "class" => *c))
                .collect(),
            service: s,
        })
    }

    pub fn method_in(&self, class_id: u16) {
        self.methods_in[class_index(class_id)].increment(1);
    }

    pub fn method_out(&self, class_id: u16) {
        self.methods_out[class_index(class_id)].increment(1);
    }

    pub fn channel_exception(&self, code: u16) {
        metrics::counter!("gateway_amqp_channel_exceptions_total", "service" => self.service.clone(), "code" => code.to_string()).increment(1);
    }

    pub fn connection_exception(&self, code: u16) {
        metrics::counter!("gateway_amqp_connection_exceptions_total", "service" => self.service.clone(), "code" => code.to_string()).increment(1);
    }
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "gateway_amqp_sessions",
        "AMQP 0-9-1 sessions past the handshake"
    );
    describe_gauge!(
        "gateway_amqp_channels",
        "Client channels open, each on a pooled broker channel"
    );
    describe_gauge!("gateway_amqp_backend_connections", "Open AMQP connections to RabbitMQ (the pool, or one per client with pass-through credentials)");
    describe_gauge!(
        "gateway_amqp_backend_node_connections",
        "Open AMQP connections to RabbitMQ, by node"
    );
    describe_counter!(
        "gateway_amqp_backend_node_reconnects_total",
        "AMQP connections re-established on each RabbitMQ node after a loss"
    );
    describe_gauge!(
        "gateway_amqp_backend_channels",
        "Open channels on the broker connections"
    );
    describe_counter!(
        "gateway_amqp_backend_reconnects_total",
        "Broker connections re-established after a loss"
    );
    describe_counter!(
        "gateway_amqp_methods_in_total",
        "Methods received from clients, by class"
    );
    describe_counter!(
        "gateway_amqp_methods_out_total",
        "Methods sent to clients, by class"
    );
    describe_counter!(
        "gateway_amqp_publishes_total",
        "basic.publish relayed to the broker"
    );
    describe_counter!(
        "gateway_amqp_deliveries_total",
        "Messages delivered to clients (basic.deliver and basic.get-ok)"
    );
    describe_counter!(
        "gateway_amqp_returns_total",
        "Unroutable mandatory messages returned to clients"
    );
    describe_counter!(
        "gateway_amqp_confirms_total",
        "Publisher confirms relayed to clients, by result"
    );
    describe_counter!(
        "gateway_amqp_acks_total",
        "Client acknowledgements relayed, by kind (ack, nack, reject)"
    );
    describe_counter!(
        "gateway_amqp_channel_exceptions_total",
        "Channels closed on clients, by reply code"
    );
    describe_counter!(
        "gateway_amqp_connection_exceptions_total",
        "Client connections closed with an error, by reply code"
    );
    describe_counter!("gateway_amqp_logins_refused_total", "SASL logins refused");
}
