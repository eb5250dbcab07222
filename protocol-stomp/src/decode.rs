//! Incremental, sans-IO frame decoder.
//!
//! The caller appends whatever the transport delivered to a `BytesMut` and
//! calls [`Decoder::decode`] until it returns `Ok(None)`. The decoder only
//! *looks* at the buffer until a whole frame (or heart-beat) is there, then
//! consumes exactly that much. Scan progress is remembered between calls so
//! a frame trickling in costs O(frame) overall rather than O(frame²), and
//! every limit is enforced on the bytes seen so far, so a peer can never
//! make us buffer more than `max_frame_size` (+ one read) for one frame.

use bytes::{Buf, Bytes, BytesMut};

use crate::command::MAX_COMMAND_LEN;
use crate::error::snippet;
use crate::escape::{unescape, Escaping};
use crate::{Command, DecodeError, Frame, Headers, Version};

/// Resource limits for one decoded frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Command line + header lines + blank line + body, excluding the NUL.
    pub max_frame_size: usize,
    /// Number of header lines.
    pub max_headers: usize,
    /// One raw `name:value` line, excluding its EOL.
    pub max_header_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_frame_size: 8 * 1024 * 1024,
            max_headers: 64,
            max_header_len: 8 * 1024,
        }
    }
}

/// One unit of the byte stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decoded {
    Frame(Frame),
    /// A bare EOL between frames; peers send these to prove liveness.
    HeartBeat,
}

/// Where the decoder is inside the frame at the front of the buffer.
/// All offsets are relative to the start of the buffer, which is always the
/// start of the current frame because nothing is consumed mid-frame.
#[derive(Debug)]
enum State {
    /// Looking for the blank line that ends the header section.
    Head {
        /// Bytes before this offset contain no unprocessed LF.
        scanned: usize,
        /// Start of the line being scanned.
        line_start: usize,
        /// Complete non-empty lines so far (command + headers).
        lines: usize,
    },
    /// Header section parsed once; waiting for the body and its NUL.
    Body {
        head_len: usize,
        command: Command,
        headers: Headers,
        content_length: Option<usize>,
        /// Body bytes before this offset contain no NUL (no content-length).
        scanned: usize,
    },
}

impl State {
    const START: State = State::Head {
        scanned: 0,
        line_start: 0,
        lines: 0,
    };

    /// Largest buffer offset the saved progress relies on.
    fn high_water(&self) -> usize {
        match *self {
            State::Head { scanned, .. } | State::Body { scanned, .. } => scanned,
        }
    }
}

/// Outcome of scanning the header section.
enum HeadScan {
    NeedMore,
    /// A bare EOL of this many bytes came before any command.
    HeartBeat(usize),
    /// The header section (including the blank line) is this long.
    Complete(usize),
}

/// Decodes a STOMP byte stream; one per connection.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    version: Version,
    state: State,
}

impl Decoder {
    /// Starts as 1.2: the first frame is CONNECT/STOMP, which is unescaped in
    /// every version, and 1.2's CRLF handling is accepted everywhere anyway.
    pub fn new(limits: Limits) -> Self {
        Decoder {
            limits,
            version: Version::V1_2,
            state: State::START,
        }
    }

    /// Switches header unescaping to the negotiated version; affects frames
    /// whose header section has not been parsed yet.
    pub fn set_version(&mut self, v: Version) {
        self.version = v;
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// Decodes the next frame or heart-beat from the front of `buf`.
    ///
    /// `Ok(None)` means more bytes are needed; `buf` is then left untouched
    /// and the same (grown) buffer must be passed next time. On success
    /// exactly one frame or heart-beat is consumed. After an error the
    /// stream is out of sync: report it and close the connection.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        // Saved progress is only valid for a buffer that has grown since;
        // if the caller handed us something shorter, start over safely.
        if self.state.high_water() > buf.len() {
            self.state = State::START;
        }
        let result = self.step(buf);
        if result.is_err() {
            self.state = State::START;
        }
        result
    }

    fn step(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        if let State::Head { .. } = self.state {
            match self.scan_head(buf)? {
                HeadScan::NeedMore => return Ok(None),
                HeadScan::HeartBeat(n) => {
                    buf.advance(n);
                    self.state = State::START;
                    return Ok(Some(Decoded::HeartBeat));
                }
                HeadScan::Complete(head_len) => self.state = self.parse_head(&buf[..head_len])?,
            }
        }
        self.scan_body(buf)
    }

    /// Advances through complete lines, checking limits line by line, and
    /// checks the trailing partial line so oversized input fails early.
    fn scan_head(&mut self, buf: &[u8]) -> Result<HeadScan, DecodeError> {
        let State::Head {
            scanned,
            line_start,
            lines,
        } = &mut self.state
        else {
            unreachable!("scan_head outside Head state");
        };
        let limits = self.limits;
        while let Some(off) = buf[*scanned..].iter().position(|&b| b == b'\n') {
            let end = *scanned + off + 1;
            let line = strip_cr(&buf[*line_start..end - 1]);
            if end > limits.max_frame_size {
                return Err(DecodeError::FrameTooLarge {
                    limit: limits.max_frame_size,
                });
            }
            if line.is_empty() {
                return Ok(if *lines == 0 {
                    HeadScan::HeartBeat(end)
                } else {
                    HeadScan::Complete(end)
                });
            }
            if *lines == 0 {
                if Command::parse(line).is_none() {
                    return Err(DecodeError::UnknownCommand(snippet(line)));
                }
            } else {
                check_header_line(line.len(), *lines, &limits)?;
            }
            *lines += 1;
            *line_start = end;
            *scanned = end;
        }
        *scanned = buf.len();

        // No complete line left: judge the partial one by what it already is.
        if buf.len() > limits.max_frame_size {
            return Err(DecodeError::FrameTooLarge {
                limit: limits.max_frame_size,
            });
        }
        // A trailing CR may be the first half of CRLF, so it doesn't count.
        let partial = strip_cr(&buf[*line_start..]);
        if *lines == 0 {
            if partial.len() > MAX_COMMAND_LEN || !Command::could_start(partial) {
                return Err(DecodeError::UnknownCommand(snippet(partial)));
            }
        } else if !partial.is_empty() {
            check_header_line(partial.len(), *lines, &limits)?;
        }
        Ok(HeadScan::NeedMore)
    }

    /// Parses a complete header section (command line through blank line).
    fn parse_head(&self, head: &[u8]) -> Result<State, DecodeError> {
        let mut lines = head.split(|&b| b == b'\n').map(strip_cr);
        let command_line = lines.next().unwrap_or_default();
        let command = Command::parse(command_line)
            .ok_or_else(|| DecodeError::UnknownCommand(snippet(command_line)))?;
        let mode = Escaping::for_frame(self.version, command);

        let mut headers = Headers::with_capacity(8);
        for raw in lines.take_while(|l| !l.is_empty()) {
            let line = std::str::from_utf8(raw).map_err(|_| DecodeError::NotUtf8)?;
            // Split at the first raw ':'. Later raw colons are kept in the
            // value (1.0 style) rather than rejected: lenient and unambiguous.
            let colon = match line.find(':') {
                Some(i) if i > 0 => i,
                _ => return Err(DecodeError::HeaderWithoutColon(snippet(raw))),
            };
            let name = unescape(&line[..colon], mode)?;
            let value = unescape(&line[colon + 1..], mode)?;
            headers.push(name, value);
        }

        let content_length = match headers.get("content-length") {
            None => None,
            Some(v) => {
                let n = parse_content_length(v, self.limits.max_frame_size)?;
                if head.len().saturating_add(n) > self.limits.max_frame_size {
                    // Refuse before buffering a single body byte.
                    return Err(DecodeError::FrameTooLarge {
                        limit: self.limits.max_frame_size,
                    });
                }
                Some(n)
            }
        };
        Ok(State::Body {
            head_len: head.len(),
            command,
            headers,
            content_length,
            scanned: head.len(),
        })
    }

    fn scan_body(&mut self, buf: &mut BytesMut) -> Result<Option<Decoded>, DecodeError> {
        let State::Body {
            head_len,
            content_length,
            scanned,
            ..
        } = &mut self.state
        else {
            unreachable!("scan_body outside Body state");
        };
        let head_len = *head_len;
        let body_len = match *content_length {
            Some(n) => {
                let nul = head_len + n;
                match buf.get(nul) {
                    None => return Ok(None),
                    Some(0) => n,
                    Some(_) => return Err(DecodeError::MissingNul),
                }
            }
            None => match buf[*scanned..].iter().position(|&b| b == 0) {
                Some(off) => {
                    let nul = *scanned + off;
                    if nul > self.limits.max_frame_size {
                        return Err(DecodeError::FrameTooLarge {
                            limit: self.limits.max_frame_size,
                        });
                    }
                    nul - head_len
                }
                None => {
                    *scanned = buf.len();
                    // The frame is at least as long as what is buffered.
                    if buf.len() > self.limits.max_frame_size {
                        return Err(DecodeError::FrameTooLarge {
                            limit: self.limits.max_frame_size,
                        });
                    }
                    return Ok(None);
                }
            },
        };

        let State::Body {
            command, headers, ..
        } = std::mem::replace(&mut self.state, State::START)
        else {
            unreachable!("state checked above");
        };
        buf.advance(head_len);
        // An empty body must not pin the read buffer's allocation.
        let body = if body_len == 0 {
            Bytes::new()
        } else {
            buf.split_to(body_len).freeze()
        };
        buf.advance(1); // the NUL
        Ok(Some(Decoded::Frame(Frame {
            command,
            headers,
            body,
        })))
    }
}

/// Removes one trailing CR: CRLF is an EOL in 1.2 and accepted everywhere.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// Limits for the header line that will be header number `index` (1-based).
fn check_header_line(len: usize, index: usize, limits: &Limits) -> Result<(), DecodeError> {
    if index > limits.max_headers {
        return Err(DecodeError::TooManyHeaders {
            limit: limits.max_headers,
        });
    }
    if len > limits.max_header_len {
        return Err(DecodeError::HeaderTooLong {
            limit: limits.max_header_len,
        });
    }
    Ok(())
}

/// Strict decimal: no sign, no spaces, at least one digit. A well-formed
/// number too big for `usize` is a size problem, not a syntax problem.
fn parse_content_length(v: &str, max_frame_size: usize) -> Result<usize, DecodeError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(DecodeError::InvalidContentLength(snippet(v.as_bytes())));
    }
    v.parse().map_err(|_| DecodeError::FrameTooLarge {
        limit: max_frame_size,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decoder(v: Version) -> Decoder {
        let mut d = Decoder::new(Limits::default());
        d.set_version(v);
        d
    }

    fn decode_all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Decoded>, DecodeError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(x) = d.decode(&mut buf)? {
            out.push(x);
        }
        Ok(out)
    }

    fn one_frame(v: Version, bytes: &[u8]) -> Frame {
        match decode_all(&mut decoder(v), bytes).unwrap().as_slice() {
            [Decoded::Frame(f)] => f.clone(),
            other => panic!("expected one frame, got {other:?}"),
        }
    }

    fn err(v: Version, bytes: &[u8]) -> DecodeError {
        decode_all(&mut decoder(v), bytes).unwrap_err()
    }

    #[test]
    fn simple_frame() {
        let f = one_frame(Version::V1_2, b"SEND\ndestination:/q\n\nhello\0");
        assert_eq!(f.command, Command::Send);
        assert_eq!(f.headers.get("destination"), Some("/q"));
        assert_eq!(&f.body[..], b"hello");
    }

    #[test]
    fn crlf_accepted_in_every_version() {
        for v in [Version::V1_0, Version::V1_1, Version::V1_2] {
            let f = one_frame(v, b"SEND\r\ndestination:/q\r\n\r\nx\0");
            assert_eq!(f.headers.get("destination"), Some("/q"));
            assert_eq!(&f.body[..], b"x");
        }
    }

    #[test]
    fn heart_beats_one_per_eol() {
        let mut d = decoder(Version::V1_2);
        let got = decode_all(&mut d, b"\n\r\nSEND\n\n\0\n\r\n\n").unwrap();
        use Decoded::HeartBeat as H;
        assert_eq!(got.len(), 6);
        assert_eq!(got[..2], [H, H]);
        assert!(matches!(got[2], Decoded::Frame(_)));
        assert_eq!(got[3..], [H, H, H]);
    }

    #[test]
    fn lone_cr_waits_for_lf() {
        let mut d = decoder(Version::V1_2);
        let mut buf = BytesMut::from(&b"\r"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"\n");
        assert_eq!(d.decode(&mut buf), Ok(Some(Decoded::HeartBeat)));
        assert!(buf.is_empty());
    }

    #[test]
    fn byte_by_byte_leaves_buffer_untouched_until_complete() {
        let wire: &[u8] = b"MESSAGE\r\nsubscription:0\nmessage-id:7\ncontent-length:3\n\na\0b\0\n";
        let mut d = decoder(Version::V1_2);
        let mut buf = BytesMut::new();
        let frame_end = wire.len() - 1;
        for (i, &b) in wire[..frame_end].iter().enumerate() {
            buf.extend_from_slice(&[b]);
            if i + 1 < frame_end {
                assert_eq!(d.decode(&mut buf), Ok(None), "prefix {}", i + 1);
                assert_eq!(&buf[..], &wire[..=i]);
            }
        }
        let Some(Decoded::Frame(f)) = d.decode(&mut buf).unwrap() else {
            panic!("no frame");
        };
        assert_eq!(&f.body[..], b"a\0b");
        assert!(buf.is_empty());
        buf.extend_from_slice(b"\n");
        assert_eq!(d.decode(&mut buf), Ok(Some(Decoded::HeartBeat)));
    }

    #[test]
    fn several_frames_one_per_call() {
        let mut d = decoder(Version::V1_1);
        let mut buf = BytesMut::from(&b"BEGIN\ntransaction:t\n\n\0COMMIT\ntransaction:t\n\n\0"[..]);
        let Some(Decoded::Frame(a)) = d.decode(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(a.command, Command::Begin);
        assert_eq!(&buf[..], b"COMMIT\ntransaction:t\n\n\0");
        let Some(Decoded::Frame(b)) = d.decode(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(b.command, Command::Commit);
        assert_eq!(d.decode(&mut buf), Ok(None));
    }

    #[test]
    fn repeated_headers_first_wins() {
        let f = one_frame(Version::V1_2, b"MESSAGE\nfoo:World\nfoo:Hello\n\n\0");
        assert_eq!(f.headers.get("foo"), Some("World"));
        assert_eq!(f.headers.len(), 2);
    }

    #[test]
    fn unescaping_per_version() {
        let wire = b"SEND\na\\cb:x\\ny\\\\z\\cw\n\n\0";
        let f = one_frame(Version::V1_1, wire);
        assert_eq!(f.headers.get("a:b"), Some("x\ny\\z:w"));
        let f = one_frame(Version::V1_2, b"SEND\nk:a\\rb\n\n\0");
        assert_eq!(f.headers.get("k"), Some("a\rb"));
        // 1.0 has no escapes at all.
        let f = one_frame(Version::V1_0, b"SEND\nk:a\\tb\\c\n\n\0");
        assert_eq!(f.headers.get("k"), Some("a\\tb\\c"));
        assert_eq!(
            err(Version::V1_1, b"SEND\nk:a\\rb\n\n\0"),
            DecodeError::BadEscape("\\r".into())
        );
        assert_eq!(
            err(Version::V1_2, b"SEND\nk:a\\tb\n\n\0"),
            DecodeError::BadEscape("\\t".into())
        );
    }

    #[test]
    fn connect_class_frames_are_not_unescaped() {
        for (cmd, v) in [
            ("CONNECT", Version::V1_2),
            ("STOMP", Version::V1_1),
            ("CONNECTED", Version::V1_2),
        ] {
            let wire = format!("{cmd}\nlogin:a\\tb:c\n\n\0");
            let f = one_frame(v, wire.as_bytes());
            assert_eq!(f.headers.get("login"), Some("a\\tb:c"));
        }
    }

    #[test]
    fn raw_colon_in_value_is_kept() {
        let f = one_frame(Version::V1_2, b"SEND\nurl:http://x:1\n\n\0");
        assert_eq!(f.headers.get("url"), Some("http://x:1"));
    }

    #[test]
    fn content_length_allows_nul_in_body() {
        let f = one_frame(Version::V1_2, b"SEND\ncontent-length:5\n\n\0\x01\0\x02\0\0");
        assert_eq!(&f.body[..], b"\0\x01\0\x02\0");
        let f = one_frame(Version::V1_2, b"SEND\ncontent-length:0\n\n\0");
        assert!(f.body.is_empty());
    }

    #[test]
    fn content_length_errors() {
        assert_eq!(
            err(Version::V1_2, b"SEND\ncontent-length:3\n\nabcd\0"),
            DecodeError::MissingNul
        );
        for bad in ["", "x", "-1", "+1", " 1", "1 ", "0x10"] {
            let wire = format!("SEND\ncontent-length:{bad}\n\n\0");
            assert_eq!(
                err(Version::V1_2, wire.as_bytes()),
                DecodeError::InvalidContentLength(bad.into()),
                "{bad:?}"
            );
        }
        // First occurrence wins, like every other header.
        let f = one_frame(
            Version::V1_2,
            b"SEND\ncontent-length:1\ncontent-length:x\n\n\0\0",
        );
        assert_eq!(&f.body[..], b"\0");
    }

    #[test]
    fn huge_content_length_fails_before_body_arrives() {
        let mut d = decoder(Version::V1_2);
        let mut buf = BytesMut::from(&b"SEND\ncontent-length:9999999999\n\n"[..]);
        assert_eq!(
            d.decode(&mut buf),
            Err(DecodeError::FrameTooLarge {
                limit: 8 * 1024 * 1024
            })
        );
        let mut buf = BytesMut::from(&b"SEND\ncontent-length:99999999999999999999999999\n\n"[..]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(DecodeError::FrameTooLarge { .. })
        ));
    }

    fn small_limits() -> Limits {
        Limits {
            max_frame_size: 64,
            max_headers: 2,
            max_header_len: 10,
        }
    }

    fn small() -> Decoder {
        Decoder::new(small_limits())
    }

    #[test]
    fn limits_are_enforced_while_bytes_arrive() {
        let too_large = Err(DecodeError::FrameTooLarge { limit: 64 });
        // Unterminated header section: fails once it outgrows the frame limit.
        let mut d = Decoder::new(Limits {
            max_headers: 100,
            ..small_limits()
        });
        let mut buf = BytesMut::from(&b"SEND\n"[..]);
        loop {
            buf.extend_from_slice(b"a:b\n");
            if buf.len() > 64 {
                assert_eq!(d.decode(&mut buf), too_large);
                break;
            }
            assert_eq!(d.decode(&mut buf), Ok(None));
        }
        // Body without content-length and without NUL.
        let mut d = small();
        let mut buf = BytesMut::from(&b"SEND\n\n"[..]);
        buf.extend_from_slice(&[b'x'; 58]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        buf.extend_from_slice(b"x");
        assert_eq!(d.decode(&mut buf), too_large);
        // Exactly at the limit is fine.
        let mut buf = BytesMut::from(&b"SEND\n\n"[..]);
        buf.extend_from_slice(&[b'x'; 58]);
        buf.extend_from_slice(b"\0");
        assert!(matches!(
            small().decode(&mut buf),
            Ok(Some(Decoded::Frame(_)))
        ));
        // Announced content-length over the limit, no body sent yet.
        let d = || {
            Decoder::new(Limits {
                max_header_len: 100,
                ..small_limits()
            })
        };
        let mut buf = BytesMut::from(&b"SEND\ncontent-length:40\n\n"[..]);
        assert_eq!(d().decode(&mut buf), Ok(None), "24 + 40 = 64 fits");
        let mut buf = BytesMut::from(&b"SEND\ncontent-length:41\n\n"[..]);
        assert_eq!(d().decode(&mut buf), too_large);
    }

    #[test]
    fn header_count_and_length_limits() {
        let too_many = Err(DecodeError::TooManyHeaders { limit: 2 });
        let mut buf = BytesMut::from(&b"SEND\na:1\nb:2\nc:3\n\n\0"[..]);
        assert_eq!(small().decode(&mut buf), too_many);
        // Detected as soon as the third header starts.
        let mut buf = BytesMut::from(&b"SEND\na:1\nb:2\nc"[..]);
        assert_eq!(small().decode(&mut buf), too_many);
        // Line length excludes the EOL; a partial line over the limit fails.
        let mut buf = BytesMut::from(&b"SEND\nk:12345678\r\n\n\0"[..]);
        assert!(matches!(small().decode(&mut buf), Ok(Some(_))));
        let mut buf = BytesMut::from(&b"SEND\nk:123456789"[..]);
        assert_eq!(
            small().decode(&mut buf),
            Err(DecodeError::HeaderTooLong { limit: 10 })
        );
    }

    #[test]
    fn garbage_fails_fast() {
        let mut buf = BytesMut::from(&b"G"[..]);
        assert_eq!(
            decoder(Version::V1_2).decode(&mut buf),
            Err(DecodeError::UnknownCommand("G".into()))
        );
        assert_eq!(
            err(Version::V1_2, b"send\n\n\0"),
            DecodeError::UnknownCommand("send".into())
        );
    }

    #[test]
    fn malformed_headers() {
        assert_eq!(
            err(Version::V1_2, b"SEND\nfoo\n\n\0"),
            DecodeError::HeaderWithoutColon("foo".into())
        );
        assert_eq!(
            err(Version::V1_2, b"SEND\n:v\n\n\0"),
            DecodeError::HeaderWithoutColon(":v".into())
        );
        assert_eq!(
            err(Version::V1_2, b"SEND\nk:\xff\n\n\0"),
            DecodeError::NotUtf8
        );
        // Empty values are allowed.
        let f = one_frame(Version::V1_2, b"SEND\nk:\n\n\0");
        assert_eq!(f.headers.get("k"), Some(""));
    }

    #[test]
    fn body_is_zero_copy_slice_of_buffer() {
        let mut buf = BytesMut::from(&b"SEND\n\nhello\0"[..]);
        let start = buf.as_ptr() as usize;
        let Some(Decoded::Frame(f)) = decoder(Version::V1_2).decode(&mut buf).unwrap() else {
            panic!()
        };
        assert_eq!(f.body.as_ptr() as usize, start + 6);
    }

    #[test]
    fn shorter_buffer_resets_saved_progress() {
        let mut d = decoder(Version::V1_2);
        let mut buf = BytesMut::from(&b"SEND\nk:v\n\nbody-without-nul"[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        let mut other = BytesMut::from(&b"ACK\n\n\0"[..]);
        let Some(Decoded::Frame(f)) = d.decode(&mut other).unwrap() else {
            panic!()
        };
        assert_eq!(f.command, Command::Ack);
    }

    #[test]
    fn version_switch_applies_to_next_frame() {
        let mut d = Decoder::new(Limits::default());
        assert_eq!(d.version(), Version::V1_2);
        d.set_version(Version::V1_0);
        assert_eq!(d.version(), Version::V1_0);
        let got = decode_all(&mut d, b"SEND\nk:a\\tb\n\n\0").unwrap();
        let [Decoded::Frame(f)] = got.as_slice() else {
            panic!()
        };
        assert_eq!(f.headers.get("k"), Some("a\\tb"));
    }
}
