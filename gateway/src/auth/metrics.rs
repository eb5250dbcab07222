//! `gateway_auth_verifications_total{kind, result}`: every password and token check, and
//! whether it was served from a cache, computed, refused, or not attempted for overload.

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Password,
    Token,
}

#[derive(Debug, Clone, Copy)]
pub enum Outcome {
    /// Served from the cache of recent successful checks.
    CacheHit,
    /// Waited for an identical check already under way instead of hashing again.
    Joined,
    /// Computed, and the credentials are good.
    Verified,
    /// Computed, and the credentials are wrong.
    Rejected,
    /// Not computed: too many hashes running and waiting.
    Overloaded,
}

pub fn count(kind: Kind, outcome: Outcome) {
    let kind = match kind {
        Kind::Password => "password",
        Kind::Token => "token",
    };
    let result = match outcome {
        Outcome::CacheHit => "cache_hit",
        Outcome::Joined => "joined",
        Outcome::Verified => "verified",
        Outcome::Rejected => "rejected",
        Outcome::Overloaded => "overloaded",
    };
    metrics::counter!("gateway_auth_verifications_total", "kind" => kind, "result" => result)
        .increment(1);
}
