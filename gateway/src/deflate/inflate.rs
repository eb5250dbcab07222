//! The client's side of permessage-deflate, under tungstenite (which refuses RSV1 frames):
//! a byte-stream layer that reads the client's frames and rewrites each compressed one as
//! the plain frame it inflates to, RSV1 clear. tungstenite then applies its usual checks
//! (UTF-8, fragmentation, control frames, masking, sizes) to what the client really sent.
//!
//! Memory stays bounded: a compressed frame is read whole only up to `max_frame_size`, and
//! inflation stops one byte past what `max_frame_size` and `max_message_size` still allow
//! for the decompressed frame and message, which ends the session with 1009. A decompressor
//! exists only while a message is being read if the client agreed to
//! `client_no_context_takeover`, else from the first compressed message on.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, BufMut, BytesMut};
use flate2::{Decompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::negotiate::Agreed;
use crate::transport::code;

const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// Socket reads go into a buffer this size; larger leftovers are freed once handled.
const READ_CHUNK: usize = 8 * 1024;

/// Why the client's compressed data was refused; carried inside the `io::Error` so the
/// transport can close with the right code.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct InflateError {
    pub code: u16,
    pub reason: &'static str,
}

impl InflateError {
    fn into_io(self) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, self)
    }
}

/// The limits inflated data must stay within (tungstenite's, applied after inflation).
#[derive(Debug, Clone, Copy)]
pub struct InflateLimits {
    pub max_frame: usize,
    pub max_message: usize,
}

struct State {
    no_context_takeover: bool,
    window_bits: u8,
    limits: InflateLimits,
    /// Read from the socket, not handled yet.
    raw: BytesMut,
    /// Ready for tungstenite.
    out: BytesMut,
    /// Payload bytes still to pass through untouched (a frame that is not compressed).
    pass: u64,
    /// Inside a fragmented data message: whether it is compressed.
    open: Option<bool>,
    /// Inflated bytes of the current message so far.
    message_len: usize,
    inflater: Option<Box<Decompress>>,
    failed: bool,
}

/// The connection's byte stream, compressed frames inflated on the way in; writes pass.
pub struct InflateStream<S> {
    io: S,
    /// `None` on a connection without the extension: every byte passes as it is.
    state: Option<Box<State>>,
}

impl<S> InflateStream<S> {
    pub fn new(io: S, agreed: Option<&Agreed>, limits: InflateLimits) -> Self {
        let state = agreed.map(|a| {
            Box::new(State {
                no_context_takeover: a.client_no_context_takeover,
                window_bits: a.client_window_bits,
                limits,
                raw: BytesMut::new(),
                out: BytesMut::new(),
                pass: 0,
                open: None,
                message_len: 0,
                inflater: None,
                failed: false,
            })
        });
        InflateStream { io, state }
    }
}

struct Header {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    mask: Option<[u8; 4]>,
    len: u64,
    size: usize,
}

fn parse_header(b: &[u8]) -> Option<Header> {
    if b.len() < 2 {
        return None;
    }
    let (len, ext) = match b[1] & 0x7f {
        126 => (u16::from_be_bytes(b.get(2..4)?.try_into().ok()?) as u64, 2),
        127 => (u64::from_be_bytes(b.get(2..10)?.try_into().ok()?), 8),
        n => (n as u64, 0),
    };
    let masked = b[1] & 0x80 != 0;
    let size = 2 + ext + if masked { 4 } else { 0 };
    let mask = if masked {
        Some(b.get(size - 4..size)?.try_into().ok()?)
    } else {
        None
    };
    if b.len() < size {
        return None;
    }
    Some(Header {
        fin: b[0] & 0x80 != 0,
        rsv1: b[0] & 0x40 != 0,
        opcode: b[0] & 0x0f,
        mask,
        len,
        size,
    })
}

/// A masked client frame header (zero mask key: the payload goes as it is).
fn put_header(out: &mut BytesMut, fin: bool, opcode: u8, len: usize) {
    out.put_u8(if fin { 0x80 } else { 0 } | opcode);
    if len < 126 {
        out.put_u8(0x80 | len as u8);
    } else if len <= u16::MAX as usize {
        out.put_u8(0x80 | 126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(0x80 | 127);
        out.put_u64(len as u64);
    }
    out.put_slice(&[0, 0, 0, 0]);
}

impl State {
    /// Handle what `raw` holds; `false` when it needs more bytes from the socket.
    fn step(&mut self) -> Result<bool, InflateError> {
        if self.pass > 0 {
            if self.raw.is_empty() {
                return Ok(false);
            }
            let n = self.pass.min(self.raw.len() as u64) as usize;
            self.out.put_slice(&self.raw[..n]);
            self.raw.advance(n);
            self.pass -= n as u64;
            return Ok(true);
        }
        let Some(h) = parse_header(&self.raw) else {
            return Ok(false);
        };
        // Decided without changing state: a compressed frame may have to wait for the rest
        // of its payload, and this header is read again then.
        let (compressed, open_after) = match (h.opcode, self.open) {
            (1 | 2, None) => (h.rsv1, (!h.fin).then_some(h.rsv1)),
            // RSV1 on a continuation is an error tungstenite reports, as sent.
            (0, Some(open)) => (open && !h.rsv1, (!h.fin).then_some(open)),
            // Control frames, and frames out of order, go to tungstenite to judge.
            _ => (false, self.open),
        };
        // Unmasked or oversized frames are refused by tungstenite, as sent.
        let too_big = h.len > self.limits.max_frame as u64;
        if !compressed || h.mask.is_none() || too_big {
            self.open = open_after;
            self.out.put_slice(&self.raw[..h.size]);
            self.raw.advance(h.size);
            self.pass = h.len;
            return Ok(true);
        }
        let total = h.size + h.len as usize;
        if self.raw.len() < total {
            self.raw.reserve(total - self.raw.len());
            return Ok(false);
        }
        self.open = open_after;
        let mut frame = self.raw.split_to(total);
        let mask = h.mask.unwrap_or_default();
        let payload = &mut frame[h.size..];
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i & 3];
        }
        let inflated = self.inflate(payload, h.fin)?;
        put_header(&mut self.out, h.fin, h.opcode, inflated.len());
        self.out.put_slice(&inflated);
        if h.fin {
            self.message_len = 0;
            if self.no_context_takeover {
                self.inflater = None;
            }
        }
        Ok(true)
    }

    fn inflate(&mut self, payload: &[u8], fin: bool) -> Result<Vec<u8>, InflateError> {
        let cap = self
            .limits
            .max_frame
            .min(self.limits.max_message.saturating_sub(self.message_len));
        let bits = self.window_bits;
        let d = self
            .inflater
            .get_or_insert_with(|| Box::new(Decompress::new_with_window_bits(false, bits)));
        let mut out = Vec::with_capacity((payload.len() * 4).clamp(256, cap + 1));
        let tail: &[u8] = if fin { &SYNC_TAIL } else { &[] };
        for input in [payload, tail] {
            let mut used = 0;
            loop {
                if out.len() == out.capacity() {
                    if out.len() > cap {
                        return Err(InflateError {
                            code: code::MESSAGE_TOO_BIG,
                            reason: "message too big once inflated",
                        });
                    }
                    let grow = out.len().max(4096).min(cap + 1 - out.len());
                    out.reserve_exact(grow);
                }
                let before = d.total_in();
                let status = d
                    .decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
                    .map_err(|_| InflateError {
                        code: code::INVALID_PAYLOAD,
                        reason: "invalid compressed data",
                    })?;
                used += (d.total_in() - before) as usize;
                if status == Status::StreamEnd {
                    // A final block ends this deflate stream; what follows starts another.
                    d.reset(false);
                }
                if used == input.len() && out.len() < out.capacity() {
                    break;
                }
                if status == Status::BufError && out.len() < out.capacity() {
                    break;
                }
            }
        }
        if out.len() > cap {
            return Err(InflateError {
                code: code::MESSAGE_TOO_BIG,
                reason: "message too big once inflated",
            });
        }
        self.message_len += out.len();
        Ok(out)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for InflateStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(st) = this.state.as_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        loop {
            if st.failed {
                return Poll::Ready(Ok(()));
            }
            if !st.out.is_empty() {
                let n = st.out.len().min(buf.remaining());
                buf.put_slice(&st.out[..n]);
                st.out.advance(n);
                if st.out.is_empty() {
                    st.out = BytesMut::new();
                }
                return Poll::Ready(Ok(()));
            }
            match st.step() {
                Ok(true) => continue,
                Ok(false) => {}
                Err(e) => {
                    st.failed = true;
                    st.raw = BytesMut::new();
                    st.inflater = None;
                    return Poll::Ready(Err(e.into_io()));
                }
            }
            let start = st.raw.len();
            st.raw.resize(start + READ_CHUNK, 0);
            let mut rb = ReadBuf::new(&mut st.raw[start..]);
            let polled = Pin::new(&mut this.io).poll_read(cx, &mut rb);
            let n = rb.filled().len();
            st.raw.truncate(start + n);
            if polled.is_pending() && st.raw.is_empty() {
                // An idle connection keeps no buffer: the socket has nothing for it.
                st.raw = BytesMut::new();
            }
            ready!(polled)?;
            if n == 0 {
                return Poll::Ready(Ok(())); // the client is gone
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for InflateStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The close a refused compressed message earns, if `err` is one.
pub fn close_for(err: &io::Error) -> Option<&InflateError> {
    err.get_ref()?.downcast_ref::<InflateError>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn deflate(data: &[u8]) -> Vec<u8> {
        let mut c = Compress::new(Compression::default(), false);
        let mut out = Vec::with_capacity(data.len() + 64);
        c.compress_vec(data, &mut out, FlushCompress::Sync).unwrap();
        assert!(out.ends_with(&SYNC_TAIL));
        out.truncate(out.len() - 4);
        out
    }

    fn client_frame(fin: bool, rsv1: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        put_header(&mut out, fin, opcode, payload.len());
        out[0] |= if rsv1 { 0x40 } else { 0 };
        let key = [0x12, 0x34, 0x56, 0x78];
        let at = out.len() - 4;
        out[at..].copy_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        out.to_vec()
    }

    /// The plain frames tungstenite would see: (fin, rsv1, opcode, payload).
    fn plain_frames(mut b: &[u8]) -> Vec<(bool, bool, u8, Vec<u8>)> {
        let mut frames = Vec::new();
        while let Some(h) = parse_header(b) {
            let end = h.size + h.len as usize;
            let key = h.mask.unwrap();
            let payload = b[h.size..end]
                .iter()
                .enumerate()
                .map(|(i, x)| x ^ key[i & 3]);
            frames.push((h.fin, h.rsv1, h.opcode, payload.collect()));
            b = &b[end..];
        }
        frames
    }

    async fn through(wire: Vec<u8>, agreed: bool) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(7); // every read is a short one
        let a = crate::deflate::negotiate(
            &{
                let mut h = http::HeaderMap::new();
                h.insert(
                    http::header::SEC_WEBSOCKET_EXTENSIONS,
                    "permessage-deflate; client_no_context_takeover"
                        .parse()
                        .unwrap(),
                );
                h
            },
            &serde_json::from_value(serde_json::json!({})).unwrap(),
        );
        let limits = InflateLimits {
            max_frame: 1 << 20,
            max_message: 1 << 20,
        };
        let mut s = InflateStream::new(server, a.as_ref().filter(|_| agreed), limits);
        let writer = tokio::spawn(async move {
            client.write_all(&wire).await.unwrap();
            client.shutdown().await.unwrap();
        });
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn fragmented_compressed_messages_over_short_reads() {
        let msg: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let z = deflate(&msg);
        let parts: Vec<&[u8]> = z.chunks(97).collect();
        let mut wire = client_frame(true, false, 0x9, b"ping");
        for (i, p) in parts.iter().enumerate() {
            let last = i == parts.len() - 1;
            wire.extend(client_frame(last, i == 0, if i == 0 { 2 } else { 0 }, p));
            if i == 1 {
                wire.extend(client_frame(true, false, 0xA, b"pong in between"));
            }
        }
        wire.extend(client_frame(true, false, 1, b"plain text"));
        let frames = plain_frames(&through(wire, true).await);
        assert!(frames.iter().all(|f| !f.1), "RSV1 cleared everywhere");
        let data: Vec<u8> = frames
            .iter()
            .filter(|f| f.2 <= 2)
            .take(parts.len())
            .flat_map(|f| f.3.clone())
            .collect();
        assert_eq!(data, msg);
        assert_eq!(frames.last().unwrap().3, b"plain text");
        assert_eq!((frames[0].2, frames[3].2), (0x9, 0xA));
    }

    #[tokio::test]
    async fn without_the_extension_bytes_pass_untouched() {
        let wire = client_frame(true, true, 1, &deflate(b"hello"));
        assert_eq!(through(wire.clone(), false).await, wire);
    }
}
