//! A minimal STOMP-over-WebSocket client for the STOMP scenarios, written to be cheap on the
//! receiving side so the generator is not what limits a fan-out run:
//!
//! - the WebSocket layer is hand-rolled (HTTP upgrade, unmasked server frames in, masked
//!   client frames out) over a non-blocking socket in a [`AsyncFd`];
//! - every read goes into one per-thread scratch buffer (256 KiB) and parses as many frames
//!   as arrived; a connection keeps only a partial frame's tail between reads;
//! - a read that returns less than the buffer could take clears the socket's readiness, so
//!   one wake-up costs one `read` system call, not two;
//! - a MESSAGE is not parsed: its body sits at the end of the frame, and only the body's
//!   first bytes (send timestamp and step number) are read.
//!
//! Works against any STOMP-over-WebSocket server: the gateway, RabbitMQ Web-STOMP.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::spread::connect_tcp;
use crate::ws::{host_port, Failure};

/// Subprotocols offered in the handshake, most recent first.
pub const SUBPROTOCOLS: &str = "v12.stomp, v11.stomp, v10.stomp";
/// Any 16 bytes in base64 do; servers only hash it back.
const WS_KEY: &str = "bG9hZGdlbi1zdG9tcC0xNg=="; // "loadgen-stomp-16"
/// Client frames must be masked; the key does not need to be secret here.
const MASK: [u8; 4] = [0x5a, 0x3c, 0xa7, 0x19];
/// Largest WebSocket message accepted from the server.
const MAX_MESSAGE: usize = 1 << 20;
/// Bytes asked of the kernel per read.
const READ_CHUNK: usize = 256 * 1024;

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; READ_CHUNK]);
}

/// Where to connect and as whom.
#[derive(Clone, Debug)]
pub struct StompTarget {
    pub url: String,
    pub server: SocketAddr,
    /// `Host` and path for the upgrade request.
    pub authority: String,
    pub path: String,
    pub login: Option<String>,
    pub passcode: Option<String>,
    /// STOMP `host` header (RabbitMQ reads it as the virtual host).
    pub vhost: String,
    /// Fixed kernel socket buffer size (idle runs), else autotuned.
    pub kernel_buffer: Option<u32>,
    /// `Sec-WebSocket-Extensions` to offer (e.g. permessage-deflate); once agreed, subscribers
    /// compress their CONNECT and SUBSCRIBE (the publisher's SENDs stay plain).
    pub extensions: Option<String>,
}

impl StompTarget {
    pub async fn resolve(
        url: &str,
        login: Option<String>,
        passcode: Option<String>,
        vhost: String,
        kernel_buffer: Option<u32>,
    ) -> Result<Self, String> {
        let (host, port) = host_port(url)?;
        let server = match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("{host} resolves to nothing"))?,
        };
        // ws://authority/path?query
        let rest = &url["ws://".len()..];
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        Ok(StompTarget {
            url: url.to_string(),
            server,
            authority: authority.to_string(),
            path: path.to_string(),
            login,
            passcode,
            vhost,
            kernel_buffer,
            extensions: None,
        })
    }

    fn upgrade_request(&self) -> String {
        let extensions = match &self.extensions {
            Some(e) => format!("Sec-WebSocket-Extensions: {e}\r\n"),
            None => String::new(),
        };
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {SUBPROTOCOLS}\r\n{extensions}\r\n",
            self.path, self.authority
        )
    }

    /// The CONNECT frame: no heart-beats, so idle sessions stay idle.
    pub fn connect_frame(&self) -> Vec<u8> {
        let mut f = format!(
            "CONNECT\naccept-version:1.2,1.1,1.0\nhost:{}\nheart-beat:0,0\n",
            self.vhost
        );
        if let Some(l) = &self.login {
            f.push_str(&format!("login:{l}\n"));
        }
        if let Some(p) = &self.passcode {
            f.push_str(&format!("passcode:{p}\n"));
        }
        f.push_str("\n\0");
        f.into_bytes()
    }
}

/// SUBSCRIBE with a receipt, so the subscriber knows when the broker has it. All subscribers
/// use the same id, as browser clients do (`sub-0`), so a server may share encoded frames.
pub fn subscribe_frame(destination: &str, receipt: &str) -> Vec<u8> {
    format!("SUBSCRIBE\nid:sub-0\ndestination:{destination}\nack:auto\nreceipt:{receipt}\n\n\0")
        .into_bytes()
}

/// What fills a benchmark body after its stamp: `x` (the default), or a price quote.
static PRICE_PAYLOAD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// Fill bodies with JSON order-book levels (for compression figures: `x` compresses far
/// better than real data).
pub fn use_price_payload(on: bool) {
    let _ = PRICE_PAYLOAD.set(on);
}

/// Levels of a made-up EURUSD book, prices and sizes varying with `seq` and the level.
fn price_levels(b: &mut Vec<u8>, size: usize, seq: u64) {
    let mut x = seq
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut level = 0;
    b.extend_from_slice(b"{\"symbol\":\"EURUSD\",\"book\":[");
    while b.len() < size {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let r = x >> 33;
        let bid = 108_300 - level * 3 - (r % 3) as i64;
        let ask = 108_310 + level * 3 + (r % 5) as i64;
        b.extend_from_slice(
            format!(
                "{{\"lvl\":{level},\"bid\":1.{bid:05},\"bid_size\":{},\"ask\":1.{ask:05},\"ask_size\":{}}},",
                (r % 9000) + 100,
                ((r >> 13) % 9000) + 100
            )
            .as_bytes(),
        );
        level += 1;
    }
    b.truncate(size);
}

/// The body of benchmark message: `ts=<ns since epoch, 19 digits>;st=<step>;sq=<seq>;` then
/// `x` (or price levels) up to `size` bytes.
pub fn body(size: usize, ts_ns: u64, step: u32, seq: u64) -> Vec<u8> {
    let mut b = format!("ts={ts_ns:019};st={step};sq={seq};").into_bytes();
    if *PRICE_PAYLOAD.get().unwrap_or(&false) {
        price_levels(&mut b, size, seq);
    }
    b.resize(size.max(b.len()), b'x');
    b
}

/// Smallest body that holds the stamp.
pub const MIN_BODY: usize = 64;

/// The send timestamp and step of a benchmark body.
pub fn parse_body(b: &[u8]) -> Option<(u64, u32)> {
    let rest = b.strip_prefix(b"ts=")?;
    if rest.len() < 19 + 4 {
        return None;
    }
    let mut ts = 0u64;
    for &c in &rest[..19] {
        if !c.is_ascii_digit() {
            return None;
        }
        ts = ts * 10 + u64::from(c - b'0');
    }
    let rest = rest[19..].strip_prefix(b";st=")?;
    let mut step = 0u32;
    let mut digits = 0;
    for &c in rest {
        if c == b';' {
            break;
        }
        if !c.is_ascii_digit() || digits >= 9 {
            return None;
        }
        step = step * 10 + u32::from(c - b'0');
        digits += 1;
    }
    (digits > 0).then_some((ts, step))
}

/// The SEND frame of one benchmark message.
pub fn send_frame(out: &mut Vec<u8>, destination: &str, body: &[u8]) {
    let head = format!(
        "SEND\ndestination:{destination}\ncontent-type:text/plain\ncontent-length:{}\n\n",
        body.len()
    );
    let len = head.len() + body.len() + 1;
    ws_header(out, len);
    let start = out.len();
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(body);
    out.push(0);
    mask(&mut out[start..]);
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Header of one masked, final text frame of `len` payload bytes.
fn ws_header(out: &mut Vec<u8>, len: usize) {
    out.push(0x81);
    if len < 126 {
        out.push(0x80 | len as u8);
    } else if len <= 0xffff {
        out.push(0x80 | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(0x80 | 127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&MASK);
}

fn mask(payload: &mut [u8]) {
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= MASK[i & 3];
    }
}

/// One masked WebSocket frame (`opcode` 0x1 text, 0xA pong, 0x8 close) around `payload`.
pub fn ws_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + 14);
    ws_header(&mut out, payload.len());
    out[0] = 0x80 | opcode;
    let start = out.len();
    out.extend_from_slice(payload);
    mask(&mut out[start..]);
    out
}

/// What one server WebSocket frame is.
#[derive(Debug, PartialEq, Eq)]
pub enum WsEvent<'a> {
    /// A complete text or binary message (one STOMP frame, or a heart-beat EOL).
    Data(&'a [u8]),
    Ping(&'a [u8]),
    Close,
}

/// Parse the frames at the start of `buf`; returns the bytes consumed (the rest is a partial
/// frame). Fragmented messages are put together in `frag`.
#[cfg(test)]
pub fn parse_ws(
    buf: &[u8],
    frag: &mut Vec<u8>,
    on: impl FnMut(WsEvent<'_>),
) -> Result<usize, Failure> {
    parse_ws_inflating(buf, frag, &mut None, on)
}

thread_local! {
    /// One compressor per thread, reset per message: clients stay cheap.
    static CLIENT_DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::fast(), false));
}

/// `payload` deflated on its own, the sync-flush tail taken off (RFC 7692 7.2.1).
fn deflate_message(payload: &[u8]) -> Vec<u8> {
    CLIENT_DEFLATE.with_borrow_mut(|c| {
        c.reset();
        let mut out = Vec::with_capacity(payload.len() + 64);
        loop {
            let used = c.total_in() as usize;
            c.compress_vec(&payload[used..], &mut out, FlushCompress::Sync)
                .expect("deflate of a buffer");
            if c.total_in() as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity());
        }
        out.truncate(out.len().saturating_sub(4));
        out
    })
}

/// One permessage-deflate message (RFC 7692 7.2.2: the sync-flush tail goes back on).
fn inflate_message(d: &mut Decompress, payload: &[u8]) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(payload.len() * 4 + 64);
    let mut input = payload.to_vec();
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let start = d.total_in();
    loop {
        let used = (d.total_in() - start) as usize;
        if out.len() == out.capacity() {
            if out.len() > MAX_MESSAGE {
                return Err(Failure::new("too_large", "inflated message too large"));
            }
            out.reserve(out.len());
        }
        d.decompress_vec(&input[used..], &mut out, FlushDecompress::Sync)
            .map_err(|e| Failure::new("bad_frame", format!("inflate: {e}")))?;
        if (d.total_in() - start) as usize == input.len() && out.len() < out.capacity() {
            return Ok(out);
        }
    }
}

/// `parse_ws`, inflating RSV1 messages with `inflater` (set once permessage-deflate was
/// agreed). The gateway never fragments what it compresses.
pub fn parse_ws_inflating(
    buf: &[u8],
    frag: &mut Vec<u8>,
    inflater: &mut Option<Box<Decompress>>,
    mut on: impl FnMut(WsEvent<'_>),
) -> Result<usize, Failure> {
    let mut at = 0;
    loop {
        let b = &buf[at..];
        if b.len() < 2 {
            return Ok(at);
        }
        let fin = b[0] & 0x80 != 0;
        let opcode = b[0] & 0x0f;
        let masked = b[1] & 0x80 != 0;
        let (len, mut head) = match b[1] & 0x7f {
            126 => {
                if b.len() < 4 {
                    return Ok(at);
                }
                (usize::from(u16::from_be_bytes([b[2], b[3]])), 4)
            }
            127 => {
                if b.len() < 10 {
                    return Ok(at);
                }
                let mut n = [0u8; 8];
                n.copy_from_slice(&b[2..10]);
                (u64::from_be_bytes(n) as usize, 10)
            }
            n => (usize::from(n), 2),
        };
        if len > MAX_MESSAGE {
            return Err(Failure::new(
                "too_large",
                format!("server frame of {len} bytes"),
            ));
        }
        let key = if masked {
            if b.len() < head + 4 {
                return Ok(at);
            }
            let k = [b[head], b[head + 1], b[head + 2], b[head + 3]];
            head += 4;
            Some(k)
        } else {
            None
        };
        if b.len() < head + len {
            return Ok(at);
        }
        let raw = &b[head..head + len];
        at += head + len;
        // Servers don't mask; one that does gets a copy.
        let unmasked;
        let payload: &[u8] = match key {
            None => raw,
            Some(k) => {
                unmasked = raw
                    .iter()
                    .enumerate()
                    .map(|(i, x)| x ^ k[i & 3])
                    .collect::<Vec<u8>>();
                &unmasked
            }
        };
        let compressed = b[0] & 0x40 != 0;
        if compressed {
            let (Some(d), true) = (inflater.as_mut(), fin && frag.is_empty()) else {
                return Err(Failure::new(
                    "bad_frame",
                    "RSV1 without permessage-deflate, or fragmented",
                ));
            };
            let inflated = inflate_message(d, payload)?;
            on(WsEvent::Data(&inflated));
            continue;
        }
        match opcode {
            0x1 | 0x2 if fin && frag.is_empty() => on(WsEvent::Data(payload)),
            0x0..=0x2 => {
                if frag.len() + payload.len() > MAX_MESSAGE {
                    return Err(Failure::new("too_large", "fragmented message too large"));
                }
                frag.extend_from_slice(payload);
                if fin {
                    on(WsEvent::Data(frag));
                    frag.clear();
                }
            }
            0x8 => {
                on(WsEvent::Close);
                return Ok(at);
            }
            0x9 => on(WsEvent::Ping(payload)),
            0xA => {}
            other => {
                return Err(Failure::new(
                    "bad_frame",
                    format!("WebSocket opcode {other:#x}"),
                ))
            }
        }
    }
}

/// The STOMP frames in one WebSocket message, as (command, whole frame) pairs; heart-beat
/// EOLs are skipped. Bodies are taken to end at the first NUL (benchmark bodies hold none).
pub fn for_each_stomp(mut payload: &[u8], mut on: impl FnMut(&[u8], &[u8])) {
    loop {
        while let [b'\n' | b'\r', rest @ ..] = payload {
            payload = rest;
        }
        if payload.is_empty() {
            return;
        }
        let end = payload
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(payload.len());
        let frame = &payload[..end];
        let cmd_end = frame
            .iter()
            .position(|&c| c == b'\n')
            .unwrap_or(frame.len());
        let cmd = frame[..cmd_end]
            .strip_suffix(b"\r")
            .unwrap_or(&frame[..cmd_end]);
        on(cmd, frame);
        payload = &payload[(end + 1).min(payload.len())..];
    }
}

/// The body of a STOMP frame (after the blank line).
pub fn stomp_body(frame: &[u8]) -> &[u8] {
    let mut i = 0;
    while let Some(p) = frame[i..].iter().position(|&c| c == b'\n') {
        let nl = i + p;
        let rest = &frame[nl + 1..];
        if rest.first() == Some(&b'\n') {
            return &frame[nl + 2..];
        }
        if rest.starts_with(b"\r\n") {
            return &frame[nl + 3..];
        }
        i = nl + 1;
    }
    &[]
}

/// A header's value in a STOMP frame (first occurrence).
pub fn stomp_header<'a>(frame: &'a [u8], name: &str) -> Option<&'a str> {
    let text = std::str::from_utf8(frame).ok()?;
    text.lines()
        .skip(1)
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
}

/// A benchmark MESSAGE's (timestamp, step), taking the body from the frame's end when it has
/// the expected size (no scan of the headers).
#[inline]
pub fn message_stamp(payload: &[u8], body_size: usize) -> Option<(u64, u32)> {
    if !payload.starts_with(b"MESSAGE") {
        return None;
    }
    // The frame ends with NUL, maybe followed by an EOL (RabbitMQ sends "\0\n").
    let mut end = payload.len();
    while end > 0 && matches!(payload[end - 1], b'\n' | b'\r') {
        end -= 1;
    }
    if end > body_size + 1 && payload[end - 1] == 0 {
        let start = end - 1 - body_size;
        if payload[start - 1] == b'\n' {
            if let Some(stamp) = parse_body(&payload[start..end - 1]) {
                return Some(stamp);
            }
        }
    }
    parse_body(stomp_body(payload))
}

/// One connection: a non-blocking socket plus the tail of a partial frame.
pub struct StompConn {
    fd: AsyncFd<std::net::TcpStream>,
    pending: Vec<u8>,
    frag: Vec<u8>,
    /// Set when the server agreed to permessage-deflate.
    inflater: Option<Box<Decompress>>,
    pongs: Vec<Vec<u8>>,
    closed: bool,
    /// `pending` holds bytes that came with the upgrade response and were never parsed.
    unparsed: bool,
}

/// What a read turned up besides data.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadEnd {
    /// More may come.
    Open,
    /// The server closed the WebSocket or the TCP connection.
    Closed,
}

impl StompConn {
    /// TCP connect + WebSocket upgrade.
    pub async fn open(target: &StompTarget, source: Option<IpAddr>) -> Result<Self, Failure> {
        let mut tcp = connect_tcp(target.server, source, target.kernel_buffer)
            .await
            .map_err(|e| Failure::new("tcp_connect", e))?;
        tcp.write_all(target.upgrade_request().as_bytes())
            .await
            .map_err(|e| Failure::new("handshake", e))?;
        let mut head = Vec::with_capacity(512);
        let mut chunk = [0u8; 1024];
        let body_at = loop {
            let n = tcp
                .read(&mut chunk)
                .await
                .map_err(|e| Failure::new("handshake", e))?;
            if n == 0 {
                return Err(Failure::new(
                    "handshake",
                    "connection closed during the upgrade",
                ));
            }
            head.extend_from_slice(&chunk[..n]);
            if let Some(p) = head.windows(4).position(|w| w == b"\r\n\r\n") {
                break p + 4;
            }
            if head.len() > 16 * 1024 {
                return Err(Failure::new("handshake", "upgrade response too long"));
            }
        };
        let status = head
            .split(|&c| c == b'\r')
            .next()
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .unwrap_or_default();
        if !status.starts_with("HTTP/1.1 101") {
            return Err(Failure::new("handshake", status));
        }
        let agreed = String::from_utf8_lossy(&head[..body_at])
            .to_ascii_lowercase()
            .contains("sec-websocket-extensions: permessage-deflate");
        let inflater = agreed.then(|| Box::new(Decompress::new(false)));
        let pending = head[body_at..].to_vec();
        let std = tcp.into_std().map_err(|e| Failure::new("handshake", e))?;
        // `AsyncFd::register` is the unsafe replacement and this crate forbids unsafe code;
        // the I/O-safety hole `new` has needs a borrowed descriptor, and this one is owned.
        #[allow(deprecated)]
        let fd = AsyncFd::new(std).map_err(|e| Failure::new("handshake", e))?;
        Ok(StompConn {
            fd,
            unparsed: !pending.is_empty(),
            pending,
            frag: Vec::new(),
            inflater,
            pongs: Vec::new(),
            closed: false,
        })
    }

    /// Write all of `bytes` (already framed).
    pub async fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|s| s.get_ref().write(bytes)) {
                Ok(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(Ok(n)) => bytes = &bytes[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => {}
            }
        }
        Ok(())
    }

    /// Send one STOMP frame as one WebSocket text message.
    /// With permessage-deflate agreed the frame goes compressed, as a browser sends it (the
    /// server keeps a decompressor for the connection: this client never promised
    /// `client_no_context_takeover`).
    pub async fn send_stomp(&mut self, frame: &[u8]) -> io::Result<()> {
        if self.inflater.is_some() {
            let mut f = ws_frame(0x1, &deflate_message(frame));
            f[0] |= 0x40;
            return self.write_all(&f).await;
        }
        self.write_all(&ws_frame(0x1, frame)).await
    }

    /// Wait for the socket, read once, and hand every complete WebSocket data message to
    /// `on_data`. Answers pings.
    pub async fn read_batch(&mut self, mut on_data: impl FnMut(&[u8])) -> Result<ReadEnd, Failure> {
        if self.closed {
            return Ok(ReadEnd::Closed);
        }
        // Bytes left from the upgrade response come first.
        if self.unparsed {
            self.unparsed = false;
            let pending = std::mem::take(&mut self.pending);
            let mut closed = false;
            let pongs = &mut self.pongs;
            let used =
                parse_ws_inflating(
                    &pending,
                    &mut self.frag,
                    &mut self.inflater,
                    |ev| match ev {
                        WsEvent::Data(d) => on_data(d),
                        WsEvent::Ping(p) => pongs.push(p.to_vec()),
                        WsEvent::Close => closed = true,
                    },
                )?;
            self.pending = pending[used..].to_vec();
            if closed {
                self.closed = true;
                return Ok(ReadEnd::Closed);
            }
            if used > 0 {
                return self.send_pongs().await;
            }
        }
        let mut guard = self
            .fd
            .readable()
            .await
            .map_err(|e| Failure::new("read", e))?;
        let pending = &mut self.pending;
        let frag = &mut self.frag;
        let inflater = &mut self.inflater;
        let pongs = &mut self.pongs;
        let mut closed = false;
        let outcome = SCRATCH.with_borrow_mut(|buf| {
            let carry = pending.len();
            if buf.len() < carry + READ_CHUNK {
                buf.resize(carry + READ_CHUNK, 0);
            }
            buf[..carry].copy_from_slice(pending);
            let room = buf.len() - carry;
            let n = match guard.get_inner().read(&mut buf[carry..]) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    guard.clear_ready();
                    return Ok(ReadEnd::Open);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(ReadEnd::Open),
                Err(e) => return Err(Failure::new("read", e)),
            };
            if n == 0 {
                return Ok(ReadEnd::Closed);
            }
            // A short read drained the socket: the next wake-up comes from a new edge.
            if n < room {
                guard.clear_ready();
            }
            let data = &buf[..carry + n];
            let used = parse_ws_inflating(data, frag, inflater, |ev| match ev {
                WsEvent::Data(d) => on_data(d),
                WsEvent::Ping(p) => pongs.push(p.to_vec()),
                WsEvent::Close => closed = true,
            })?;
            pending.clear();
            pending.extend_from_slice(&data[used..]);
            Ok(ReadEnd::Open)
        })?;
        if closed || outcome == ReadEnd::Closed {
            self.closed = true;
            return Ok(ReadEnd::Closed);
        }
        self.send_pongs().await
    }

    async fn send_pongs(&mut self) -> Result<ReadEnd, Failure> {
        for p in std::mem::take(&mut self.pongs) {
            self.write_all(&ws_frame(0xA, &p))
                .await
                .map_err(|e| Failure::new("write", e))?;
        }
        Ok(ReadEnd::Open)
    }

    /// Read until a STOMP frame with `command` arrives (others are skipped); an ERROR frame
    /// or a close is a failure.
    pub async fn expect(&mut self, command: &[u8], timeout: Duration) -> Result<(), Failure> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let mut found = false;
            let mut error: Option<String> = None;
            let end = tokio::time::timeout_at(
                deadline,
                self.read_batch(|d| {
                    for_each_stomp(d, |cmd, frame| {
                        if cmd == command {
                            found = true;
                        } else if cmd == b"ERROR" && error.is_none() {
                            error = Some(format!(
                                "{} {}",
                                stomp_header(frame, "message").unwrap_or(""),
                                String::from_utf8_lossy(stomp_body(frame)).trim()
                            ));
                        }
                    })
                }),
            )
            .await
            .map_err(|_| {
                Failure::new(
                    "stomp_timeout",
                    format!("no {} within {timeout:?}", String::from_utf8_lossy(command)),
                )
            })??;
            if let Some(e) = error {
                return Err(Failure::new("stomp_error", e));
            }
            if found {
                return Ok(());
            }
            if end == ReadEnd::Closed {
                return Err(Failure::new(
                    "closed",
                    format!("closed before {}", String::from_utf8_lossy(command)),
                ));
            }
        }
    }

    /// Open a WebSocket, CONNECT, and wait for CONNECTED.
    pub async fn connect(
        target: &StompTarget,
        source: Option<IpAddr>,
        timeout: Duration,
    ) -> Result<Self, Failure> {
        let mut c = Self::open(target, source).await?;
        c.send_stomp(&target.connect_frame())
            .await
            .map_err(|e| Failure::new("write", e))?;
        c.expect(b"CONNECTED", timeout).await?;
        Ok(c)
    }

    /// SUBSCRIBE and wait for its RECEIPT.
    pub async fn subscribe(
        &mut self,
        destination: &str,
        receipt: &str,
        timeout: Duration,
    ) -> Result<(), Failure> {
        self.send_stomp(&subscribe_frame(destination, receipt))
            .await
            .map_err(|e| Failure::new("write", e))?;
        self.expect(b"RECEIPT", timeout).await
    }

    /// Whatever the server sent without being asked (non-blocking): an ERROR's text, or
    /// `Closed`. Used on the publisher between steps.
    pub fn poll_error(&mut self) -> Option<String> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut text = None;
        loop {
            match self.fd.get_ref().read(&mut buf) {
                Ok(0) => {
                    return Some(text.unwrap_or_else(|| "server closed the connection".into()))
                }
                Ok(n) => {
                    let mut data = std::mem::take(&mut self.pending);
                    data.extend_from_slice(&buf[..n]);
                    let mut closed = false;
                    let used = parse_ws_inflating(
                        &data,
                        &mut self.frag,
                        &mut self.inflater,
                        |ev| match ev {
                            WsEvent::Data(d) => for_each_stomp(d, |cmd, frame| {
                                if cmd == b"ERROR" && text.is_none() {
                                    text = Some(format!(
                                        "ERROR {} {}",
                                        stomp_header(frame, "message").unwrap_or(""),
                                        String::from_utf8_lossy(stomp_body(frame)).trim()
                                    ));
                                }
                            }),
                            WsEvent::Close => closed = true,
                            WsEvent::Ping(_) => {}
                        },
                    )
                    .unwrap_or(data.len());
                    self.pending = data[used..].to_vec();
                    if closed {
                        return Some(text.unwrap_or_else(|| "server closed the WebSocket".into()));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return text,
                Err(e) => return Some(e.to_string()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![(if fin { 0x80 } else { 0 }) | opcode];
        if payload.len() < 126 {
            out.push(payload.len() as u8);
        } else if payload.len() <= 0xffff {
            out.push(126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        } else {
            out.push(127);
            out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn bodies_round_trip() {
        let b = body(100, 1_763_700_000_123_456_789, 7, 42);
        assert_eq!(b.len(), 100);
        assert!(b.len() >= MIN_BODY);
        assert_eq!(parse_body(&b), Some((1_763_700_000_123_456_789, 7)));
        assert_eq!(parse_body(b"ts=12;st=1;"), None);
        assert_eq!(parse_body(b"hello"), None);
    }

    #[test]
    fn parses_frames_across_reads_and_fragments() {
        let mut wire = server_frame(0x1, true, b"CONNECTED\nversion:1.2\n\n\0");
        wire.extend(server_frame(0x9, true, b"p"));
        wire.extend(server_frame(0x1, false, b"MESS"));
        wire.extend(server_frame(0x0, true, b"AGE\n\nhi\0"));
        let big = vec![b'a'; 70_000];
        wire.extend(server_frame(0x2, true, &big));
        wire.extend(server_frame(0x8, true, b"\x03\xe8"));
        // Feed it in awkward pieces.
        let mut frag = Vec::new();
        let mut got: Vec<String> = Vec::new();
        let mut buf: Vec<u8> = Vec::new();
        for piece in wire.chunks(3) {
            buf.extend_from_slice(piece);
            let used = parse_ws(&buf, &mut frag, |ev| {
                got.push(match ev {
                    WsEvent::Data(d) if d.len() > 1000 => format!("data {}", d.len()),
                    WsEvent::Data(d) => format!("data {}", String::from_utf8_lossy(d)),
                    WsEvent::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
                    WsEvent::Close => "close".into(),
                })
            })
            .unwrap();
            buf.drain(..used);
        }
        assert_eq!(
            got,
            [
                "data CONNECTED\nversion:1.2\n\n\0",
                "ping p",
                "data MESSAGE\n\nhi\0",
                "data 70000",
                "close"
            ]
        );
    }

    #[test]
    fn client_frames_are_masked() {
        let f = ws_frame(0x1, b"abc");
        assert_eq!(f[0], 0x81);
        assert_eq!(f[1], 0x80 | 3);
        let unmasked: Vec<u8> = f[6..]
            .iter()
            .enumerate()
            .map(|(i, x)| x ^ f[2 + (i & 3)])
            .collect();
        assert_eq!(unmasked, b"abc");
        let mut out = Vec::new();
        send_frame(&mut out, "/topic/x", &body(100, 1, 2, 3));
        assert_eq!(out[1], 0x80 | 126);
    }

    #[test]
    fn finds_message_stamps_fast_and_slow() {
        let b = body(100, 1_000_000_000_000_000_123, 3, 9);
        let mut frame = b"MESSAGE\nsubscription:sub-0\nmessage-id:1\ndestination:/topic/bench\ncontent-length:100\n\n".to_vec();
        frame.extend_from_slice(&b);
        frame.push(0);
        assert_eq!(
            message_stamp(&frame, 100),
            Some((1_000_000_000_000_000_123, 3))
        );
        // RabbitMQ's trailing EOL.
        frame.push(b'\n');
        assert_eq!(
            message_stamp(&frame, 100),
            Some((1_000_000_000_000_000_123, 3))
        );
        // Another size than expected: falls back to scanning for the body.
        assert_eq!(
            message_stamp(&frame, 80),
            Some((1_000_000_000_000_000_123, 3))
        );
        // CRLF headers.
        let mut crlf = b"MESSAGE\r\ndestination:/topic/x\r\n\r\n".to_vec();
        crlf.extend_from_slice(&b);
        crlf.push(0);
        assert_eq!(
            message_stamp(&crlf, 90),
            Some((1_000_000_000_000_000_123, 3))
        );
        assert_eq!(message_stamp(b"RECEIPT\nreceipt-id:1\n\n\0", 100), None);
    }

    #[test]
    fn splits_stomp_frames_and_reads_headers() {
        let mut seen = Vec::new();
        for_each_stomp(
            b"\nRECEIPT\nreceipt-id:r1\n\n\0\nERROR\nmessage:bad\n\noops\0",
            |cmd, f| {
                seen.push((
                    String::from_utf8_lossy(cmd).into_owned(),
                    stomp_header(f, "message").map(str::to_string),
                    String::from_utf8_lossy(stomp_body(f)).into_owned(),
                ))
            },
        );
        assert_eq!(
            seen,
            [
                ("RECEIPT".into(), None, "".into()),
                ("ERROR".into(), Some("bad".into()), "oops".into())
            ]
        );
        let mut n = 0;
        for_each_stomp(b"\n", |_, _| n += 1);
        assert_eq!(n, 0);
    }

    /// The client against a tiny STOMP-over-WebSocket server (tokio-tungstenite).
    #[tokio::test]
    async fn connects_subscribes_and_reads_messages() {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            let mut frames = Vec::new();
            while let Some(Ok(m)) = ws.next().await {
                let text = m.into_text().unwrap().to_string();
                frames.push(text.clone());
                if text.starts_with("CONNECT") {
                    ws.send(Message::text("CONNECTED\nversion:1.2\n\n\0"))
                        .await
                        .unwrap();
                } else if text.starts_with("SUBSCRIBE") {
                    ws.send(Message::text("RECEIPT\nreceipt-id:r1\n\n\0\n"))
                        .await
                        .unwrap();
                    ws.send(Message::Ping(vec![7].into())).await.unwrap();
                    for step in [1u32, 2] {
                        let b = String::from_utf8(body(100, 5, step, 0)).unwrap();
                        let f = format!("MESSAGE\nsubscription:sub-0\nmessage-id:{step}\ndestination:/topic/t\ncontent-length:100\n\n{b}\0\n");
                        ws.feed(Message::text(f)).await.unwrap();
                    }
                    ws.flush().await.unwrap();
                } else if text.is_empty() {
                    break;
                }
            }
            frames
        });
        let url = format!("ws://{addr}/ws");
        let t = StompTarget::resolve(&url, Some("u".into()), Some("p".into()), "/".into(), None)
            .await
            .unwrap();
        let mut c = StompConn::connect(&t, None, Duration::from_secs(5))
            .await
            .unwrap();
        c.subscribe("/topic/t", "r1", Duration::from_secs(5))
            .await
            .unwrap();
        let mut stamps = Vec::new();
        while stamps.len() < 2 {
            let end = tokio::time::timeout(
                Duration::from_secs(5),
                c.read_batch(|d| stamps.extend(message_stamp(d, 100))),
            )
            .await
            .unwrap()
            .unwrap();
            assert_eq!(end, ReadEnd::Open);
        }
        assert_eq!(stamps, [(5, 1), (5, 2)]);
        // An empty text message ends the server loop; the pong went back before it.
        c.write_all(&ws_frame(0x1, b"")).await.unwrap();
        let frames = server.await.unwrap();
        assert!(frames[0].contains("login:u\npasscode:p\n"), "{frames:?}");
        assert!(frames[1].starts_with("SUBSCRIBE\nid:sub-0\ndestination:/topic/t\n"));
    }

    #[tokio::test]
    async fn target_parts() {
        let t = StompTarget::resolve("ws://127.0.0.1:15674/ws", None, None, "/".into(), None)
            .await
            .unwrap();
        assert_eq!(t.authority, "127.0.0.1:15674");
        assert_eq!(t.path, "/ws");
        let c = String::from_utf8(t.connect_frame()).unwrap();
        assert!(c.starts_with("CONNECT\naccept-version:1.2,1.1,1.0\nhost:/\n"));
        assert!(c.ends_with("\n\n\0"));
    }
}
