use std::time::SystemTime;

/// How the client proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Basic,
    Bearer,
    QueryToken,
    Cookie,
    /// Credentials the bridge checked itself (e.g. a STOMP CONNECT login).
    Bridge,
}

/// An authenticated identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    pub roles: Vec<String>,
    pub method: AuthMethod,
    /// When the credential stops being valid (JWT `exp`); `None` for passwords.
    pub expires_at: Option<SystemTime>,
}

impl Principal {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }
}

/// Why a password login did not succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRefused {
    /// Unknown user or wrong password.
    Invalid,
    /// The gateway has too many password checks under way to take this one now; the client
    /// may try again shortly. Not the client's fault.
    Busy,
}

/// Lets a bridge check a username and password against the gateway's realm, e.g. for a
/// protocol-level login when the handshake carried no credentials.
#[async_trait::async_trait]
pub trait CredentialCheck: Send + Sync {
    /// `None` when the user is unknown or the password is wrong (or the check could not be
    /// made now: use [`CredentialCheck::check_login`] to tell those apart).
    async fn check_password(&self, user: &str, password: &str) -> Option<Principal>;

    /// Verify a bearer token (a JWT) presented inside the protocol, e.g. to refresh a live
    /// session's credential. `Err` carries why it was refused ("token expired", "invalid
    /// token signature", no JWT key configured), short and safe to show the client, who
    /// needs to know whether a fresh token would help.
    async fn check_token(&self, _token: &str) -> Result<Principal, String> {
        Err("token logins are not configured on this gateway".into())
    }

    /// Like `check_password`, but says whether a refusal means "wrong" or "try again".
    async fn check_login(&self, user: &str, password: &str) -> Result<Principal, LoginRefused> {
        self.check_password(user, password)
            .await
            .ok_or(LoginRefused::Invalid)
    }
}
