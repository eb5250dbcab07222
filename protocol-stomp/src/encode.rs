//! Frame encoder.
//!
//! Output is a pure function of (frame, version), so a MESSAGE can be
//! encoded once and the resulting `Bytes` shared by every subscriber.

use bytes::{BufMut, Bytes, BytesMut};

use crate::escape::{escaped_len, write_escaped, Escaping};
use crate::{Frame, Version};

const CONTENT_LENGTH: &str = "content-length";

/// Appends the wire form of `frame` to `out` with a single reservation.
///
/// `content-length` is computed, never copied: any such header in
/// `frame.headers` is dropped and, for a non-empty body, a correct one is
/// appended after the other headers. That keeps binary bodies (with NULs)
/// intact for every command, and a forwarded stale length can't corrupt
/// the stream. Empty bodies get none: the NUL alone delimits them.
pub fn encode(frame: &Frame, version: Version, out: &mut BytesMut) {
    let mode = Escaping::for_frame(version, frame.command);
    let command = frame.command.as_str();
    let headers = || frame.headers.iter().filter(|(n, _)| *n != CONTENT_LENGTH);

    let mut digits = [0u8; 20];
    let length = (!frame.body.is_empty()).then(|| format_usize(frame.body.len(), &mut digits));

    let mut size = command.len() + 1;
    for (name, value) in headers() {
        size += escaped_len(name, mode) + 1 + escaped_len(value, mode) + eol(mode, value).len();
    }
    if let Some(digits) = length {
        size += CONTENT_LENGTH.len() + 1 + digits.len() + 1;
    }
    size += 1 + frame.body.len() + 1;
    out.reserve(size);

    out.put_slice(command.as_bytes());
    out.put_u8(b'\n');
    for (name, value) in headers() {
        write_escaped(name, mode, true, out);
        out.put_u8(b':');
        write_escaped(value, mode, false, out);
        out.put_slice(eol(mode, value));
    }
    if let Some(digits) = length {
        out.put_slice(CONTENT_LENGTH.as_bytes());
        out.put_u8(b':');
        out.put_slice(digits);
        out.put_u8(b'\n');
    }
    out.put_u8(b'\n');
    out.put_slice(&frame.body);
    out.put_u8(0);
}

/// Encodes into a fresh, exactly sized, shareable buffer.
pub fn encode_to_bytes(frame: &Frame, version: Version) -> Bytes {
    let mut out = BytesMut::new();
    encode(frame, version, &mut out);
    out.freeze()
}

/// One heart-beat (a bare EOL), valid in every version.
pub fn heart_beat() -> &'static [u8] {
    b"\n"
}

/// Line terminator after `value`. Before 1.2 (and in unescaped frames) a
/// trailing CR cannot be escaped; ending that line with CRLF lets readers
/// that strip one CR of a CRLF (1.2 readers, ours) recover it exactly,
/// where a bare LF would make it look like part of the EOL and lose it.
fn eol(mode: Escaping, value: &str) -> &'static [u8] {
    if mode != Escaping::V1_2 && value.ends_with('\r') {
        b"\r\n"
    } else {
        b"\n"
    }
}

/// Decimal digits of `n` without allocating.
fn format_usize(mut n: usize, buf: &mut [u8; 20]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[i..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Command;

    fn wire(frame: &Frame, v: Version) -> Vec<u8> {
        encode_to_bytes(frame, v).to_vec()
    }

    #[test]
    fn basic_layout() {
        let f = Frame::new(Command::Send)
            .header("destination", "/q")
            .with_body("hi");
        assert_eq!(
            wire(&f, Version::V1_2),
            b"SEND\ndestination:/q\ncontent-length:2\n\nhi\0"
        );
        assert_eq!(
            wire(&Frame::new(Command::Disconnect), Version::V1_0),
            b"DISCONNECT\n\n\0"
        );
    }

    #[test]
    fn content_length_is_recomputed() {
        let f = Frame::new(Command::Message)
            .header("content-length", "999")
            .header("a", "b")
            .with_body(&b"\0\0\0"[..]);
        assert_eq!(
            wire(&f, Version::V1_1),
            b"MESSAGE\na:b\ncontent-length:3\n\n\0\0\0\0"
        );
        let empty = Frame::new(Command::Error).header("content-length", "5");
        assert_eq!(wire(&empty, Version::V1_2), b"ERROR\n\n\0");
    }

    #[test]
    fn escaping_per_version_and_command() {
        let f = Frame::new(Command::Message).header("k:", "a\nb\\c\r");
        assert_eq!(
            wire(&f, Version::V1_2),
            b"MESSAGE\nk\\c:a\\nb\\\\c\\r\n\n\0"
        );
        assert_eq!(
            wire(&f, Version::V1_1),
            b"MESSAGE\nk\\c:a\\nb\\\\c\r\r\n\n\0"
        );
        // 1.0 and CONNECTED cannot carry LF or a ':' in a name: neutralised.
        assert_eq!(wire(&f, Version::V1_0), b"MESSAGE\nk?:a?b\\c\r\r\n\n\0");
        let c = Frame::new(Command::Connected).header("server", "x:1\\2");
        assert_eq!(wire(&c, Version::V1_2), b"CONNECTED\nserver:x:1\\2\n\n\0");
    }

    #[test]
    fn deterministic_and_exactly_sized() {
        let f = Frame::new(Command::Message)
            .header("subscription", "sub-1")
            .header("x", "é:\n")
            .with_body(vec![7u8; 1000]);
        let a = encode_to_bytes(&f, Version::V1_2);
        let b = encode_to_bytes(&f, Version::V1_2);
        assert_eq!(a, b);
        let mut out = BytesMut::new();
        encode(&f, Version::V1_2, &mut out);
        assert_eq!(out.len(), a.len());
        assert_eq!(out.capacity(), out.len(), "single exact reservation");
    }

    #[test]
    fn formats_numbers() {
        let mut d = [0u8; 20];
        assert_eq!(format_usize(0, &mut d), b"0");
        assert_eq!(format_usize(1234567890, &mut d), b"1234567890");
        assert_eq!(
            format_usize(usize::MAX, &mut d),
            usize::MAX.to_string().as_bytes()
        );
        assert_eq!(heart_beat(), b"\n");
    }
}
