//! Origin allow-lists: which web pages may open a WebSocket to a service.

/// One entry of `allowed_origins`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginRule {
    Any,
    Exact(String),
    /// `scheme://*.domain[:port]`: any subdomain of `domain` (not `domain` itself).
    Wildcard {
        scheme: String,
        suffix: String,
    },
}

/// Why an `allowed_origins` entry is not a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("origin `{0}` needs a scheme, e.g. https://{0}")]
    NoScheme(String),
    #[error("origin pattern `{0}` is malformed")]
    MalformedPattern(String),
    #[error("origin `{0}`: `*` only as `scheme://*.domain`, and no path")]
    MisplacedWildcard(String),
}

impl OriginRule {
    pub fn parse(rule: &str) -> Result<OriginRule, OriginError> {
        let rule = rule.trim().to_ascii_lowercase();
        if rule == "*" {
            return Ok(OriginRule::Any);
        }
        let Some((scheme, rest)) = rule.split_once("://") else {
            return Err(OriginError::NoScheme(rule));
        };
        if let Some(suffix) = rest.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(OriginError::MalformedPattern(rule));
            }
            return Ok(OriginRule::Wildcard {
                scheme: scheme.to_string(),
                suffix: format!(".{suffix}"),
            });
        }
        if rest.contains('*') || rest.contains('/') {
            return Err(OriginError::MisplacedWildcard(rule));
        }
        Ok(OriginRule::Exact(rule))
    }

    fn matches(&self, origin: &str) -> bool {
        match self {
            OriginRule::Any => true,
            OriginRule::Exact(o) => o == origin,
            OriginRule::Wildcard { scheme, suffix } => origin
                .split_once("://")
                .is_some_and(|(s, host)| s == scheme && host.ends_with(suffix.as_str())),
        }
    }
}

#[derive(Debug, Clone)]
pub struct OriginPolicy {
    rules: Vec<OriginRule>,
    allow_missing: bool,
}

impl OriginPolicy {
    pub fn new(rules: &[String], allow_missing: bool) -> Result<OriginPolicy, OriginError> {
        Ok(OriginPolicy {
            rules: rules
                .iter()
                .map(|r| OriginRule::parse(r))
                .collect::<Result<_, _>>()?,
            allow_missing,
        })
    }

    /// `host` is the request's Host header: a page is always allowed to talk to the server
    /// that served it.
    pub fn allows(&self, origin: Option<&str>, host: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return self.allow_missing;
        };
        let origin = origin.trim().to_ascii_lowercase();
        let same_origin = host.is_some_and(|h| {
            origin
                .split_once("://")
                .is_some_and(|(_, authority)| authority.eq_ignore_ascii_case(h.trim()))
        });
        same_origin || self.rules.iter().any(|r| r.matches(&origin))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: &[&str], missing: bool) -> OriginPolicy {
        let rules: Vec<String> = rules.iter().map(|s| s.to_string()).collect();
        OriginPolicy::new(&rules, missing).unwrap()
    }

    #[test]
    fn exact_and_wildcard() {
        let p = policy(
            &["https://dash.example.com", "https://*.corp.example"],
            false,
        );
        assert!(p.allows(Some("https://dash.example.com"), None));
        assert!(p.allows(Some("HTTPS://Dash.Example.com"), None));
        assert!(p.allows(Some("https://a.b.corp.example"), None));
        assert!(!p.allows(Some("https://corp.example"), None));
        assert!(!p.allows(Some("http://a.corp.example"), None));
        assert!(!p.allows(Some("https://evilcorp.example"), None));
        assert!(!p.allows(Some("https://dash.example.com.evil"), None));
    }

    #[test]
    fn same_origin_is_always_allowed() {
        let p = policy(&[], false);
        assert!(p.allows(Some("http://127.0.0.1:8080"), Some("127.0.0.1:8080")));
        assert!(!p.allows(Some("http://127.0.0.1:8081"), Some("127.0.0.1:8080")));
    }

    #[test]
    fn missing_origin_only_when_configured() {
        assert!(!policy(&["*"], false).allows(None, None));
        assert!(policy(&[], true).allows(None, None));
    }

    #[test]
    fn bad_rules_are_rejected() {
        let err = |rule: &str| OriginRule::parse(rule).unwrap_err().to_string();
        assert_eq!(
            err("Example.com"),
            "origin `example.com` needs a scheme, e.g. https://example.com"
        );
        assert_eq!(
            err("https://*."),
            "origin pattern `https://*.` is malformed"
        );
        assert_eq!(
            err("https://a.*.com"),
            "origin `https://a.*.com`: `*` only as `scheme://*.domain`, and no path"
        );
    }
}
