//! Finding and reaching the XMPP server: the configured address, or the domain's SRV records
//! (RFC 6120 section 3.2, XEP-0368) tried in priority and weight order.

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;
use std::time::Duration;

use hickory_resolver::TokioResolver;
use tokio::net::TcpStream;

use crate::settings::TlsMode;

/// One address to try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// `host:port` or `[v6]:port`.
pub fn parse_host_port(s: &str) -> Option<Target> {
    let (host, port) = s.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() || host.contains(':') && !s.starts_with('[') {
        return None;
    }
    Some(Target {
        host: host.to_owned(),
        port: port.parse().ok().filter(|p| *p != 0)?,
    })
}

/// One SRV record, as far as ordering needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    pub priority: u16,
    pub weight: u16,
    pub target: Target,
}

/// RFC 2782 order: ascending priority; within a priority, a weighted random draw without
/// replacement (weight-0 records first in the draw list, so they are rarely picked early).
/// `random` yields uniform numbers; tests pass a fixed sequence.
pub fn order_srv(mut records: Vec<SrvRecord>, mut random: impl FnMut() -> u64) -> Vec<Target> {
    records.sort_by_key(|r| (r.priority, r.weight != 0));
    let mut out = Vec::with_capacity(records.len());
    let mut rest = records.as_slice();
    while let Some(first) = rest.first() {
        let same = rest
            .iter()
            .take_while(|r| r.priority == first.priority)
            .count();
        let mut group: Vec<&SrvRecord> = rest[..same].iter().collect();
        rest = &rest[same..];
        while !group.is_empty() {
            let total: u64 = group.iter().map(|r| u64::from(r.weight)).sum();
            let pick = random() % (total + 1);
            let mut running = 0;
            let index = group
                .iter()
                .position(|r| {
                    running += u64::from(r.weight);
                    running >= pick
                })
                .unwrap_or(0);
            out.push(group.remove(index).target.clone());
        }
    }
    out
}

fn random() -> u64 {
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// One resolver per process: it reads the system configuration once and caches answers.
fn resolver() -> Result<&'static TokioResolver, String> {
    static RESOLVER: OnceLock<Result<TokioResolver, String>> = OnceLock::new();
    RESOLVER
        .get_or_init(|| {
            TokioResolver::builder_tokio()
                .and_then(|b| b.build())
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The addresses to try for `domain`: SRV records, else the domain itself on the standard
/// port.
pub async fn targets(domain: &str, mode: TlsMode) -> Result<Vec<Target>, String> {
    let (service, default_port) = match mode {
        TlsMode::Starttls => ("_xmpp-client._tcp", 5222),
        TlsMode::Direct => ("_xmpps-client._tcp", 5223),
    };
    let fallback = vec![Target {
        host: domain.to_owned(),
        port: default_port,
    }];
    let resolver = resolver()?;
    let lookup = match resolver.srv_lookup(format!("{service}.{domain}.")).await {
        Ok(lookup) => lookup,
        Err(e) => {
            tracing::debug!(
                domain,
                "no {service} SRV records ({e}), using port {default_port}"
            );
            return Ok(fallback);
        }
    };
    let records: Vec<SrvRecord> = lookup
        .answers()
        .iter()
        .filter_map(|record| match &record.data {
            hickory_resolver::proto::rr::RData::SRV(srv) => Some(SrvRecord {
                priority: srv.priority,
                weight: srv.weight,
                target: Target {
                    host: srv.target.to_ascii().trim_end_matches('.').to_owned(),
                    port: srv.port,
                },
            }),
            _ => None,
        })
        .collect();
    // RFC 2782: a lone "." target says the service is decidedly not offered.
    if records.len() == 1 && records[0].target.host.is_empty() {
        return Err(format!(
            "{domain} offers no XMPP client service (SRV target \".\")"
        ));
    }
    if records.is_empty() {
        return Ok(fallback);
    }
    Ok(order_srv(records, random))
}

/// Connects to the first target that answers within `timeout`.
pub async fn connect(targets: &[Target], timeout: Duration) -> Result<(TcpStream, Target), String> {
    let mut last = String::from("no address to try");
    for target in targets {
        match tokio::time::timeout(
            timeout,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        {
            Ok(Ok(stream)) => {
                // Stanzas are whole writes already; Nagle would only delay them.
                let _ = stream.set_nodelay(true);
                return Ok((stream, target.clone()));
            }
            Ok(Err(e)) => last = format!("{target}: {e}"),
            Err(_) => last = format!("{target}: connect timed out after {timeout:?}"),
        }
        tracing::debug!("xmpp server connect failed: {last}");
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(priority: u16, weight: u16, host: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            target: Target {
                host: host.into(),
                port: 5222,
            },
        }
    }

    fn hosts(t: &[Target]) -> Vec<&str> {
        t.iter().map(|t| t.host.as_str()).collect()
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            parse_host_port("xmpp.example:5222"),
            Some(Target {
                host: "xmpp.example".into(),
                port: 5222
            })
        );
        assert_eq!(parse_host_port("[::1]:5223").unwrap().host, "::1");
        assert_eq!(
            parse_host_port("[::1]:5223").unwrap().to_string(),
            "[::1]:5223"
        );
        assert!(parse_host_port("nohost").is_none());
        assert!(parse_host_port(":5222").is_none());
        assert!(parse_host_port("h:0").is_none());
        assert!(parse_host_port("::1:5222").is_none());
    }

    #[test]
    fn priority_first_then_weight() {
        let records = vec![
            rec(20, 0, "backup"),
            rec(10, 1, "light"),
            rec(10, 99, "heavy"),
        ];
        // A draw of 50 of 100 lands in heavy's range (after light's 1).
        let mut draws = [50u64, 0, 0].into_iter();
        let order = order_srv(records, || draws.next().unwrap());
        assert_eq!(hosts(&order), ["heavy", "light", "backup"]);
    }

    #[test]
    fn low_draw_picks_zero_weight_first_and_nothing_is_lost() {
        let records = vec![rec(5, 10, "a"), rec(5, 0, "zero"), rec(5, 10, "b")];
        let mut draws = [0u64, 15, 3].into_iter();
        let order = order_srv(records, || draws.next().unwrap());
        assert_eq!(hosts(&order), ["zero", "b", "a"]);
        let mut all = hosts(&order_srv(
            vec![rec(1, 3, "x"), rec(1, 3, "y"), rec(0, 0, "z")],
            random,
        ))
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        assert_eq!(all.remove(0), "z");
        all.sort();
        assert_eq!(all, ["x", "y"]);
    }

    #[tokio::test]
    async fn connect_tries_the_next_target() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead_port = dead.local_addr().unwrap().port();
        drop(dead);
        let targets = [
            Target {
                host: "127.0.0.1".into(),
                port: dead_port,
            },
            Target {
                host: "127.0.0.1".into(),
                port,
            },
        ];
        let (_, used) = connect(&targets, Duration::from_secs(5)).await.unwrap();
        assert_eq!(used.port, port);
        let err = connect(&targets[..1], Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(err.contains(&dead_port.to_string()), "{err}");
    }
}
