//! Why the authentication settings cannot be used. Each error names its `auth.*` key, and
//! the file when there is one, so start-up says exactly what to fix.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use super::config::REDACTED;

#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("auth.cookie: {0:?} is not a valid cookie name")]
    Cookie(String),
    #[error("auth.max_concurrent_hashes: must be at least 1 (leave it out for one per CPU)")]
    NoHashThreads,
    #[error(transparent)]
    Realm(#[from] RealmError),
    #[error(transparent)]
    Jwt(#[from] JwtConfigError),
}

/// `auth.realm_file` cannot be read, or its contents are wrong.
#[derive(Debug, thiserror::Error)]
pub enum RealmError {
    #[error("auth.realm_file: cannot read {}: {source}", .path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("auth.realm_file {}: {source}", .path.display())]
    Invalid {
        path: PathBuf,
        source: RealmParseError,
    },
}

/// What is wrong inside a realm file.
#[derive(Debug, thiserror::Error)]
pub enum RealmParseError {
    #[error("{}", trimmed(.0))]
    Toml(toml::de::Error),
    /// The user's position in the file, counted from 1.
    #[error("user #{0} has an empty name")]
    EmptyName(usize),
    #[error("user {0:?}: name must not contain ':'")]
    ColonInName(String),
    #[error("user {user:?}: password_hash {hash}")]
    BadHash { user: String, hash: HashError },
    #[error("user {0:?} is defined more than once")]
    Duplicate(String),
    #[error("cannot build the dummy hash for unknown users: {0}")]
    Dummy(DummyHashError),
}

/// toml's messages end with a newline (and sometimes a source excerpt's blank line).
fn trimmed(e: &toml::de::Error) -> String {
    e.to_string().trim().to_owned()
}

/// Why a `password_hash` is not a hash the realm can check; reads after "password_hash".
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    #[error("is not a valid argon2 PHC string ({0})")]
    Phc(password_hash::Error),
    #[error("names an unknown argon2 variant ({0})")]
    Variant(argon2::Error),
    #[error("has invalid argon2 parameters ({0})")]
    Params(password_hash::Error),
    #[error("is an argon2 PHC string without salt or hash")]
    NoSaltOrHash,
    #[error("is neither an argon2 PHC string (\"$argon2id$...\") nor a bcrypt hash (\"$2b$...\")")]
    UnknownScheme,
    #[error("is not a valid bcrypt hash (expected 60 characters like \"$2b$12$<53 characters>\")")]
    BadBcrypt,
    #[error("has bcrypt cost {0}, outside 4..=31")]
    BcryptCost(u32),
}

/// Hashing the stand-in password for unknown users failed.
#[derive(Debug, thiserror::Error)]
pub enum DummyHashError {
    #[error("{0}")]
    Argon2(password_hash::Error),
    #[error("{0}")]
    Bcrypt(bcrypt::BcryptError),
    #[error("{0}")]
    Model(HashError),
}

#[derive(Debug, thiserror::Error)]
pub enum JwtConfigError {
    #[error("auth.jwt: neither hs256_secret nor rs256_public_key is set; give at least one key")]
    NoKey,
    #[error(
        "auth.jwt.leeway: {} is too large (at most {})",
        human(.leeway),
        human(.max)
    )]
    Leeway { leeway: Duration, max: Duration },
    #[error("auth.jwt.roles_claim: must not be empty")]
    EmptyRolesClaim,
    /// `issuer` or `audience` given as "".
    #[error("auth.jwt.{0}: must not be empty (leave it out to accept any)")]
    EmptyFilter(&'static str),
    #[error("auth.jwt.hs256_secret: must not be empty")]
    EmptySecret,
    #[error(
        "auth.jwt.hs256_secret: {:?} is the placeholder the gateway prints instead of the secret; give the real secret",
        REDACTED
    )]
    PlaceholderSecret,
    #[error("auth.jwt.rs256_public_key {}: {source}", .path.display())]
    PublicKey { path: PathBuf, source: KeyFileError },
}

fn human(d: &Duration) -> String {
    humantime_serde::re::humantime::format_duration(*d).to_string()
}

/// Why `auth.jwt.rs256_public_key` names no usable RSA public key; reads after the path.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("cannot read: {0}")]
    Read(#[source] io::Error),
    #[error("holds a private key; give the public key (`openssl rsa -in key.pem -pubout`)")]
    PrivateKey,
    #[error("is not a PEM \"PUBLIC KEY\" file")]
    NotPublicKeyPem,
    #[error("is not a valid RSA public key ({0})")]
    NotRsa(jsonwebtoken::errors::Error),
}
