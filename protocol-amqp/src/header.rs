//! The eight octets a client opens with: "AMQP", a protocol id and a version.

use bytes::{Buf, BytesMut};

/// What the client says it speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolHeader {
    /// `AMQP 0 0 9 1`: the protocol served here.
    Amqp091,
    /// `AMQP id 1 0 0`: AMQP 1.0 (id 0 plain, 2 TLS, 3 SASL), a different protocol on the
    /// same port and token.
    Amqp10 { protocol_id: u8 },
    /// "AMQP" then a version this crate does not know (0-8, 0-9, 0-10...).
    OtherVersion([u8; 4]),
    /// Not an AMQP protocol header at all.
    NotAmqp,
}

/// Take the protocol header off `buf` once its eight octets are in; `None` until then. A
/// buffer that cannot start with "AMQP" is known to be garbage from its first octets.
pub fn parse_protocol_header(buf: &mut BytesMut) -> Option<ProtocolHeader> {
    let seen = buf.len().min(4);
    if buf[..seen] != b"AMQP"[..seen] {
        return Some(ProtocolHeader::NotAmqp);
    }
    if buf.len() < 8 {
        return None;
    }
    let v = [buf[4], buf[5], buf[6], buf[7]];
    buf.advance(8);
    Some(match v {
        [0, 0, 9, 1] => ProtocolHeader::Amqp091,
        [id, 1, 0, 0] => ProtocolHeader::Amqp10 { protocol_id: id },
        other => ProtocolHeader::OtherVersion(other),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> (Option<ProtocolHeader>, usize) {
        let mut b = BytesMut::from(bytes);
        let h = parse_protocol_header(&mut b);
        (h, b.len())
    }

    #[test]
    fn versions_are_told_apart_by_the_header() {
        assert_eq!(
            parse(b"AMQP\0\0\x09\x01rest"),
            (Some(ProtocolHeader::Amqp091), 4)
        );
        assert_eq!(
            parse(b"AMQP\x03\x01\0\0"),
            (Some(ProtocolHeader::Amqp10 { protocol_id: 3 }), 0)
        );
        assert_eq!(
            parse(b"AMQP\x01\x01\x00\x0a"),
            (Some(ProtocolHeader::OtherVersion([1, 1, 0, 10])), 0)
        );
    }

    #[test]
    fn a_partial_header_waits_and_garbage_is_known_early() {
        assert_eq!(parse(b"AMQ").0, None);
        assert_eq!(parse(b"AMQP\0\0").0, None);
        assert_eq!(parse(b"GET ").0, Some(ProtocolHeader::NotAmqp));
        assert_eq!(parse(b"X").0, Some(ProtocolHeader::NotAmqp));
    }
}
