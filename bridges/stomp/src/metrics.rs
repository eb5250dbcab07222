//! The STOMP bridge's metrics. Names start with `gateway_stomp_`.

use protocol_stomp::Command;

pub fn published(kind: &'static str, deliveries: u64) {
    metrics::counter!("gateway_stomp_messages_published_total", "kind" => kind).increment(1);
    if deliveries > 0 {
        metrics::counter!("gateway_stomp_fanout_deliveries_total", "kind" => kind)
            .increment(deliveries);
    }
}

pub fn slow_consumer(policy: &'static str) {
    metrics::counter!("gateway_stomp_slow_consumer_events_total", "policy" => policy).increment(1);
}

pub fn frame_in(cmd: Command) {
    metrics::counter!("gateway_stomp_frames_in_total", "command" => cmd.as_str()).increment(1);
}

pub fn frame_out(cmd: &'static str, n: u64) {
    metrics::counter!("gateway_stomp_frames_out_total", "command" => cmd).increment(n);
}

pub fn error_frame(reason: &'static str) {
    metrics::counter!("gateway_stomp_error_frames_total", "reason" => reason).increment(1);
}

pub fn describe() {
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

pub fn delivered(n: u64) {
    metrics::counter!("gateway_stomp_messages_delivered_total").increment(n);
    frame_out("MESSAGE", n);
}

pub fn subscriptions(delta: f64) {
    metrics::gauge!("gateway_stomp_subscriptions").increment(delta);
}

pub fn session_opened(version: protocol_stomp::Version) {
    metrics::gauge!("gateway_stomp_sessions", "version" => version.as_str()).increment(1.0);
}

pub fn session_closed(version: protocol_stomp::Version, subscriptions_left: usize) {
    metrics::gauge!("gateway_stomp_sessions", "version" => version.as_str()).decrement(1.0);
    metrics::gauge!("gateway_stomp_subscriptions").decrement(subscriptions_left as f64);
}

pub fn broker_gauges(topic_patterns: usize, queues: usize, depth: usize) {
    metrics::gauge!("gateway_stomp_destinations", "kind" => "topic_pattern")
        .set(topic_patterns as f64);
    metrics::gauge!("gateway_stomp_destinations", "kind" => "queue").set(queues as f64);
    metrics::gauge!("gateway_stomp_queue_depth").set(depth as f64);
}
