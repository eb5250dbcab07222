use super::*;

const SIG: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";

/// A v2 header: `ver_cmd` (0x21 PROXY, 0x20 LOCAL), `fam` (0x11 TCP4, 0x21 TCP6...),
/// then the address block and TLVs as `rest`, with the length field computed.
fn v2(ver_cmd: u8, fam: u8, rest: &[u8]) -> Vec<u8> {
    let mut b = SIG.to_vec();
    b.push(ver_cmd);
    b.push(fam);
    b.extend((rest.len() as u16).to_be_bytes());
    b.extend(rest);
    b
}

fn tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut b = src.to_vec();
    b.extend(dst);
    b.extend(sport.to_be_bytes());
    b.extend(dport.to_be_bytes());
    b
}

fn header(buf: &[u8]) -> (usize, Version, Option<SocketAddr>) {
    match parse(buf) {
        Ok(Parsed::Header {
            len,
            version,
            source,
        }) => (len, version, source),
        other => panic!("expected a header from {buf:?}, got {other:?}"),
    }
}

fn addr(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[test]
fn v1_tcp4_and_what_follows_it() {
    let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
    let mut buf = line.to_vec();
    buf.extend(b"GET / HTTP/1.1\r\n");
    assert_eq!(
        header(&buf),
        (line.len(), Version::V1, addr("192.0.2.7:56324"))
    );
}

#[test]
fn v1_tcp6() {
    let line = b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 443\r\n";
    assert_eq!(
        header(line),
        (line.len(), Version::V1, addr("[2001:db8::7]:4000"))
    );
}

#[test]
fn v1_unknown_uses_the_socket_address() {
    let line = b"PROXY UNKNOWN\r\n";
    assert_eq!(header(line), (line.len(), Version::V1, None));
    let line = b"PROXY UNKNOWN ffff:f...f:ffff 65535 65535\r\n";
    assert_eq!(header(line).2, None);
}

#[test]
fn v1_every_prefix_is_incomplete() {
    let line = b"PROXY TCP4 192.0.2.7 198.51.100.1 56324 443\r\n";
    for n in 0..line.len() {
        assert_eq!(
            parse(&line[..n]),
            Ok(Parsed::Incomplete),
            "{:?}",
            String::from_utf8_lossy(&line[..n])
        );
    }
}

#[test]
fn v2_tcp4_with_tlvs_ignored() {
    let mut rest = tcp4([203, 0, 113, 9], [10, 0, 0, 1], 40000, 8080);
    // An ALPN TLV and AWS's VPC endpoint TLV: neither is read.
    rest.extend([0x01, 0x00, 0x02, b'h', b'2']);
    rest.extend([0xEA, 0x00, 0x04, 0x01, b'v', b'p', b'c']);
    let mut buf = v2(0x21, 0x11, &rest);
    let len = buf.len();
    buf.extend(b"\x16\x03\x01"); // a TLS record after it
    assert_eq!(header(&buf), (len, Version::V2, addr("203.0.113.9:40000")));
}

#[test]
fn v2_tcp6() {
    let src: std::net::Ipv6Addr = "2001:db8::9".parse().unwrap();
    let dst: std::net::Ipv6Addr = "2001:db8::1".parse().unwrap();
    let mut rest = src.octets().to_vec();
    rest.extend(dst.octets());
    rest.extend(5555u16.to_be_bytes());
    rest.extend(443u16.to_be_bytes());
    let buf = v2(0x21, 0x21, &rest);
    assert_eq!(
        header(&buf),
        (buf.len(), Version::V2, addr("[2001:db8::9]:5555"))
    );
}

#[test]
fn v2_local_is_a_health_check_on_the_socket_address() {
    // HAProxy's checks send LOCAL with no addresses; others send LOCAL with some.
    let buf = v2(0x20, 0x00, &[]);
    assert_eq!(header(&buf), (16, Version::V2, None));
    let buf = v2(0x20, 0x11, &tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    assert_eq!(header(&buf).2, None);
}

#[test]
fn v2_proxy_unspec_uses_the_socket_address() {
    assert_eq!(header(&v2(0x21, 0x00, &[])).2, None);
}

#[test]
fn v2_every_prefix_is_incomplete() {
    let buf = v2(0x21, 0x11, &tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    for n in 0..buf.len() {
        assert_eq!(parse(&buf[..n]), Ok(Parsed::Incomplete), "{n} bytes");
    }
}

#[test]
fn no_signature_is_named_with_what_came_instead() {
    let err = parse(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap_err();
    assert!(matches!(err, HeaderError::NoSignature(ref s) if s.starts_with("GET / HTTP/1.1")));
    // A TLS ClientHello: the proxy forgot send-proxy in front of a TLS listener.
    assert!(matches!(
        parse(b"\x16\x03\x01\x02\x00\x01"),
        Err(HeaderError::NoSignature(_))
    ));
    // Wrong early: no need to wait for more bytes.
    assert!(matches!(parse(b"X"), Err(HeaderError::NoSignature(_))));
    assert!(matches!(parse(b"PROXX"), Err(HeaderError::NoSignature(_))));
}

#[test]
fn bad_v2_signature_or_version() {
    let mut buf = v2(0x21, 0x11, &tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    buf[11] = b'X';
    assert!(parse(&buf).is_err());
    let buf = v2(0x11, 0x11, &tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    assert!(matches!(parse(&buf), Err(HeaderError::V2(_))));
    let buf = v2(0x2F, 0x11, &tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    assert!(
        matches!(parse(&buf), Err(HeaderError::V2(_))),
        "command 0xF"
    );
}

#[test]
fn oversize_v2_length_is_refused_before_it_is_buffered() {
    let mut buf = SIG.to_vec();
    buf.extend([0x21, 0x11, 0xFF, 0xFF]);
    assert_eq!(parse(&buf), Err(HeaderError::TooLong(16 + 0xFFFF)));
    // At the limit it is still fine.
    let rest = {
        let mut r = tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2);
        let pad = MAX_V2_HEADER - 16 - r.len() - 3;
        r.extend([0x04]); // PP2_TYPE_NOOP
        r.extend((pad as u16).to_be_bytes());
        r.extend(vec![0; pad]);
        r
    };
    let buf = v2(0x21, 0x11, &rest);
    assert_eq!(buf.len(), MAX_V2_HEADER);
    assert_eq!(header(&buf).0, MAX_V2_HEADER);
}

#[test]
fn v1_without_end_of_line_is_refused_at_its_maximum_length() {
    let mut line = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2".to_vec();
    line.resize(MAX_V1_HEADER, b'0');
    assert!(matches!(parse(&line), Err(HeaderError::V1(_))));
}

#[test]
fn wrong_family() {
    // v2: an address block too short for the family it names.
    let buf = v2(0x21, 0x21, &tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    assert!(matches!(parse(&buf), Err(HeaderError::V2(_))));
    // v2: a family nibble that does not exist.
    let buf = v2(0x21, 0x41, &tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    assert!(matches!(parse(&buf), Err(HeaderError::V2(_))));
    // v2: UDP and UNIX sockets are not what a TCP listener serves.
    let buf = v2(0x21, 0x12, &tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2));
    assert_eq!(parse(&buf), Err(HeaderError::Unsupported("UDP")));
    let buf = v2(0x21, 0x31, &[0; 216]);
    assert_eq!(parse(&buf), Err(HeaderError::Unsupported("UNIX socket")));
    // v1: an IPv6 address under TCP4, and a protocol that is not one.
    assert!(matches!(
        parse(b"PROXY TCP4 2001:db8::1 2001:db8::2 1 2\r\n"),
        Err(HeaderError::V1(_))
    ));
    assert!(matches!(
        parse(b"PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"),
        Err(HeaderError::V1(_))
    ));
}

#[test]
fn v1_bad_ports_and_endings() {
    for bad in [
        &b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 \xff 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"PROXY TCP4 1.2.3.4\r5.6.7.8 1 2\r\n",
        b"PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2          padding past the longest line a v1 header may be\r\n",
    ] {
        assert!(
            matches!(parse(bad), Err(HeaderError::V1(_))),
            "{:?}: {:?}",
            String::from_utf8_lossy(bad),
            parse(bad)
        );
    }
}
