//! The credential check bridges are built with. It follows the gateway's current
//! authenticator instead of holding one, so a bridge a reload kept checks protocol-level
//! logins against the new realm and JWT keys (and a fresh login cache), and nothing keeps
//! a replaced authenticator alive.

use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bridge_api::{CredentialCheck, LoginRefused, Principal};

use crate::auth::Authenticator;

#[derive(Default)]
pub struct CurrentAuth(ArcSwapOption<Authenticator>);

impl CurrentAuth {
    pub fn new() -> Arc<Self> {
        Arc::new(CurrentAuth::default())
    }

    pub fn set(&self, auth: Arc<Authenticator>) {
        self.0.store(Some(auth));
    }

    pub fn get(&self) -> Option<Arc<Authenticator>> {
        self.0.load_full()
    }

    /// What services are built with.
    pub fn check(self: &Arc<Self>) -> Arc<dyn CredentialCheck> {
        self.clone()
    }
}

#[async_trait::async_trait]
impl CredentialCheck for CurrentAuth {
    async fn check_password(&self, user: &str, password: &str) -> Option<Principal> {
        // Until start-up sets one there is nothing to check against.
        let auth = self.0.load_full()?;
        auth.credential_check().check_password(user, password).await
    }

    async fn check_login(&self, user: &str, password: &str) -> Result<Principal, LoginRefused> {
        let auth = self.0.load_full().ok_or(LoginRefused::Invalid)?;
        auth.credential_check().check_login(user, password).await
    }

    async fn check_token(&self, token: &str) -> Result<Principal, String> {
        let auth = self
            .0
            .load_full()
            .ok_or_else(|| "token logins are not configured".to_string())?;
        auth.credential_check().check_token(token).await
    }
}
