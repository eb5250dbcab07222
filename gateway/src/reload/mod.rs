//! Configuration reload without dropping sessions (SIGHUP, the admin API): the new file is
//! loaded and checked exactly as at start-up (`run::prepare`); refused, nothing changes.
//! Accepted, it becomes the one new [`Live`] snapshot that later connections and requests
//! take, while sessions already open keep what they hold: their bridge, their limits,
//! their TLS session. Bridges whose settings are unchanged carry over with their broker
//! connections; a replaced one serves its old sessions until they end. The new realm then
//! ends the sessions whose user it removed or re-roled.

mod credentials;
mod diff;
mod hooks;
mod realm;
mod report;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub use credentials::CurrentAuth;
pub use hooks::Hooks;
pub use report::answer;
pub use report::{ReloadError, ReloadReport};

use crate::run::Prepared;
use crate::state::{AppState, Live};

/// Load `path` (as start-up did: the file, then `GATEWAY__...` overrides) and put it in
/// force, or refuse it with the failing key and keep the current configuration. Logged
/// and counted either way.
pub async fn reload(state: &AppState, path: Option<&Path>) -> Result<ReloadReport, ReloadError> {
    let _one_at_a_time = state.reloading.lock().await;
    let started = Instant::now();
    let result = if state.is_draining() {
        Err(ReloadError {
            key: None,
            message: "the gateway is shutting down".into(),
        })
    } else {
        let path = path.map(Path::to_path_buf);
        let credentials = state.credentials.clone();
        // Reading key files and hashing the realm's stand-in password take a while.
        match tokio::task::spawn_blocking(move || {
            crate::run::prepare(path.as_deref(), &credentials)
        })
        .await
        {
            Ok(Ok(prepared)) => Ok(apply(state, prepared)),
            Ok(Err(e)) => Err(ReloadError::from(e)),
            Err(e) => Err(ReloadError {
                key: None,
                message: format!("the reload task failed: {e}"),
            }),
        }
    };
    record(&result, started);
    result
}

fn apply(state: &AppState, prepared: Prepared) -> ReloadReport {
    let Prepared {
        mut config,
        services,
        auth,
        tls,
        // The admin API keeps the token it started with (`admin` needs a restart).
        admin_token: _,
    } = prepared;
    let old = state.live();
    let (restart_required, applied): (Vec<String>, Vec<String>) =
        diff::changed_keys(&old.config, &config)
            .into_iter()
            .partition(|k| diff::needs_restart(k));
    diff::keep_restart_only(&old.config, &mut config);
    let (services, changes, retired) = services.carry_over(&old.services);
    drop(old);
    // Started before they take sessions; a bridge that connects to a broker is unready
    // (503) for new handshakes until it has.
    services.start_new();
    let new_auth = auth.clone();
    let replaced = state.install(Live::new(config, services, auth, tls), retired);
    let sessions_revoked = state
        .live_sessions
        .revoke_where(|p| realm::verdict(&replaced.auth, &new_auth, p));
    recheck_later(state, replaced.auth.clone());
    state.reload_hooks.run(&state.live().config);
    ReloadReport {
        applied,
        restart_required,
        services: changes,
        sessions_revoked,
    }
}

/// A handshake admitted under the old realm just before the swap registers its session
/// a moment later, after the sweep above: sweep once more when any such handshake is done,
/// against whatever realm is current then.
fn recheck_later(state: &AppState, old: std::sync::Arc<crate::auth::Authenticator>) {
    const AFTER: std::time::Duration = std::time::Duration::from_secs(2);
    let sessions = state.live_sessions.clone();
    let current = state.credentials.clone();
    tokio::spawn(async move {
        tokio::time::sleep(AFTER).await;
        if let Some(now) = current.get() {
            let late = sessions.revoke_where(|p| realm::verdict(&old, &now, p));
            if late > 0 {
                tracing::info!(
                    sessions_revoked = late,
                    "late logins under the replaced realm ended"
                );
            }
        }
    });
}

fn record(result: &Result<ReloadReport, ReloadError>, started: Instant) {
    let took = started.elapsed();
    match result {
        Ok(r) => {
            metrics::counter!("gateway_config_reloads_total", "result" => "ok").increment(1);
            metrics::gauge!("gateway_config_last_reload_successful").set(1.0);
            metrics::gauge!("gateway_config_last_reload_success_timestamp_seconds").set(now());
            let s = &r.services;
            tracing::info!(
                applied = ?r.applied,
                services_rebuilt = ?s.rebuilt,
                services_updated = ?s.updated,
                services_added = ?s.added,
                services_removed = ?s.removed,
                sessions_revoked = r.sessions_revoked,
                "configuration reloaded in {took:?}"
            );
            if !r.restart_required.is_empty() {
                tracing::warn!(
                    keys = ?r.restart_required,
                    "configuration reloaded, but these changes need a restart; their old values stay in force"
                );
            }
        }
        Err(e) => {
            metrics::counter!("gateway_config_reloads_total", "result" => "error").increment(1);
            metrics::gauge!("gateway_config_last_reload_successful").set(0.0);
            tracing::error!(
                key = e.key.as_deref().unwrap_or("-"),
                "configuration reload refused, the previous configuration stays in force: {e}"
            );
        }
    }
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Describe the reload metrics and count the start-up configuration as the first success,
/// so an alert on a failed reload has series from the start.
pub fn init_metrics() {
    use metrics::{describe_counter, describe_gauge, Unit};
    describe_counter!(
        "gateway_config_reloads_total",
        "Configuration reloads (SIGHUP, admin API) by result (ok, error)"
    );
    describe_gauge!(
        "gateway_config_last_reload_successful",
        "1 when the last configuration reload (or the start-up) succeeded, 0 when it was refused"
    );
    describe_gauge!(
        "gateway_config_last_reload_success_timestamp_seconds",
        Unit::Seconds,
        "When the configuration in force was loaded (start-up or the last successful reload)"
    );
    for result in ["ok", "error"] {
        metrics::counter!("gateway_config_reloads_total", "result" => result).increment(0);
    }
    metrics::gauge!("gateway_config_last_reload_successful").set(1.0);
    metrics::gauge!("gateway_config_last_reload_success_timestamp_seconds").set(now());
}
