//! A stream's own series: what it holds (so its memory is visible) and how clients used it.

use metrics::{Counter, Gauge};

use super::history::History;
use super::last_values::LastValues;

pub struct StreamMetrics {
    history_messages: Gauge,
    history_bytes: Gauge,
    snapshot_keys: Gauge,
    snapshot_bytes: Gauge,
    pub keys_evicted: Counter,
    pub snapshots: Counter,
    pub resumes_ok: Counter,
    pub resumes_reset: Counter,
    pub epochs: Counter,
}

impl StreamMetrics {
    pub fn new(service: &str, stream: &str) -> StreamMetrics {
        let labels = [
            ("service", service.to_string()),
            ("stream", stream.to_string()),
        ];
        let retained = |kind: &'static str, unit: &'static str| {
            let mut l = labels.to_vec();
            l.push(("kind", kind.to_string()));
            metrics::gauge!(unit, &l)
        };
        let resumes = |result: &'static str| {
            let mut l = labels.to_vec();
            l.push(("result", result.to_string()));
            metrics::counter!("gateway_stomp_stream_resumes_total", &l)
        };
        StreamMetrics {
            history_messages: retained("history", "gateway_stomp_stream_retained_messages"),
            history_bytes: retained("history", "gateway_stomp_stream_retained_bytes"),
            snapshot_keys: retained("snapshot", "gateway_stomp_stream_retained_messages"),
            snapshot_bytes: retained("snapshot", "gateway_stomp_stream_retained_bytes"),
            keys_evicted: metrics::counter!("gateway_stomp_stream_keys_evicted_total", &labels),
            snapshots: metrics::counter!("gateway_stomp_stream_snapshots_total", &labels),
            resumes_ok: resumes("ok"),
            resumes_reset: resumes("reset"),
            epochs: metrics::counter!("gateway_stomp_stream_epochs_total", &labels),
        }
    }

    pub fn retained(&self, history: &History, last: &LastValues) {
        self.history_messages.set(history.len() as f64);
        self.history_bytes.set(history.bytes() as f64);
        self.snapshot_keys.set(last.len() as f64);
        self.snapshot_bytes.set(last.bytes() as f64);
    }
}

pub fn describe() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_gauge!(
        "gateway_stomp_stream_retained_messages",
        "Messages a stream keeps: kind=history for resume, kind=snapshot (one per key) for snapshots"
    );
    describe_gauge!(
        "gateway_stomp_stream_retained_bytes",
        Unit::Bytes,
        "Memory held by a stream's kept messages, by kind (history and snapshot share messages)"
    );
    describe_counter!(
        "gateway_stomp_stream_keys_evicted_total",
        "Snapshot keys dropped because a stream held snapshot_keys already"
    );
    describe_counter!(
        "gateway_stomp_stream_snapshots_total",
        "Snapshots given to joining subscriptions"
    );
    describe_counter!(
        "gateway_stomp_stream_resumes_total",
        "Resume requests: result=ok (caught up from history) or reset (given the snapshot)"
    );
    describe_counter!(
        "gateway_stomp_stream_epochs_total",
        "Times a stream's history was lost and a new epoch began"
    );
}
