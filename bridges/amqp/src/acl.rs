//! Who may do what to which exchange or queue: RabbitMQ's configure/write/read permissions
//! per role, on glob patterns (`*` is any run of characters). The broker sees only the
//! service account, so the gateway decides per client.

use bridge_api::Principal;

use crate::settings::AclRule;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Configure,
    Write,
    Read,
}

impl Perm {
    pub fn as_str(self) -> &'static str {
        match self {
            Perm::Configure => "configure",
            Perm::Write => "write",
            Perm::Read => "read",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Exchange,
    Queue,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Exchange => "exchange",
            Resource::Queue => "queue",
        }
    }
}

#[derive(Debug, Clone)]
struct Rule {
    roles: Vec<String>,
    configure: Vec<String>,
    write: Vec<String>,
    read: Vec<String>,
}

/// The service's rules; no rules at all means everything is allowed.
#[derive(Debug, Clone, Default)]
pub struct Acl {
    rules: Vec<Rule>,
}

/// What one client may do, resolved once at login.
#[derive(Debug, Clone)]
pub struct Grant {
    open: bool,
    configure: Vec<String>,
    write: Vec<String>,
    read: Vec<String>,
}

impl Acl {
    pub fn new(rules: &[AclRule]) -> Result<Acl, (String, String)> {
        for (i, r) in rules.iter().enumerate() {
            if r.roles.is_empty() {
                return Err((
                    format!("acl[{i}].roles"),
                    "must name at least one role".into(),
                ));
            }
        }
        Ok(Acl {
            rules: rules
                .iter()
                .map(|r| Rule {
                    roles: r.roles.clone(),
                    configure: r.configure.clone(),
                    write: r.write.clone(),
                    read: r.read.clone(),
                })
                .collect(),
        })
    }

    pub fn grant(&self, principal: Option<&Principal>) -> Grant {
        let mut g = Grant {
            open: self.rules.is_empty(),
            configure: Vec::new(),
            write: Vec::new(),
            read: Vec::new(),
        };
        for r in &self.rules {
            if principal.is_some_and(|p| r.roles.iter().any(|role| p.has_role(role))) {
                g.configure.extend(r.configure.iter().cloned());
                g.write.extend(r.write.iter().cloned());
                g.read.extend(r.read.iter().cloned());
            }
        }
        g
    }
}

impl Grant {
    pub fn allows(&self, perm: Perm, name: &str) -> bool {
        if self.open {
            return true;
        }
        let patterns = match perm {
            Perm::Configure => &self.configure,
            Perm::Write => &self.write,
            Perm::Read => &self.read,
        };
        patterns.iter().any(|p| glob(p.as_bytes(), name.as_bytes()))
    }
}

/// `*` matches any run of characters, everything else itself.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob(b"jobs.*", b"jobs.a.b"));
        assert!(glob(b"*", b""));
        assert!(glob(b"a*c*e", b"abcde"));
        assert!(!glob(b"jobs.*", b"job"));
        assert!(!glob(b"jobs", b"jobs2"));
    }

    #[test]
    fn roles_add_up_and_no_rules_allow_everything() {
        let acl = Acl::new(&[
            AclRule {
                roles: vec!["worker".into()],
                configure: vec![],
                write: vec![],
                read: vec!["jobs".into()],
            },
            AclRule {
                roles: vec!["boss".into()],
                configure: vec!["jobs".into()],
                write: vec!["amq.default".into()],
                read: vec![],
            },
        ])
        .unwrap();
        let p = bridge_api::testkit::principal("w", &["worker", "boss"]);
        let g = acl.grant(Some(&p));
        assert!(g.allows(Perm::Read, "jobs") && g.allows(Perm::Write, "amq.default"));
        assert!(!g.allows(Perm::Write, "jobs"));
        assert!(!acl.grant(None).allows(Perm::Read, "jobs"));
        assert!(Acl::default().grant(None).allows(Perm::Configure, "x"));
    }
}
