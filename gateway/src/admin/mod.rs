//! The admin listener, kept off the public port: Prometheus `/metrics`, health, and the
//! admin API under `/api/` (sessions, drain, reload, effective configuration), which a bearer
//! token from `[admin]` opens. Its contract is `gateway/admin-openapi.yaml`, served at
//! `/api/openapi.yaml`.

mod auth;
mod body;
pub(crate) mod config;
mod drain;
mod filter;
mod info;
mod metrics;
mod query;
mod reload;
mod reply;
mod router;
mod sessions;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::state::AppState;

pub use auth::AdminToken;
pub use metrics::{install_metrics, set_info, MetricsError};

/// Everything the admin endpoints read.
pub struct AdminApi {
    state: Arc<AppState>,
    metrics: PrometheusHandle,
    /// `None`: the API is off and `/api/...` says how to turn it on.
    token: Option<AdminToken>,
    started_at: SystemTime,
    started: Instant,
}

impl AdminApi {
    pub fn new(
        state: Arc<AppState>,
        metrics: PrometheusHandle,
        token: Option<AdminToken>,
    ) -> Arc<Self> {
        Arc::new(AdminApi {
            state,
            metrics,
            token,
            started_at: SystemTime::now(),
            started: Instant::now(),
        })
    }
}

/// How long a request may take to send its head: the admin port is private, but a stuck
/// client should still not hold a connection for ever.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long, once `shutdown` fires, requests in flight get to be answered: a drain asked
/// for through the API must still see its 202.
const FINISH_GRACE: Duration = Duration::from_secs(2);

pub async fn serve(listener: TcpListener, api: Arc<AdminApi>, shutdown: CancellationToken) {
    let connections = TaskTracker::new();
    loop {
        let (tcp, _) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let api = api.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let service = service_fn(move |req| {
                let api = api.clone();
                async move { Ok::<_, std::convert::Infallible>(router::route(&api, req).await) }
            });
            let conn = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), service);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => return,
                _ = shutdown.cancelled() => {}
            }
            // Finish the request in flight, then close instead of keeping the connection.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    connections.close();
    if tokio::time::timeout(FINISH_GRACE, connections.wait())
        .await
        .is_err()
    {
        tracing::debug!("admin requests still open at exit");
    }
}

/// Where the admin listener serves, for the start-up log line.
pub fn describe_listen(addr: SocketAddr, api_on: bool) -> String {
    if api_on {
        format!("http://{addr}/metrics, admin API at http://{addr}/api/")
    } else {
        format!("http://{addr}/metrics (admin API off: no admin.token)")
    }
}
