//! The client's real address behind trusted reverse proxies.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// `peer` unless it is a trusted proxy; then the nearest untrusted hop named by `Forwarded`
/// (preferred) or `X-Forwarded-For`. Headers from untrusted peers are ignored, so a client
/// cannot choose its own address.
pub fn client_addr(peer: SocketAddr, headers: &http::HeaderMap, trusted: &[IpNet]) -> SocketAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer.ip()) {
        return peer;
    }
    let mut hops: Vec<IpAddr> = forwarded_for(headers);
    if hops.is_empty() {
        hops = x_forwarded_for(headers);
    }
    // Walk from the hop nearest to us outwards; the first untrusted one is the client.
    let mut client = None;
    for ip in hops.iter().rev() {
        client = Some(*ip);
        if !is_trusted(ip) {
            break;
        }
    }
    client.map(|ip| SocketAddr::new(ip, 0)).unwrap_or(peer)
}

fn header_values<'a>(headers: &'a http::HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
}

fn x_forwarded_for(headers: &http::HeaderMap) -> Vec<IpAddr> {
    header_values(headers, "x-forwarded-for")
        .filter_map(|s| parse_node(s.trim()))
        .collect()
}

/// RFC 7239 `for=` parameters, e.g. `for=192.0.2.43, for="[2001:db8::1]:4711"`.
fn forwarded_for(headers: &http::HeaderMap) -> Vec<IpAddr> {
    header_values(headers, "forwarded")
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                if k.trim().eq_ignore_ascii_case("for") {
                    parse_node(v.trim().trim_matches('"'))
                } else {
                    None
                }
            })
        })
        .collect()
}

fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(sa) = node.parse::<SocketAddr>() {
        return Some(sa.ip());
    }
    // `[v6]` without a port.
    node.strip_prefix('[')?.strip_suffix(']')?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn untrusted_peer_headers_are_ignored() {
        let peer: SocketAddr = "203.0.113.9:5000".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "1.2.3.4")]);
        assert_eq!(client_addr(peer, &h, &nets(&["10.0.0.0/8"])), peer);
    }

    #[test]
    fn trusted_proxy_chain_yields_first_untrusted_hop() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7")]);
        let got = client_addr(peer, &h, &nets(&["10.0.0.0/8"]));
        assert_eq!(got.ip(), "1.2.3.4".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn forwarded_header_is_preferred() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let h = headers(&[
            ("forwarded", "for=\"[2001:db8::1]:4711\";proto=https"),
            ("x-forwarded-for", "9.9.9.9"),
        ]);
        let got = client_addr(peer, &h, &nets(&["127.0.0.1/32"]));
        assert_eq!(got.ip(), "2001:db8::1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_peer_without_headers_is_the_client() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert_eq!(
            client_addr(peer, &headers(&[]), &nets(&["127.0.0.1/32"])),
            peer
        );
    }
}
