//! Binding the XMPP login to the user the WebSocket handshake already authenticated, so a
//! gateway realm user cannot log in to the XMPP server as somebody else.

use protocol_xmpp::SaslIdentity;
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum IdentityMode {
    /// No check: the XMPP server alone decides who logs in.
    None,
    /// The principal's name is the JID's local part (`alice` logs in as `alice@domain`).
    #[default]
    Local,
    /// The principal's name is the bare JID (`alice@domain`).
    Bare,
}

/// Checks a SASL `<auth/>` against the authenticated principal. `identity` is `None` when
/// the mechanism's initial response names no user: then nothing can be verified and the
/// login is refused. Err carries the reason given to the client.
pub fn check(
    mode: IdentityMode,
    principal: &str,
    domain: &str,
    identity: Option<&SaslIdentity>,
) -> Result<(), String> {
    if mode == IdentityMode::None {
        return Ok(());
    }
    let Some(identity) = identity else {
        return Err(format!(
            "the login must name the user {principal} in its initial response"
        ));
    };
    let expected_jid = match mode {
        IdentityMode::Bare => principal.to_owned(),
        _ => format!("{principal}@{domain}"),
    };
    let authcid_jid = format!("{}@{domain}", identity.authcid);
    if !jid_eq(&authcid_jid, &expected_jid) {
        return Err(format!(
            "SASL user {} is not the authenticated user {principal}",
            identity.authcid
        ));
    }
    // An authorization identity asks to act as another JID: it must be the same user.
    if let Some(authzid) = &identity.authzid {
        let bare = authzid.split('/').next().unwrap_or_default();
        if !jid_eq(bare, &expected_jid) {
            return Err(format!(
                "SASL authorization identity {authzid} is not the authenticated user {principal}"
            ));
        }
    }
    Ok(())
}

/// Local parts compare exactly (nodeprep is server-specific); domains case-insensitively.
fn jid_eq(a: &str, b: &str) -> bool {
    match (a.rsplit_once('@'), b.rsplit_once('@')) {
        (Some((la, da)), Some((lb, db))) => la == lb && da.eq_ignore_ascii_case(db),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(authzid: Option<&str>, authcid: &str) -> SaslIdentity {
        SaslIdentity {
            mechanism: "PLAIN".into(),
            authzid: authzid.map(str::to_owned),
            authcid: authcid.into(),
        }
    }

    #[test]
    fn local_mode_matches_the_local_part() {
        let m = IdentityMode::Local;
        assert!(check(m, "alice", "localhost", Some(&id(None, "alice"))).is_ok());
        assert!(check(m, "alice", "localhost", Some(&id(None, "bob"))).is_err());
        assert!(check(m, "alice", "localhost", Some(&id(None, "Alice"))).is_err());
        assert!(check(m, "alice", "localhost", None).is_err());
    }

    #[test]
    fn bare_mode_matches_the_jid() {
        let m = IdentityMode::Bare;
        assert!(check(
            m,
            "alice@Example.org",
            "example.org",
            Some(&id(None, "alice"))
        )
        .is_ok());
        assert!(check(m, "alice", "example.org", Some(&id(None, "alice"))).is_err());
        assert!(check(
            m,
            "alice@other.org",
            "example.org",
            Some(&id(None, "alice"))
        )
        .is_err());
    }

    #[test]
    fn authzid_must_be_the_same_user() {
        let m = IdentityMode::Local;
        let ok = id(Some("alice@localhost/phone"), "alice");
        assert!(check(m, "alice", "localhost", Some(&ok)).is_ok());
        let other = id(Some("bob@localhost"), "alice");
        assert!(check(m, "alice", "localhost", Some(&other)).is_err());
    }

    #[test]
    fn none_mode_checks_nothing() {
        assert!(check(IdentityMode::None, "alice", "x", None).is_ok());
    }
}
