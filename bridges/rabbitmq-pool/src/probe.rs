//! Readiness of a broker when each client logs in as itself (pass-through credentials):
//! there is no shared connection to watch, so the gateway checks that the broker's port
//! (a port of one of its nodes) accepts connections.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Every 2 s until `stop`: connect to `addr` and keep the answer in `reachable`.
pub async fn probe(
    broker: &'static str,
    addr: String,
    reachable: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    probe_any(broker, vec![addr], reachable, stop).await
}

/// [`probe`] for a cluster: `reachable` while one of the nodes at `addrs` answers.
pub async fn probe_any(
    broker: &'static str,
    addrs: Vec<String>,
    reachable: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let mut ok = false;
        for addr in &addrs {
            ok = matches!(
                tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr))
                    .await,
                Ok(Ok(_))
            );
            if ok {
                break;
            }
        }
        if reachable.swap(ok, Ordering::Relaxed) != ok {
            tracing::info!(broker = %addrs.join(", "), reachable = ok, "{broker} reachability changed");
        }
    }
}
