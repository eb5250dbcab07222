//! The STOMP bridge's metrics, one set per service (every series carries `service`). Names
//! start with `gateway_stomp_`. Handles are resolved when the service is built, so counting
//! a frame or a delivery is an atomic add, not a label lookup.

use std::sync::{Arc, Mutex};

use metrics::{Counter, Gauge};
use protocol_stomp::{Command, Version};

pub(crate) struct StompMetrics {
    service: Arc<str>,
    frames_in: Vec<Counter>,
    frames_out: Vec<Counter>,
    /// ERROR reasons are a closed set of `&'static str`s spread over the session's code:
    /// each is resolved the first time it is used.
    error_frames: Mutex<Vec<(&'static str, Counter)>>,
    published_topic: Counter,
    published_queue: Counter,
    fanout_topic: Counter,
    fanout_queue: Counter,
    delivered: Counter,
    slow_disconnect: Counter,
    slow_drop_oldest: Counter,
    slow_conflate: Counter,
    subscriptions: Gauge,
    sessions: [Gauge; 3],
    topic_patterns: Gauge,
    queues: Gauge,
    queue_depth: Gauge,
}

fn version_index(v: Version) -> usize {
    match v {
        Version::V1_0 => 0,
        Version::V1_1 => 1,
        Version::V1_2 => 2,
    }
}

impl StompMetrics {
    pub(crate) fn new(service: &str) -> Arc<StompMetrics> {
        describe();
        let s: Arc<str> = service.into();
        let counter = |name: &'static str, key: &'static str, value: &'static str| metrics::counter!(name, "service" => s.to_string(), key => value);
        let frames = |name: &'static str| {
            Command::ALL
                .iter()
                .map(|c| counter(name, "command", c.as_str()))
                .collect()
        };
        let gauge = |name: &'static str, key: &'static str, value: &'static str| metrics::gauge!(name, "service" => s.to_string(), key => value);
        Arc::new(StompMetrics {
            frames_in: frames("gateway_stomp_frames_in_total"),
            frames_out: frames("gateway_stomp_frames_out_total"),
            error_frames: Mutex::new(Vec::new()),
            published_topic: counter("gateway_stomp_messages_published_total", "kind", "topic"),
            published_queue: counter("gateway_stomp_messages_published_total", "kind", "queue"),
            fanout_topic: counter("gateway_stomp_fanout_deliveries_total", "kind", "topic"),
            fanout_queue: counter("gateway_stomp_fanout_deliveries_total", "kind", "queue"),
            delivered: metrics::counter!("gateway_stomp_messages_delivered_total", "service" => s.to_string()),
            slow_disconnect: counter(
                "gateway_stomp_slow_consumer_events_total",
                "policy",
                "disconnect",
            ),
            slow_drop_oldest: counter(
                "gateway_stomp_slow_consumer_events_total",
                "policy",
                "drop-oldest",
            ),
            slow_conflate: counter(
                "gateway_stomp_slow_consumer_events_total",
                "policy",
                "conflate",
            ),
            subscriptions: metrics::gauge!("gateway_stomp_subscriptions", "service" => s.to_string()),
            sessions: ["1.0", "1.1", "1.2"].map(|v| gauge("gateway_stomp_sessions", "version", v)),
            topic_patterns: gauge("gateway_stomp_destinations", "kind", "topic_pattern"),
            queues: gauge("gateway_stomp_destinations", "kind", "queue"),
            queue_depth: metrics::gauge!("gateway_stomp_queue_depth", "service" => s.to_string()),
            service: s,
        })
    }

    /// A topic message reached `deliveries` subscribers; a queue message, one consumer.
    pub(crate) fn service(&self) -> &str {
        &self.service
    }

    pub(crate) fn published(&self, kind: &'static str, deliveries: u64) {
        let (published, fanout) = if kind == "queue" {
            (&self.published_queue, &self.fanout_queue)
        } else {
            (&self.published_topic, &self.fanout_topic)
        };
        published.increment(1);
        if deliveries > 0 {
            fanout.increment(deliveries);
        }
    }

    pub(crate) fn slow_consumer(&self, policy: &'static str) {
        match policy {
            "disconnect" => &self.slow_disconnect,
            "drop-oldest" => &self.slow_drop_oldest,
            _ => &self.slow_conflate,
        }
        .increment(1);
    }

    pub(crate) fn frame_in(&self, cmd: Command) {
        self.frames_in[cmd as usize].increment(1);
    }

    pub(crate) fn frame_out(&self, cmd: Command, n: u64) {
        self.frames_out[cmd as usize].increment(n);
    }

    pub(crate) fn error_frame(&self, reason: &'static str) {
        let mut known = self.error_frames.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, c)) = known.iter().find(|(r, _)| *r == reason) {
            c.increment(1);
            return;
        }
        let c = metrics::counter!("gateway_stomp_error_frames_total", "service" => self.service.to_string(), "reason" => reason);
        c.increment(1);
        known.push((reason, c));
    }

    /// MESSAGE frames handed to clients (queued for their sockets).
    pub(crate) fn delivered(&self, n: u64) {
        self.delivered.increment(n);
        self.frame_out(Command::Message, n);
    }

    pub(crate) fn subscriptions(&self, delta: f64) {
        self.subscriptions.increment(delta);
    }

    pub(crate) fn session_opened(&self, version: Version) {
        self.sessions[version_index(version)].increment(1.0);
    }

    pub(crate) fn session_closed(&self, version: Version, subscriptions_left: usize) {
        self.sessions[version_index(version)].decrement(1.0);
        self.subscriptions.decrement(subscriptions_left as f64);
    }

    pub(crate) fn broker_gauges(&self, topic_patterns: usize, queues: usize, depth: usize) {
        self.topic_patterns.set(topic_patterns as f64);
        self.queues.set(queues as f64);
        self.queue_depth.set(depth as f64);
    }
}

/// The series every broker backend (RabbitMQ, STOMP broker) reports, one help text each.
pub(crate) fn describe_backend() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "gateway_stomp_backend_connections",
        "Open connections to the broker (pooled, or one per client with pass-through credentials)"
    );
    describe_gauge!(
        "gateway_stomp_upstream_subscriptions",
        "Shared upstream subscriptions (one broker subscription per topic, fanned out to local subscribers)"
    );
    describe_gauge!(
        "gateway_stomp_upstream_local_subscribers",
        "Local subscribers fed by the shared upstream subscriptions"
    );
    describe_counter!(
        "gateway_stomp_backend_reconnects_total",
        "Backend connections re-established after a loss"
    );
    describe_counter!(
        "gateway_stomp_backend_failovers_total",
        "Times the STOMP-broker backend's shared connection moved to another broker of its failover list"
    );
    describe_counter!(
        "gateway_stomp_backend_messages_total",
        "Messages between the gateway and the broker, by direction (in: delivered to the gateway)"
    );
}

fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_gauge!(
        "gateway_stomp_sessions",
        "Connected STOMP sessions by protocol version"
    );
    describe_gauge!("gateway_stomp_subscriptions", "Active STOMP subscriptions");
    describe_gauge!(
        "gateway_stomp_destinations",
        "Embedded broker destinations by kind (topic patterns, queues)"
    );
    describe_gauge!(
        "gateway_stomp_queue_depth",
        "Messages waiting in embedded broker queues"
    );
    describe_counter!(
        "gateway_stomp_frames_in_total",
        "STOMP frames from clients by command"
    );
    describe_counter!(
        "gateway_stomp_frames_out_total",
        "STOMP frames to clients by command"
    );
    describe_counter!(
        "gateway_stomp_error_frames_total",
        "ERROR frames sent, by reason"
    );
    describe_counter!(
        "gateway_stomp_messages_published_total",
        "Messages published, by destination kind"
    );
    describe_counter!(
        "gateway_stomp_fanout_deliveries_total",
        "Topic deliveries queued for subscribers"
    );
    describe_counter!(
        "gateway_stomp_messages_delivered_total",
        "MESSAGE frames handed to clients (for ack:auto topic subscriptions: queued for the client's socket)"
    );
    describe_counter!(
        "gateway_stomp_slow_consumer_events_total",
        "Slow-consumer policy actions, by policy"
    );
}
