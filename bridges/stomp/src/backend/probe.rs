//! Logins when each client logs in to the broker as itself (pass-through credentials); the
//! broker's readiness is then [`rabbitmq_pool::probe`]'s.

use async_trait::async_trait;
use bridge_api::{AuthMethod, CredentialCheck, Principal};

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
