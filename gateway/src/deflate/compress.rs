//! The server's side of permessage-deflate: compress one outgoing message.
//!
//! Without server context takeover a message's compressed form depends on the message and
//! the parameters alone, so each worker thread keeps one compressor per parameter set and a
//! few recent results: a topic message fanned out to every subscriber is compressed once
//! per thread, and each subscriber is sent the same `Bytes`. A dedicated compressor keeps its
//! window between messages; it is made on the first message and dropped when the
//! connection goes quiet (starting afresh never breaks a client's decoding: the client's
//! window is only read through back-references the new compressor does not make).

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, FlushCompress};

use super::negotiate::Agreed;

/// The tail every sync-flushed message ends with, which RFC 7692 7.2.1 leaves off the wire.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Compressed forms of the latest messages a thread compressed, per thread.
const CACHED: usize = 16;

/// Deflate `input` as one message (sync flush, tail removed).
fn deflate_message(c: &mut Compress, input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len() / 2 + 64);
    let start = c.total_in();
    loop {
        let used = (c.total_in() - start) as usize;
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity().max(256));
        }
        // Cannot fail for a valid stream and these arguments; a failure would be a bug.
        c.compress_vec(&input[used..], &mut out, FlushCompress::Sync)
            .expect("deflate of an in-memory buffer");
        let done = (c.total_in() - start) as usize == input.len();
        // A sync flush is complete once it left output space unused.
        if done && out.len() < out.capacity() {
            break;
        }
    }
    if out.ends_with(&SYNC_TAIL) {
        out.truncate(out.len() - SYNC_TAIL.len());
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
struct Params {
    level: u32,
    window_bits: u8,
}

impl Params {
    fn compressor(self) -> Compress {
        Compress::new_with_window_bits(Compression::new(self.level), false, self.window_bits)
    }
}

struct CacheEntry {
    params: Params,
    /// Held so the allocation cannot be freed and reused while its address is the key.
    source: Bytes,
    compressed: Bytes,
}

#[derive(Default)]
struct ThreadDeflate {
    compressors: Vec<(Params, Compress)>,
    recent: Vec<CacheEntry>,
    next: usize,
}

thread_local! {
    static SHARED: RefCell<ThreadDeflate> = RefCell::default();
}

fn same_bytes(a: &Bytes, b: &Bytes) -> bool {
    a.as_ptr() == b.as_ptr() && a.len() == b.len()
}

/// The message compressed on its own, shared with every other sender of the same `Bytes`.
fn shared_compress(params: Params, payload: &Bytes) -> Bytes {
    SHARED.with(|cell| {
        let mut t = cell.borrow_mut();
        if let Some(hit) = t
            .recent
            .iter()
            .find(|e| e.params == params && same_bytes(&e.source, payload))
        {
            return hit.compressed.clone();
        }
        let compressed = {
            let slot = match t.compressors.iter().position(|(p, _)| *p == params) {
                Some(i) => i,
                None => {
                    t.compressors.push((params, params.compressor()));
                    t.compressors.len() - 1
                }
            };
            let c = &mut t.compressors[slot].1;
            let out = deflate_message(c, payload);
            c.reset();
            Bytes::from(out)
        };
        let entry = CacheEntry {
            params,
            source: payload.clone(),
            compressed: compressed.clone(),
        };
        if t.recent.len() < CACHED {
            t.recent.push(entry);
        } else {
            let i = t.next;
            t.recent[i] = entry;
        }
        t.next = (t.next + 1) % CACHED;
        compressed
    })
}

/// One connection's compressor side.
pub struct Compressor {
    params: Params,
    min_size: usize,
    /// `None` in shared mode, and in dedicated mode until the first message (or after a
    /// quiet spell).
    dedicated: Option<Box<Compress>>,
    shared: bool,
    used_since_check: bool,
}

impl Compressor {
    pub fn new(agreed: &Agreed) -> Self {
        Compressor {
            params: Params {
                level: agreed.level,
                window_bits: agreed.server_window_bits,
            },
            min_size: agreed.min_size,
            dedicated: None,
            shared: agreed.server_no_context_takeover,
            used_since_check: false,
        }
    }

    /// The payload to send with RSV1 set, or `None` to send this message as it is.
    pub fn compress(&mut self, payload: &Bytes) -> Option<Bytes> {
        if payload.len() < self.min_size {
            return None;
        }
        if self.shared {
            // Sent compressed even where deflate adds a few bytes: `min_size` is the one rule
            // for what goes uncompressed, so a client sees the same thing every time.
            return Some(shared_compress(self.params, payload));
        }
        self.used_since_check = true;
        let params = self.params;
        let c = self
            .dedicated
            .get_or_insert_with(|| Box::new(params.compressor()));
        // With context takeover what was compressed is in both windows: it must be sent.
        Some(Bytes::from(deflate_message(c, payload)))
    }

    /// Called now and then by the writer: a dedicated compressor unused since the last call
    /// is freed.
    pub fn release_if_quiet(&mut self) {
        if !std::mem::take(&mut self.used_since_check) {
            self.dedicated = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn inflate(d: &mut Decompress, data: &[u8]) -> Vec<u8> {
        let mut input = data.to_vec();
        input.extend_from_slice(&SYNC_TAIL);
        let mut out = Vec::with_capacity(1 << 20);
        d.decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    fn agreed(shared: bool) -> Agreed {
        Agreed {
            server_no_context_takeover: shared,
            client_no_context_takeover: false,
            server_window_bits: 15,
            client_window_bits: 15,
            level: 6,
            min_size: 16,
            response: String::new(),
        }
    }

    #[test]
    fn shared_compression_is_done_once_per_message() {
        let msg =
            Bytes::from("MESSAGE\ndestination:/topic/prices.X\n\n{\"bid\":1.2345}\0".repeat(4));
        let mut a = Compressor::new(&agreed(true));
        let mut b = Compressor::new(&agreed(true));
        let first = a.compress(&msg).unwrap();
        let second = b.compress(&msg.clone()).unwrap();
        assert_eq!(
            first.as_ptr(),
            second.as_ptr(),
            "one compressed buffer, shared"
        );
        let mut d = Decompress::new(false);
        assert_eq!(inflate(&mut d, &first), msg);
        assert!(a.compress(&Bytes::from_static(b"short")).is_none());
    }

    #[test]
    fn dedicated_keeps_context_and_may_start_afresh() {
        let mut c = Compressor::new(&agreed(false));
        let mut d = Decompress::new(false);
        let msg = Bytes::from("the same price line again and again ".repeat(3));
        let one = c.compress(&msg).unwrap();
        let two = c.compress(&msg).unwrap();
        assert!(two.len() < one.len(), "the second refers to the first");
        assert_eq!(inflate(&mut d, &one), msg);
        assert_eq!(inflate(&mut d, &two), msg);
        c.release_if_quiet();
        c.release_if_quiet();
        assert!(c.dedicated.is_none());
        let three = c.compress(&msg).unwrap();
        assert_eq!(inflate(&mut d, &three), msg);
    }
}
