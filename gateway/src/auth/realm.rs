//! The file realm: users with password hashes and roles, read from a TOML file.
//!
//! ```toml
//! [[user]]
//! name = "alice"
//! password_hash = "$argon2id$v=19$..."   # or a bcrypt "$2b$..." hash
//! roles = ["trader", "chat"]
//! ```

use std::collections::HashMap;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use password_hash::rand_core::OsRng;
use serde::Deserialize;

use super::error::{DummyHashError, HashError, RealmError, RealmParseError};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RealmFile {
    #[serde(default)]
    user: Vec<UserEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    password_hash: String,
    #[serde(default)]
    roles: Vec<String>,
}

/// A stored password hash whose format was checked when the realm was loaded.
#[derive(Debug, Clone)]
enum StoredHash {
    Argon2(String),
    Bcrypt(String),
}

impl StoredHash {
    fn parse(hash: &str) -> Result<StoredHash, HashError> {
        if hash.starts_with("$argon2") {
            let parsed = PasswordHash::new(hash).map_err(HashError::Phc)?;
            argon2::Algorithm::new(parsed.algorithm.as_str()).map_err(HashError::Variant)?;
            Params::try_from(&parsed).map_err(HashError::Params)?;
            if parsed.hash.is_none() || parsed.salt.is_none() {
                return Err(HashError::NoSaltOrHash);
            }
            Ok(StoredHash::Argon2(hash.to_owned()))
        } else if hash.starts_with("$2") {
            bcrypt_cost(hash).map(|_| StoredHash::Bcrypt(hash.to_owned()))
        } else {
            Err(HashError::UnknownScheme)
        }
    }

    /// CPU-heavy: call from a blocking thread.
    fn verify(&self, password: &str) -> bool {
        match self {
            StoredHash::Argon2(hash) => match PasswordHash::new(hash) {
                Ok(parsed) => Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok(),
                Err(_) => false,
            },
            StoredHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
        }
    }

    /// A hash of a fixed password with the same scheme and cost as `self`, so that checking a
    /// password against it takes as long as checking against `self`.
    fn dummy_like(&self) -> Result<StoredHash, DummyHashError> {
        const DUMMY_PASSWORD: &[u8] = b"no such user; this password is never accepted";
        match self {
            StoredHash::Argon2(hash) => {
                let parsed = PasswordHash::new(hash).map_err(DummyHashError::Argon2)?;
                let params = Params::try_from(&parsed).map_err(DummyHashError::Argon2)?;
                let salt = SaltString::generate(&mut OsRng);
                let dummy = Argon2::default()
                    .hash_password_customized(
                        DUMMY_PASSWORD,
                        Some(parsed.algorithm),
                        parsed.version,
                        params,
                        &salt,
                    )
                    .map_err(DummyHashError::Argon2)?;
                Ok(StoredHash::Argon2(dummy.to_string()))
            }
            StoredHash::Bcrypt(hash) => {
                let cost = bcrypt_cost(hash).map_err(DummyHashError::Model)?;
                let dummy = bcrypt::hash_with_salt(DUMMY_PASSWORD, cost, [0x5a; 16])
                    .map_err(DummyHashError::Bcrypt)?;
                Ok(StoredHash::Bcrypt(
                    dummy.format_for_version(bcrypt::Version::TwoB),
                ))
            }
        }
    }
}

/// The cost of a `$2a$`/`$2b$`/`$2y$` bcrypt hash, or why it is not one.
fn bcrypt_cost(hash: &str) -> Result<u32, HashError> {
    let b = hash.as_bytes();
    let valid_prefix = b.len() == 60
        && hash.is_ascii()
        && matches!(&b[..4], b"$2a$" | b"$2b$" | b"$2y$")
        && b[6] == b'$'
        && b[7..]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/');
    if !valid_prefix {
        return Err(HashError::BadBcrypt);
    }
    let cost: u32 = hash[4..6].parse().map_err(|_| HashError::BadBcrypt)?;
    if !(4..=31).contains(&cost) {
        return Err(HashError::BcryptCost(cost));
    }
    Ok(cost)
}

/// One realm user.
#[derive(Debug, Clone)]
struct User {
    hash: StoredHash,
    roles: Vec<String>,
}

/// Users by name, plus a dummy hash that unknown names are checked against.
#[derive(Debug)]
pub struct Realm {
    users: HashMap<String, User>,
    dummy: StoredHash,
}

impl Realm {
    /// Reads and checks a realm file. Errors name the file and what is wrong.
    pub fn load(path: &Path) -> Result<Realm, RealmError> {
        let text = std::fs::read_to_string(path).map_err(|source| RealmError::Read {
            path: path.to_owned(),
            source,
        })?;
        Realm::parse(&text).map_err(|source| RealmError::Invalid {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses realm TOML text.
    pub fn parse(text: &str) -> Result<Realm, RealmParseError> {
        let file: RealmFile = toml::from_str(text).map_err(RealmParseError::Toml)?;
        let mut users = HashMap::with_capacity(file.user.len());
        let mut first_hash = None;
        for (i, entry) in file.user.into_iter().enumerate() {
            if entry.name.is_empty() {
                return Err(RealmParseError::EmptyName(i + 1));
            }
            if entry.name.contains(':') {
                // HTTP Basic cannot carry such a name.
                return Err(RealmParseError::ColonInName(entry.name));
            }
            let hash = match StoredHash::parse(&entry.password_hash) {
                Ok(hash) => hash,
                Err(hash) => {
                    let user = entry.name;
                    return Err(RealmParseError::BadHash { user, hash });
                }
            };
            first_hash.get_or_insert_with(|| hash.clone());
            let user = User {
                hash,
                roles: entry.roles,
            };
            if users.insert(entry.name.clone(), user).is_some() {
                return Err(RealmParseError::Duplicate(entry.name));
            }
        }
        let model = match first_hash {
            Some(hash) => hash,
            None => {
                tracing::warn!("the realm file defines no users; every password login will fail");
                StoredHash::Argon2(super::hash_password("no users"))
            }
        };
        let dummy = model.dummy_like().map_err(RealmParseError::Dummy)?;
        Ok(Realm { users, dummy })
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// The user's roles, if the realm has the user.
    pub fn roles(&self, user: &str) -> Option<&[String]> {
        self.users.get(user).map(|u| u.roles.as_slice())
    }

    /// The user's roles if the password is right; `None` for an unknown user or a wrong
    /// password, which take about the same time. CPU-heavy: call from a blocking thread.
    pub fn verify(&self, user: &str, password: &str) -> Option<Vec<String>> {
        match self.users.get(user) {
            Some(u) => u.hash.verify(password).then(|| u.roles.clone()),
            None => {
                let _ = self.dummy.verify(password);
                None
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An argon2id hash with the smallest parameters, to keep debug-build tests fast.
    pub(crate) fn cheap_argon2(password: &str) -> String {
        let params = Params::new(Params::MIN_M_COST, 1, 1, None).expect("params");
        let argon = Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        argon
            .hash_password(password.as_bytes(), &SaltString::generate(&mut OsRng))
            .expect("hash")
            .to_string()
    }

    pub(crate) fn cheap_bcrypt(password: &str) -> String {
        bcrypt::hash(password, 4).expect("hash")
    }

    pub(crate) fn realm_toml() -> String {
        format!(
            r#"
[[user]]
name = "alice"
password_hash = "{}"
roles = ["trader", "chat"]

[[user]]
name = "bob"
password_hash = "{}"
"#,
            cheap_argon2("alice-pw"),
            cheap_bcrypt("bob-pw").replacen("$2b$", "$2y$", 1),
        )
    }

    #[test]
    fn verifies_argon2_and_bcrypt_users() {
        let realm = Realm::parse(&realm_toml()).expect("valid realm");
        assert_eq!(realm.len(), 2);
        assert_eq!(
            realm.verify("alice", "alice-pw"),
            Some(vec!["trader".to_owned(), "chat".to_owned()])
        );
        assert_eq!(realm.verify("bob", "bob-pw"), Some(vec![]));
        assert_eq!(realm.verify("alice", "wrong"), None);
        assert_eq!(realm.verify("bob", "alice-pw"), None);
        assert_eq!(realm.verify("carol", "alice-pw"), None);
    }

    #[test]
    fn dummy_hash_mirrors_the_first_user() {
        let realm = Realm::parse(&realm_toml()).expect("valid realm");
        let StoredHash::Argon2(dummy) = &realm.dummy else {
            panic!("expected an argon2 dummy");
        };
        assert!(dummy.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{dummy}");
        let bcrypt_first = format!(
            "[[user]]\nname = \"b\"\npassword_hash = \"{}\"\n",
            cheap_bcrypt("x")
        );
        let realm = Realm::parse(&bcrypt_first).expect("valid realm");
        let StoredHash::Bcrypt(dummy) = &realm.dummy else {
            panic!("expected a bcrypt dummy");
        };
        assert!(dummy.starts_with("$2b$04$"), "{dummy}");
        assert_eq!(realm.verify("nobody", "x"), None);
    }

    #[test]
    fn empty_realm_is_allowed() {
        let realm = Realm::parse("").expect("empty realm");
        assert_eq!(realm.len(), 0);
        assert_eq!(realm.verify("alice", "pw"), None);
    }

    #[test]
    fn unknown_keys_are_named() {
        let text = format!(
            "[[user]]\nname = \"a\"\npassword_hash = \"{}\"\npasswd = \"x\"\n",
            cheap_argon2("x")
        );
        let err = Realm::parse(&text).expect_err("unknown key").to_string();
        assert!(err.contains("passwd"), "{err}");
        let err = Realm::parse("[[users]]\nname = \"a\"\n")
            .expect_err("unknown table")
            .to_string();
        assert!(err.contains("users"), "{err}");
        let err = Realm::parse("[[user]]\nname = \"a\"\n")
            .expect_err("missing hash")
            .to_string();
        assert!(err.contains("password_hash"), "{err}");
    }

    #[test]
    fn bad_entries_are_rejected() {
        let h = cheap_argon2("x");
        let cases = [
            (
                "[[user]]\nname = \"a\"\npassword_hash = \"plaintext\"\n".to_owned(),
                "neither",
            ),
            (
                "[[user]]\nname = \"a\"\npassword_hash = \"$argon2id$garbage\"\n".to_owned(),
                "argon2",
            ),
            (
                "[[user]]\nname = \"a\"\npassword_hash = \"$2b$12$short\"\n".to_owned(),
                "bcrypt",
            ),
            (
                format!("[[user]]\nname = \"\"\npassword_hash = \"{h}\"\n"),
                "empty name",
            ),
            (
                format!("[[user]]\nname = \"a:b\"\npassword_hash = \"{h}\"\n"),
                "':'",
            ),
            (
                format!(
                    "[[user]]\nname = \"a\"\npassword_hash = \"{h}\"\n\
                     [[user]]\nname = \"a\"\npassword_hash = \"{h}\"\n"
                ),
                "more than once",
            ),
        ];
        for (text, needle) in cases {
            let err = Realm::parse(&text).expect_err(&text).to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle:?}");
        }
    }

    #[test]
    fn messages_name_the_user_and_the_problem() {
        let err = |hash: &str| {
            let text = format!("[[user]]\nname = \"a\"\npassword_hash = \"{hash}\"\n");
            Realm::parse(&text).expect_err(hash).to_string()
        };
        assert_eq!(
            err("plaintext"),
            r#"user "a": password_hash is neither an argon2 PHC string ("$argon2id$...") nor a bcrypt hash ("$2b$...")"#
        );
        assert_eq!(
            err("$2b$12$short"),
            r#"user "a": password_hash is not a valid bcrypt hash (expected 60 characters like "$2b$12$<53 characters>")"#
        );
        let cost_3 = format!("$2b$03${}", "a".repeat(53));
        assert_eq!(
            err(&cost_3),
            r#"user "a": password_hash has bcrypt cost 3, outside 4..=31"#
        );
        let text = format!(
            "[[user]]\nname = \"\"\npassword_hash = \"{}\"\n",
            cheap_argon2("x")
        );
        assert_eq!(
            Realm::parse(&text).expect_err("empty").to_string(),
            "user #1 has an empty name"
        );
    }

    #[test]
    fn load_names_the_file() {
        let err = Realm::load(Path::new("/nonexistent/realm.toml"))
            .expect_err("missing")
            .to_string();
        assert_eq!(
            err,
            "auth.realm_file: cannot read /nonexistent/realm.toml: No such file or directory (os error 2)"
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("realm.toml");
        std::fs::write(&path, "[[user]]\nname = 1\n").expect("write");
        let err = Realm::load(&path).expect_err("bad toml").to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }
}
