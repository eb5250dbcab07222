//! The Prometheus recorder and `/metrics`.

use http::StatusCode;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};

use crate::response::{text, Body};

/// The Prometheus recorder could not be set up (bad buckets, or a recorder already installed).
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct MetricsError(#[from] BuildError);

/// Install the global recorder and describe the core metrics.
pub fn install_metrics() -> Result<PrometheusHandle, MetricsError> {
    let seconds = [
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ];
    let durations = [1.0, 5.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0, 86400.0];
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("gateway_session_duration_seconds".into()),
            &durations,
        )
        .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), &seconds))?
        .install_recorder()?;
    describe();
    Ok(handle)
}

/// `gateway_info{node,version} 1`: which gateway this is, so a dashboard can join its
/// series to a node without every series carrying a `node` label (scrapes add `instance`).
pub fn set_info(node: &str) {
    metrics::gauge!(
        "gateway_info",
        "node" => node.to_string(),
        "version" => env!("CARGO_PKG_VERSION"),
    )
    .set(1.0);
}

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
    describe_gauge!(
        "gateway_info",
        "Always 1: this gateway's node name (server.node) and version"
    );
    describe_gauge!(
        "gateway_sessions_active",
        "Live sessions by service and subprotocol"
    );
    describe_gauge!(
        "gateway_connections_open",
        "Open client connections (HTTP and WebSocket)"
    );
    describe_counter!(
        "gateway_bridge_stops_total",
        "Services whose background work (broker connections, probes) stopped at shutdown, by result (clean, timeout)"
    );
    describe_counter!(
        "gateway_proxy_headers_total",
        "PROXY protocol headers from server.proxy_protocol peers by result (v1, v2, local, invalid, closed, timeout)"
    );
    describe_counter!(
        "gateway_handshakes_total",
        "WebSocket handshakes by service and result"
    );
    describe_counter!(
        "gateway_messages_in_total",
        "Messages received from clients"
    );
    describe_counter!("gateway_messages_out_total", "Messages sent to clients");
    describe_counter!(
        "gateway_bytes_in_total",
        Unit::Bytes,
        "Payload bytes received from clients"
    );
    describe_counter!(
        "gateway_bytes_out_total",
        Unit::Bytes,
        "Payload bytes sent to clients"
    );
    describe_histogram!(
        "gateway_session_duration_seconds",
        Unit::Seconds,
        "Session lifetimes"
    );
    describe_counter!(
        "gateway_limit_trips_total",
        "Times a configured limit refused or ended something"
    );
    describe_histogram!(
        "gateway_tcp_connect_seconds",
        Unit::Seconds,
        "TCP bridge connect time to its target"
    );
    describe_counter!(
        "gateway_tcp_connect_failures_total",
        "TCP bridge connects that failed"
    );
}

/// `GET /metrics`: the text exposition format Prometheus scrapes.
pub fn render(handle: &PrometheusHandle) -> http::Response<Body> {
    let mut resp = text(StatusCode::OK, handle.render());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    resp
}
