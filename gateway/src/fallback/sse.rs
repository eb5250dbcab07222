//! Server-sent events: how a message, the session's end and a keepalive look on the wire,
//! and the streaming response body that carries them.
//!
//! A text message is `id: <n>` then one `data:` line per `\n`-separated line (EventSource's
//! default `message` event); text holding `\r` (which EventSource would read as a line
//! break) goes as `event: text64`, binary as `event: binary`, both base64. NUL needs no
//! escaping: STOMP frames keep their terminator.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bridge_api::Message;
use bytes::{BufMut, Bytes, BytesMut};
use hyper::body::{Frame, SizeHint};

use super::session::Shared;

pub const RETRY: &[u8] = b"retry: 500\n\n";
pub const KEEPALIVE: &[u8] = b": keepalive\n\n";

fn base64_len(n: usize) -> usize {
    n.div_ceil(3) * 4
}

fn id_line(buf: &mut BytesMut, id: u64) {
    buf.put_slice(b"id: ");
    buf.put_slice(itoa_buf(id).as_bytes());
    buf.put_u8(b'\n');
}

/// `id` in decimal without going through `fmt`.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

fn itoa_buf(mut n: u64) -> Digits {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    Digits { buf, start: i }
}

/// Bytes `encode` will write for `msg` (exact, so a batch is encoded into one allocation).
pub fn encoded_len(id: u64, msg: &Message) -> usize {
    let id_len = 5 + itoa_buf(id).as_bytes().len();
    match msg {
        Message::Text(t) if !t.as_bytes().contains(&b'\r') => {
            let lines = 1 + t.as_bytes().iter().filter(|&&b| b == b'\n').count();
            // "data: " + line + "\n" per line (the `\n`s themselves become line ends).
            id_len + lines * 7 + t.len() - (lines - 1) + 1
        }
        Message::Text(t) => id_len + 14 + 7 + base64_len(t.len()) + 1,
        Message::Binary(b) => id_len + 14 + 7 + base64_len(b.len()) + 1,
    }
}

/// Appends the event for message `id`.
pub fn encode(buf: &mut BytesMut, id: u64, msg: &Message) {
    id_line(buf, id);
    match msg {
        Message::Text(t) if !t.as_bytes().contains(&b'\r') => {
            for line in t.as_bytes().split(|&b| b == b'\n') {
                buf.put_slice(b"data: ");
                buf.put_slice(line);
                buf.put_u8(b'\n');
            }
        }
        Message::Text(t) => base64_event(buf, b"event: text64\n", t.as_bytes()),
        Message::Binary(b) => base64_event(buf, b"event: binary\n", b),
    }
    buf.put_u8(b'\n');
}

fn base64_event(buf: &mut BytesMut, event: &[u8], payload: &[u8]) {
    buf.put_slice(event);
    buf.put_slice(b"data: ");
    let start = buf.len();
    buf.resize(start + base64_len(payload.len()), 0);
    let written = STANDARD
        .encode_slice(payload, &mut buf[start..])
        .unwrap_or(0);
    buf.truncate(start + written);
    buf.put_u8(b'\n');
}

/// The session's last event: `event: close` with the close code and reason as JSON.
pub fn close_event(code: u16, reason: &str) -> Bytes {
    let data = serde_json::json!({ "code": code, "reason": reason }).to_string();
    Bytes::from(format!("event: close\ndata: {data}\n\n"))
}

/// Where a stream's next frame comes from (the session's shared state decides).
pub enum Next {
    /// Events, or the close event (then `last` is set).
    Data { chunk: Bytes, last: bool },
    /// A newer stream took over, or the session is gone.
    End,
    /// Nothing now; the waker is registered.
    Wait,
}

/// The body of one `GET .../events` response. Holds the session's shared state and its
/// stream generation; frames are pulled from the replay buffer when hyper asks, so a client
/// that does not read simply stops being polled.
pub struct SseBody {
    shared: Arc<Shared>,
    generation: u64,
    started: bool,
    done: bool,
    written: usize,
    stream_bytes: usize,
    keepalive_every: Duration,
    keepalive: Pin<Box<tokio::time::Sleep>>,
    active: metrics::Gauge,
}

impl SseBody {
    pub(super) fn new(
        shared: Arc<Shared>,
        generation: u64,
        stream_bytes: usize,
        keepalive_every: Duration,
        active: metrics::Gauge,
    ) -> Self {
        active.increment(1.0);
        SseBody {
            shared,
            generation,
            started: false,
            done: false,
            written: 0,
            stream_bytes,
            keepalive_every,
            keepalive: Box::pin(tokio::time::sleep(keepalive_every)),
            active,
        }
    }

    fn frame(
        &mut self,
        chunk: Bytes,
    ) -> Poll<Option<Result<Frame<Bytes>, std::convert::Infallible>>> {
        self.written += chunk.len();
        let next = tokio::time::Instant::now() + self.keepalive_every;
        self.keepalive.as_mut().reset(next);
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

impl hyper::body::Body for SseBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if !this.started {
            this.started = true;
            return this.frame(Bytes::from_static(RETRY));
        }
        let budget = this.stream_bytes.saturating_sub(this.written);
        match this.shared.next_for_stream(this.generation, budget, cx) {
            Next::Data { chunk, last } => {
                this.done = last;
                return this.frame(chunk);
            }
            Next::End => {
                this.done = true;
                return Poll::Ready(None);
            }
            Next::Wait if budget == 0 => {
                // Rolled over: the client reconnects with its last id.
                this.done = true;
                return Poll::Ready(None);
            }
            Next::Wait => {}
        }
        if this.keepalive.as_mut().poll(cx).is_ready() {
            return this.frame(Bytes::from_static(KEEPALIVE));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for SseBody {
    fn drop(&mut self) {
        self.active.decrement(1.0);
        self.shared.stream_gone(self.generation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(id: u64, msg: Message) -> String {
        let mut buf = BytesMut::new();
        encode(&mut buf, id, &msg);
        assert_eq!(
            buf.len(),
            encoded_len(id, &msg),
            "length estimate for {msg:?}"
        );
        String::from_utf8(buf.to_vec()).unwrap()
    }

    #[test]
    fn text_is_split_into_data_lines() {
        assert_eq!(enc(1, Message::text("hello")), "id: 1\ndata: hello\n\n");
        assert_eq!(
            enc(42, Message::text("a\nb\n")),
            "id: 42\ndata: a\ndata: b\ndata: \n\n"
        );
        assert_eq!(enc(7, Message::text("")), "id: 7\ndata: \n\n");
        assert_eq!(
            enc(1234567890, Message::text(" lead")),
            "id: 1234567890\ndata:  lead\n\n"
        );
    }

    #[test]
    fn stomp_frames_keep_their_nul() {
        let frame = "MESSAGE\ndestination:/topic/a\n\nbody\0";
        assert_eq!(
            enc(3, Message::text(frame)),
            "id: 3\ndata: MESSAGE\ndata: destination:/topic/a\ndata: \ndata: body\0\n\n"
        );
    }

    #[test]
    fn carriage_returns_and_binary_go_as_base64() {
        assert_eq!(
            enc(2, Message::text("a\r\nb")),
            "id: 2\nevent: text64\ndata: YQ0KYg==\n\n"
        );
        assert_eq!(
            enc(5, Message::binary(vec![0u8, 1, 255])),
            "id: 5\nevent: binary\ndata: AAH/\n\n"
        );
        assert_eq!(
            enc(6, Message::binary(Vec::new())),
            "id: 6\nevent: binary\ndata: \n\n"
        );
    }

    #[test]
    fn close_and_keepalive() {
        assert_eq!(
            &close_event(1001, "server shutting down")[..],
            b"event: close\ndata: {\"code\":1001,\"reason\":\"server shutting down\"}\n\n"
        );
        assert!(KEEPALIVE.starts_with(b":"));
        assert_eq!(RETRY, b"retry: 500\n\n");
    }
}
