//! Which live sessions a new realm condemns: those whose user the old realm knew and the
//! new one does not have ("account removed") or gives other roles than the session holds
//! ("roles changed"; a session that logged in under the new realm already has them).
//! Sessions that logged in with a JWT, or as users the realm never knew (a broker-checked
//! pass-through login), are not the realm's to end.

use bridge_api::{AuthMethod, Principal};

use crate::auth::Authenticator;

pub const REMOVED: &str = "account removed";
pub const ROLES_CHANGED: &str = "roles changed";

pub fn verdict(old: &Authenticator, new: &Authenticator, p: &Principal) -> Option<String> {
    let password_login = matches!(p.method, AuthMethod::Basic | AuthMethod::Bridge);
    if !password_login || p.expires_at.is_some() {
        return None;
    }
    old.realm_roles(&p.name)?;
    match new.realm_roles(&p.name) {
        None => Some(REMOVED.into()),
        Some(now) if !same_set(&p.roles, now) => Some(ROLES_CHANGED.into()),
        Some(_) => None,
    }
}

/// Roles are a set: reordering them in the file changes nothing.
fn same_set(a: &[String], b: &[String]) -> bool {
    a.iter().all(|r| b.contains(r)) && b.iter().all(|r| a.contains(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::AuthConfig;
    use std::time::{Duration, SystemTime};

    /// An authenticator over a realm of `(user, roles)`; the hashes are never checked.
    fn realm(users: &[(&str, &[&str])]) -> (tempfile::TempDir, Authenticator) {
        // A bcrypt hash at the lowest cost: only its format is checked at load.
        let hash = "$2b$04$abcdefghijklmnopqrstuuF4zYQ3RJ8bzcxFzW4w4A0Xm9y1WlYTa";
        let mut text = String::new();
        for (name, roles) in users {
            let roles: Vec<String> = roles.iter().map(|r| format!("{r:?}")).collect();
            text.push_str(&format!(
                "[[user]]\nname = {name:?}\npassword_hash = {hash:?}\nroles = [{}]\n",
                roles.join(", ")
            ));
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("realm.toml");
        std::fs::write(&path, text).expect("write realm");
        let cfg = AuthConfig {
            realm_file: Some(path),
            ..AuthConfig::default()
        };
        (dir, Authenticator::from_config(&cfg).expect("realm"))
    }

    fn login(name: &str, roles: &[&str], method: AuthMethod) -> Principal {
        Principal {
            name: name.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            method,
            expires_at: None,
        }
    }

    #[test]
    fn removed_and_re_roled_users_are_condemned_others_kept() {
        let (_a, old) = realm(&[
            ("alice", &["chat"]),
            ("bob", &["chat"]),
            ("carol", &["a", "b"]),
        ]);
        let (_b, new) = realm(&[("alice", &["chat"]), ("carol", &["b", "a"]), ("bob2", &[])]);
        let judge = |p: &Principal| verdict(&old, &new, p);
        assert_eq!(judge(&login("alice", &["chat"], AuthMethod::Basic)), None);
        assert_eq!(
            judge(&login("bob", &["chat"], AuthMethod::Basic)).as_deref(),
            Some(REMOVED)
        );
        assert_eq!(
            judge(&login("bob", &["chat"], AuthMethod::Bridge)).as_deref(),
            Some(REMOVED),
            "a STOMP CONNECT login against the realm too"
        );
        assert_eq!(judge(&login("carol", &["a", "b"], AuthMethod::Basic)), None);
        let (_c, re_roled) = realm(&[("alice", &["chat", "admin"])]);
        assert_eq!(
            verdict(
                &old,
                &re_roled,
                &login("alice", &["chat"], AuthMethod::Basic)
            )
            .as_deref(),
            Some(ROLES_CHANGED)
        );
        // A login under the new realm holds the new roles: nothing to end.
        let fresh = login("alice", &["admin", "chat"], AuthMethod::Basic);
        assert_eq!(verdict(&old, &re_roled, &fresh), None);
    }

    #[test]
    fn tokens_and_users_the_realm_never_had_are_not_its_business() {
        let (_a, old) = realm(&[("alice", &["chat"])]);
        let (_b, new) = realm(&[]);
        let mut jwt = login("alice", &["chat"], AuthMethod::Bearer);
        jwt.expires_at = Some(SystemTime::now() + Duration::from_secs(60));
        assert_eq!(verdict(&old, &new, &jwt), None);
        let mut bridge_token = login("alice", &["chat"], AuthMethod::Bridge);
        bridge_token.expires_at = jwt.expires_at;
        assert_eq!(verdict(&old, &new, &bridge_token), None);
        // A broker-checked login of a name the realm never had.
        assert_eq!(
            verdict(&old, &new, &login("guest", &[], AuthMethod::Bridge)),
            None
        );
        // No realm at all any more: every realm user is gone.
        let none = Authenticator::from_config(&AuthConfig::default()).expect("empty");
        assert_eq!(
            verdict(&old, &none, &login("alice", &["chat"], AuthMethod::Basic)).as_deref(),
            Some(REMOVED)
        );
    }
}
