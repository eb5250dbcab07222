//! The fuzz target's logic, shared with the corpus replay test so every
//! corpus and regression file is checked on each `cargo test`.

use bytes::BytesMut;

use crate::{encode_to_bytes, Command, Decoded, Decoder, Frame, Limits, Version};

/// Small limits so short fuzz inputs reach every limit check.
const LIMITS: Limits = Limits {
    max_frame_size: 512,
    max_headers: 8,
    max_header_len: 64,
};

/// What one decoder run produced.
#[derive(Debug, PartialEq)]
struct Run {
    items: Vec<Decoded>,
    failed: bool,
    left: usize,
}

/// Input: byte 0 picks a split point, the rest is the stream. The stream is
/// decoded whole and in two pieces; both must agree (the decoder's saved
/// progress must not change results), must never over-consume, and every
/// decoded frame must survive encode → decode unchanged.
#[doc(hidden)]
pub fn fuzz_decode(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let split = usize::from(first) % (stream.len() + 1);
    let whole = run(stream, &[stream.len()]);
    let pieces = run(stream, &[split, stream.len()]);
    assert_eq!(whole.items, pieces.items, "split at {split} changed frames");
    assert_eq!(
        whole.failed, pieces.failed,
        "split at {split} changed the outcome"
    );
    if !whole.failed {
        assert_eq!(whole.left, pieces.left);
    }
}

/// Feeds `stream` up to each of `cuts` in turn, decoding until `Ok(None)`.
fn run(stream: &[u8], cuts: &[usize]) -> Run {
    let mut decoder = Decoder::new(LIMITS);
    let mut buf = BytesMut::new();
    let (mut fed, mut consumed) = (0, 0);
    let mut items = Vec::new();
    for &cut in cuts {
        buf.extend_from_slice(&stream[fed..cut]);
        fed = cut;
        loop {
            let before = buf.len();
            let version = decoder.version();
            let result = decoder.decode(&mut buf);
            assert!(buf.len() <= before, "decode grew the buffer");
            consumed += before - buf.len();
            assert_eq!(
                &buf[..],
                &stream[consumed..fed],
                "buffer is not the unconsumed input"
            );
            match result {
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed bytes");
                    break;
                }
                Ok(Some(item)) => {
                    if let Decoded::Frame(frame) = &item {
                        round_trip(frame, version);
                        negotiate(&mut decoder, frame);
                    }
                    items.push(item);
                }
                Err(_) => {
                    return Run {
                        items,
                        failed: true,
                        left: buf.len(),
                    }
                }
            }
        }
    }
    Run {
        items,
        failed: false,
        left: buf.len(),
    }
}

/// Mimics the bridge: CONNECT/STOMP switch to the best offered version
/// (1.0 when `accept-version` is absent), so later frames exercise 1.0/1.1.
fn negotiate(decoder: &mut Decoder, frame: &Frame) {
    if matches!(frame.command, Command::Connect | Command::Stomp) {
        let best = frame
            .headers
            .get("accept-version")
            .and_then(|list| list.split(',').filter_map(Version::parse).max())
            .unwrap_or(Version::V1_0);
        decoder.set_version(best);
    }
}

/// Encodes `frame` as `version` and decodes it again. Expected result: the
/// same frame with `content-length` replaced by the encoder's own.
fn round_trip(frame: &Frame, version: Version) {
    let wire = encode_to_bytes(frame, version);
    assert_eq!(
        wire,
        encode_to_bytes(frame, version),
        "encoding not deterministic"
    );

    let mut expected = frame.clone();
    expected.headers.remove("content-length");
    if !expected.body.is_empty() {
        expected
            .headers
            .push("content-length", expected.body.len().to_string());
    }

    let mut decoder = Decoder::new(Limits {
        max_frame_size: usize::MAX,
        max_headers: usize::MAX,
        max_header_len: usize::MAX,
    });
    decoder.set_version(version);
    let mut buf = BytesMut::from(&wire[..]);
    match decoder.decode(&mut buf) {
        Ok(Some(Decoded::Frame(again))) => assert_eq!(again, expected, "round trip as {version}"),
        other => panic!("re-decoding {wire:?} as {version} gave {other:?}"),
    }
    assert!(buf.is_empty(), "encoder wrote trailing bytes");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoke() {
        fuzz_decode(b"");
        fuzz_decode(b"\x05CONNECT\naccept-version:1.0,1.1\n\n\0SEND\nk:a\\tb\n\nx\0\n");
        fuzz_decode(b"\x03GET / HTTP/1.1\r\n");
        for split in 0..=255u8 {
            let mut data = vec![split];
            data.extend_from_slice(b"MESSAGE\r\nk:v\\c\ncontent-length:2\n\n\0\0\0\n\r\n");
            fuzz_decode(&data);
        }
    }
}
