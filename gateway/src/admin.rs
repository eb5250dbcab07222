//! The admin listener: Prometheus metrics, kept off the public port.

use std::net::SocketAddr;

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::response::text;

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

fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
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

pub async fn serve(listener: TcpListener, handle: PrometheusHandle, shutdown: CancellationToken) {
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let handle = handle.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let handle = handle.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(match (req.method(), req.uri().path()) {
                        (&Method::GET, "/metrics") => {
                            let mut resp = text(StatusCode::OK, handle.render());
                            resp.headers_mut().insert(
                                http::header::CONTENT_TYPE,
                                http::HeaderValue::from_static("text/plain; version=0.0.4"),
                            );
                            resp
                        }
                        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
                        _ => text(StatusCode::NOT_FOUND, "not found\n"),
                    })
                }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

/// Where the exporter listens, for the start-up log line.
pub fn describe_listen(addr: SocketAddr) -> String {
    format!("http://{addr}/metrics")
}
