use std::time::SystemTime;

use crate::{async_trait, AuthMethod, CredentialCheck, LoginRefused, Principal};

/// A realm that knows nobody: every login fails.
pub struct NoRealm;

#[async_trait]
impl CredentialCheck for NoRealm {
    async fn check_password(&self, _: &str, _: &str) -> Option<Principal> {
        None
    }
}

/// A realm too busy to check anything: every login is "try again".
pub struct BusyRealm;

#[async_trait]
impl CredentialCheck for BusyRealm {
    async fn check_password(&self, _: &str, _: &str) -> Option<Principal> {
        None
    }

    async fn check_login(&self, _: &str, _: &str) -> Result<Principal, LoginRefused> {
        Err(LoginRefused::Busy)
    }
}

/// A realm with a fixed list of users and tokens, for protocol-level logins and token
/// refreshes.
#[derive(Default)]
pub struct StaticRealm {
    users: Vec<(String, String, Principal)>,
    tokens: Vec<(String, Principal)>,
}

impl StaticRealm {
    pub fn new() -> Self {
        Self::default()
    }

    /// `name` logs in with `password` and gets `roles`.
    pub fn user(mut self, name: &str, password: &str, roles: &[&str]) -> Self {
        let principal = Principal {
            name: name.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            // What the gateway's realm reports for a login a bridge checked.
            method: AuthMethod::Bridge,
            expires_at: None,
        };
        self.users.push((name.into(), password.into(), principal));
        self
    }

    /// `token` verifies as `subject` with `roles` until `expires_at`; after that it is
    /// refused as expired, as a JWT is.
    pub fn token(
        mut self,
        token: &str,
        subject: &str,
        roles: &[&str],
        expires_at: SystemTime,
    ) -> Self {
        let principal = Principal {
            name: subject.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            method: AuthMethod::Bridge,
            expires_at: Some(expires_at),
        };
        self.tokens.push((token.into(), principal));
        self
    }
}

#[async_trait]
impl CredentialCheck for StaticRealm {
    async fn check_password(&self, user: &str, password: &str) -> Option<Principal> {
        self.users
            .iter()
            .find(|(u, p, _)| u == user && p == password)
            .map(|(_, _, principal)| principal.clone())
    }

    async fn check_token(&self, token: &str) -> Result<Principal, String> {
        let (_, principal) = self
            .tokens
            .iter()
            .find(|(t, _)| t == token)
            .ok_or("invalid token signature")?;
        if principal
            .expires_at
            .is_some_and(|at| at <= SystemTime::now())
        {
            return Err("token expired".into());
        }
        Ok(principal.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_right_password_logs_in() {
        let realm = StaticRealm::new().user("alice", "pw", &["admin"]);
        let p = realm.check_password("alice", "pw").await.unwrap();
        assert!(p.has_role("admin"));
        assert_eq!(p.method, AuthMethod::Bridge);
        assert!(realm.check_password("alice", "nope").await.is_none());
        assert!(NoRealm.check_password("alice", "pw").await.is_none());
        assert_eq!(
            realm.check_login("alice", "nope").await,
            Err(LoginRefused::Invalid)
        );
        assert_eq!(
            BusyRealm.check_login("alice", "pw").await,
            Err(LoginRefused::Busy)
        );
    }

    #[tokio::test]
    async fn tokens_verify_until_they_expire() {
        let now = SystemTime::now();
        let hour = std::time::Duration::from_secs(3600);
        let realm = StaticRealm::new()
            .token("good", "alice", &["admin"], now + hour)
            .token("old", "alice", &[], now - hour);
        let p = realm.check_token("good").await.unwrap();
        assert_eq!((p.name.as_str(), p.expires_at), ("alice", Some(now + hour)));
        assert_eq!(realm.check_token("old").await, Err("token expired".into()));
        assert_eq!(
            realm.check_token("forged").await,
            Err("invalid token signature".into())
        );
        assert!(NoRealm.check_token("good").await.is_err());
    }
}
