//! The bridges' background work over the gateway's life: started once the services are
//! built (building is pure, so `--check-config` starts nothing), stopped after the sessions
//! have drained, and waited for, so broker connections are closed politely, not dropped
//! with the runtime.

use std::time::Duration;

use crate::services::{Retired, ServiceTable};

pub fn start(services: &ServiceTable) {
    services.start_new();
}

/// Fire every service's shutdown, and that of bridges a reload retired, and wait up to
/// `deadline` for their tasks. Each one's outcome is counted in
/// `gateway_bridge_stops_total{service,result}` (`clean` or `timeout`).
pub async fn stop(services: &ServiceTable, retired: Vec<Retired>, deadline: Duration) {
    let all: Vec<Retired> = services
        .all()
        .iter()
        .map(|s| s.instance.retired())
        // A retired bridge whose sessions are long gone has stopped already.
        .chain(retired.into_iter().filter(|r| !r.is_done()))
        .collect();
    for s in &all {
        s.background.stop();
    }
    let waits = all.iter().map(|s| async move {
        let clean = tokio::time::timeout(deadline, s.background.stopped())
            .await
            .is_ok();
        let result = if clean { "clean" } else { "timeout" };
        metrics::counter!("gateway_bridge_stops_total", "service" => s.name.to_string(), "result" => result)
            .increment(1);
        if clean {
            tracing::debug!(service = %s.name, "background work stopped");
        } else {
            tracing::warn!(
                service = %s.name,
                "{} background tasks still running after {deadline:?}; exiting anyway",
                s.background.running()
            );
        }
    });
    futures::future::join_all(waits).await;
}
