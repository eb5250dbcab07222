//! Readiness of a broker when each client logs in as itself (pass-through credentials):
//! there is no shared connection to watch, so the gateway checks that the broker's port
//! accepts connections. Logins are the broker's to check, per client.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bridge_api::{AuthMethod, CancellationToken, CredentialCheck, Principal};

/// Every 2 s until `stop`: connect to `addr` and keep the answer in `reachable`.
pub(crate) async fn probe(
    broker: &'static str,
    addr: String,
    reachable: Arc<AtomicBool>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let ok = matches!(
            tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(&addr)
            )
            .await,
            Ok(Ok(_))
        );
        if reachable.swap(ok, Ordering::Relaxed) != ok {
            tracing::info!(broker = %addr, reachable = ok, "{broker} reachability changed");
        }
    }
}

/// With pass-through credentials the broker checks the login when the session opens its
/// connection; the gateway's realm is not asked.
pub(crate) struct BrokerChecksLogin;

#[async_trait]
impl CredentialCheck for BrokerChecksLogin {
    async fn check_password(&self, user: &str, _password: &str) -> Option<Principal> {
        Some(Principal {
            name: user.to_string(),
            roles: Vec::new(),
            method: AuthMethod::Bridge,
            expires_at: None,
        })
    }
}
