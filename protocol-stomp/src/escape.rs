//! Header escaping (STOMP 1.1 `\n` `\c` `\\`, STOMP 1.2 adds `\r`).
//!
//! Escaping only ever involves ASCII bytes, so both directions work on
//! bytes and copy the UTF-8 runs between escapes unchanged.

use bytes::{BufMut, BytesMut};

use crate::{Command, DecodeError, Version};

/// How header octets are represented in one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Escaping {
    /// STOMP 1.0, and CONNECT/STOMP/CONNECTED in every version.
    Raw,
    V1_1,
    V1_2,
}

impl Escaping {
    pub(crate) fn for_frame(version: Version, command: Command) -> Escaping {
        if command.is_unescaped() {
            return Escaping::Raw;
        }
        match version {
            Version::V1_0 => Escaping::Raw,
            Version::V1_1 => Escaping::V1_1,
            Version::V1_2 => Escaping::V1_2,
        }
    }
}

/// Decodes one header name or value.
pub(crate) fn unescape(raw: &str, mode: Escaping) -> Result<String, DecodeError> {
    let bytes = raw.as_bytes();
    if mode == Escaping::Raw || !bytes.contains(&b'\\') {
        return Ok(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(i) = rest.find('\\') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        let c = match after.as_bytes().first() {
            Some(b'n') => '\n',
            Some(b'c') => ':',
            Some(b'\\') => '\\',
            Some(b'r') if mode == Escaping::V1_2 => '\r',
            _ => {
                // Report the pair as the client wrote it, but keep control
                // characters printable for the ERROR frame.
                let mut bad = String::from("\\");
                match after.chars().next() {
                    Some(c) if c.is_control() => bad.extend(c.escape_debug()),
                    Some(c) => bad.push(c),
                    None => {}
                }
                return Err(DecodeError::BadEscape(bad));
            }
        };
        out.push(c);
        rest = &after[1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Bytes `s` takes on the wire; lets the encoder reserve exactly once.
pub(crate) fn escaped_len(s: &str, mode: Escaping) -> usize {
    let extra = match mode {
        // Raw substitutions are 1:1.
        Escaping::Raw => 0,
        Escaping::V1_1 => s
            .bytes()
            .filter(|b| matches!(b, b'\n' | b':' | b'\\'))
            .count(),
        Escaping::V1_2 => s
            .bytes()
            .filter(|b| matches!(b, b'\n' | b':' | b'\\' | b'\r'))
            .count(),
    };
    s.len() + extra
}

/// Writes a header name (`is_name`) or value.
///
/// Raw frames cannot carry LF anywhere, nor ':' in a name; such bytes are
/// written as '?' so that an unrepresentable value can never inject extra
/// header lines or shift the name/value split.
pub(crate) fn write_escaped(s: &str, mode: Escaping, is_name: bool, out: &mut BytesMut) {
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let replacement: &[u8] = match (mode, b) {
            (Escaping::Raw, b'\n') => b"?",
            (Escaping::Raw, b':') if is_name => b"?",
            (Escaping::Raw, _) => continue,
            (_, b'\n') => b"\\n",
            (_, b':') => b"\\c",
            (_, b'\\') => b"\\\\",
            (Escaping::V1_2, b'\r') => b"\\r",
            _ => continue,
        };
        out.put_slice(&s.as_bytes()[start..i]);
        out.put_slice(replacement);
        start = i + 1;
    }
    out.put_slice(&s.as_bytes()[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn esc(s: &str, mode: Escaping, is_name: bool) -> String {
        let mut out = BytesMut::new();
        write_escaped(s, mode, is_name, &mut out);
        assert_eq!(out.len(), escaped_len(s, mode), "length for {s:?}");
        String::from_utf8(out.to_vec()).unwrap()
    }

    #[test]
    fn escapes_per_version() {
        let s = "a:b\nc\\d\re";
        assert_eq!(esc(s, Escaping::V1_2, false), "a\\cb\\nc\\\\d\\re");
        assert_eq!(esc(s, Escaping::V1_1, false), "a\\cb\\nc\\\\d\re");
        assert_eq!(esc(s, Escaping::Raw, false), "a:b?c\\d\re");
        assert_eq!(esc(s, Escaping::Raw, true), "a?b?c\\d\re");
        assert_eq!(esc("plain é", Escaping::V1_2, false), "plain é");
    }

    #[test]
    fn unescape_inverts_escape() {
        let s = "a:b\nc\\d\ré";
        for mode in [Escaping::V1_1, Escaping::V1_2] {
            let wire = esc(s, mode, false);
            assert_eq!(unescape(&wire, mode).unwrap(), s);
        }
    }

    #[test]
    fn undefined_escapes_are_errors() {
        let bad = |s, mode| unescape(s, mode).unwrap_err();
        assert_eq!(
            bad("a\\tb", Escaping::V1_2),
            DecodeError::BadEscape("\\t".into())
        );
        assert_eq!(
            bad("a\\r", Escaping::V1_1),
            DecodeError::BadEscape("\\r".into())
        );
        assert_eq!(
            bad("trailing\\", Escaping::V1_2),
            DecodeError::BadEscape("\\".into())
        );
        assert_eq!(
            bad("\\é", Escaping::V1_1),
            DecodeError::BadEscape("\\é".into())
        );
        assert_eq!(
            bad("\\\r", Escaping::V1_1),
            DecodeError::BadEscape("\\\\r".into())
        );
        // 1.0 and CONNECT-class frames take backslashes literally.
        assert_eq!(unescape("a\\tb", Escaping::Raw).unwrap(), "a\\tb");
    }

    #[test]
    fn connect_class_frames_are_never_escaped() {
        for v in [Version::V1_0, Version::V1_1, Version::V1_2] {
            for c in [Command::Connect, Command::Stomp, Command::Connected] {
                assert_eq!(Escaping::for_frame(v, c), Escaping::Raw);
            }
        }
        assert_eq!(
            Escaping::for_frame(Version::V1_0, Command::Send),
            Escaping::Raw
        );
        assert_eq!(
            Escaping::for_frame(Version::V1_1, Command::Send),
            Escaping::V1_1
        );
        assert_eq!(
            Escaping::for_frame(Version::V1_2, Command::Message),
            Escaping::V1_2
        );
    }
}
