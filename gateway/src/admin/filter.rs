//! `GET /api/sessions` parameters: which sessions (filters, all of which must match) and
//! which page of them (sessions are ordered by id, so pages are stable while sessions come
//! and go: a cursor resumes after the last id it saw).

use std::net::IpAddr;

use base64::Engine;
use ipnet::IpNet;

use crate::sessions::LiveSession;

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

const PARAMS: &str = "service, principal, peer, subprotocol, transport, limit, cursor, offset";

#[derive(Debug, Default)]
pub struct Filter {
    service: Option<String>,
    principal: Option<String>,
    peer: Option<IpNet>,
    /// `Some("")`: sessions that negotiated none.
    subprotocol: Option<String>,
    transport: Option<String>,
}

/// Where a page starts: after the session a cursor names (else at the first), then
/// `offset` matching sessions further on.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Start {
    pub after: Option<u64>,
    pub offset: usize,
}

#[derive(Debug)]
pub struct ListQuery {
    pub filter: Filter,
    pub limit: usize,
    pub start: Start,
}

impl ListQuery {
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, String> {
        let mut seen: Vec<String> = Vec::new();
        let mut filter = Filter::default();
        let mut limit = DEFAULT_LIMIT;
        let mut start = Start::default();
        for (name, value) in pairs {
            if seen.contains(&name) {
                return Err(format!("`{name}` is given twice"));
            }
            match name.as_str() {
                "service" => filter.service = Some(value),
                "principal" => filter.principal = Some(value),
                "subprotocol" => filter.subprotocol = Some(value),
                "peer" => filter.peer = Some(parse_peer(&value)?),
                "transport" => {
                    if value != "websocket" && value != "http" {
                        return Err(format!(
                            "transport: `{value}` is neither `websocket` nor `http`"
                        ));
                    }
                    filter.transport = Some(value);
                }
                "limit" => {
                    limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            format!("limit: `{value}` is not a whole number from 1 to {MAX_LIMIT}")
                        })?
                }
                "cursor" => start.after = Some(decode_cursor(&value)?),
                "offset" => {
                    start.offset = value
                        .parse::<i64>()
                        .ok()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| {
                            format!("offset: `{value}` is not a whole number from 0 to 2^63-1")
                        })?
                }
                other => return Err(format!("unknown parameter `{other}` (known: {PARAMS})")),
            }
            seen.push(name);
        }
        Ok(ListQuery {
            filter,
            limit,
            start,
        })
    }
}

impl Filter {
    pub fn matches(&self, s: &LiveSession) -> bool {
        let info = &s.info;
        if self.service.as_deref().is_some_and(|v| v != &*info.service) {
            return false;
        }
        if self
            .transport
            .as_deref()
            .is_some_and(|v| v != info.transport)
        {
            return false;
        }
        if let Some(want) = &self.subprotocol {
            if info.subprotocol.as_deref().unwrap_or("") != want {
                return false;
            }
        }
        if let Some(net) = &self.peer {
            if !net.contains(&info.peer.ip().to_canonical()) {
                return false;
            }
        }
        if let Some(want) = &self.principal {
            // Who the client is now: a protocol login may have named it after the handshake.
            if s.control.principal().is_none_or(|p| &p.name != want) {
                return false;
            }
        }
        true
    }
}

/// An address (`10.1.2.3`, `::1`) or a network (`10.0.0.0/8`).
fn parse_peer(value: &str) -> Result<IpNet, String> {
    if let Ok(ip) = value.parse::<IpAddr>() {
        return Ok(IpNet::from(ip.to_canonical()));
    }
    let net = value.parse::<IpNet>().map_err(|_| {
        format!("peer: `{value}` is neither an IP address nor a network such as 10.0.0.0/8")
    })?;
    // `::ffff:10.0.0.0/104` would never match: peers are compared in their IPv4 form.
    Ok(match net {
        IpNet::V6(v6) => match v6.addr().to_ipv4_mapped() {
            Some(v4) if v6.prefix_len() >= 96 => {
                IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96).unwrap_or(net)
            }
            _ => net,
        },
        v4 => v4,
    })
}

/// Cursors are opaque to clients; inside, the id of the last session a page held.
pub fn encode_cursor(after: u64) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(after.to_be_bytes())
}

fn decode_cursor(value: &str) -> Result<u64, String> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(value)
        .ok()
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .ok_or_else(|| {
            format!("cursor: `{value}` is not a cursor this API issued (use `next_cursor`)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &str) -> Result<ListQuery, String> {
        ListQuery::parse(super::super::query::pairs(Some(q)).unwrap())
    }

    #[test]
    fn defaults_and_bounds() {
        let q = parse("").unwrap();
        assert_eq!((q.limit, q.start), (DEFAULT_LIMIT, Start::default()));
        assert_eq!(parse("limit=1000").unwrap().limit, 1000);
        for bad in [
            "limit=0",
            "limit=1001",
            "limit=-1",
            "limit=x",
            "offset=-2",
            "offset=9223372036854775808",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        assert_eq!(parse("offset=5").unwrap().start.offset, 5);
    }

    #[test]
    fn cursors_round_trip_and_strangers_are_refused() {
        let c = encode_cursor(42);
        assert_eq!(parse(&format!("cursor={c}")).unwrap().start.after, Some(42));
        assert!(parse("cursor=42").unwrap_err().contains("next_cursor"));
        let both = parse(&format!("cursor={c}&offset=1")).unwrap().start;
        assert_eq!(
            both,
            Start {
                after: Some(42),
                offset: 1
            }
        );
    }

    #[test]
    fn peers_are_addresses_or_networks() {
        let q = parse("peer=10.1.2.3").unwrap();
        assert_eq!(q.filter.peer.unwrap().to_string(), "10.1.2.3/32");
        let q = parse("peer=::ffff:10.0.0.0/104").unwrap();
        assert_eq!(q.filter.peer.unwrap().to_string(), "10.0.0.0/8");
        assert!(parse("peer=10.0.0.0/33").unwrap_err().contains("peer"));
        assert!(parse("peer=host.example").is_err());
    }

    #[test]
    fn unknown_repeated_and_bad_enums_are_named() {
        assert!(parse("servce=echo").unwrap_err().contains("servce"));
        assert!(parse("service=a&service=b").unwrap_err().contains("twice"));
        assert!(parse("transport=sse").unwrap_err().contains("transport"));
        assert!(parse("transport=http").is_ok());
    }
}
