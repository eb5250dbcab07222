//! Round-trip property test with a tiny deterministic PRNG (no extra
//! crates): random frames are encoded as a stream with heart-beats, fed to
//! a decoder in random chunk sizes, and must come back unchanged.

use bytes::BytesMut;

use crate::escape::Escaping;
use crate::{encode, Command, Decoded, Decoder, Frame, Limits, Version};

/// SplitMix64: tiny, good enough, and reproducible from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

const COMMANDS: [Command; 15] = [
    Command::Connect,
    Command::Stomp,
    Command::Send,
    Command::Subscribe,
    Command::Unsubscribe,
    Command::Ack,
    Command::Nack,
    Command::Begin,
    Command::Commit,
    Command::Abort,
    Command::Disconnect,
    Command::Connected,
    Command::Message,
    Command::Receipt,
    Command::Error,
];

/// Characters that stress escaping, line splitting and UTF-8 handling.
const CHARS: [char; 12] = [
    'a', 'z', '-', '/', ' ', ':', '\n', '\r', '\\', 'é', '€', '\0',
];

fn text(rng: &mut Rng, min: usize, raw: bool, is_name: bool) -> String {
    let len = min + rng.below(8);
    let mut s = String::new();
    while s.chars().count() < len {
        let c = rng.pick(&CHARS);
        // Raw frames (1.0, CONNECT-class) cannot represent LF at all, nor
        // ':' in a name; the encoder would substitute '?'.
        if raw && (c == '\n' || (is_name && c == ':')) {
            continue;
        }
        s.push(c);
    }
    s
}

fn random_frame(rng: &mut Rng, version: Version) -> Frame {
    let command = rng.pick(&COMMANDS);
    let raw = Escaping::for_frame(version, command) == Escaping::Raw;
    let mut frame = Frame::new(command);
    for _ in 0..rng.below(6) {
        let name = text(rng, 1, raw, true);
        let value = text(rng, 0, raw, false);
        frame.headers.push(name, value);
        if rng.below(4) == 0 {
            // A repeated name: order and first-wins must survive.
            let (n, _) = frame.headers.iter().next().unwrap();
            let n = n.to_owned();
            frame.headers.push(n, text(rng, 0, raw, false));
        }
    }
    let body: Vec<u8> = (0..rng.below(3) * rng.below(20))
        .map(|_| rng.next() as u8)
        .collect();
    frame.with_body(body)
}

/// What the decoder must return: the encoder owns `content-length`.
fn expected(frame: &Frame) -> Frame {
    let mut f = frame.clone();
    f.headers.remove("content-length");
    if !f.body.is_empty() {
        f.headers.push("content-length", f.body.len().to_string());
    }
    f
}

#[test]
fn random_frames_round_trip_in_every_version() {
    for version in [Version::V1_0, Version::V1_1, Version::V1_2] {
        let mut rng = Rng(0x5709 + version as u64);
        for _ in 0..300 {
            let frames: Vec<Frame> = (0..1 + rng.below(4))
                .map(|_| random_frame(&mut rng, version))
                .collect();
            let mut wire = BytesMut::new();
            let mut want = Vec::new();
            for f in &frames {
                encode(f, version, &mut wire);
                want.push(Decoded::Frame(expected(f)));
                for _ in 0..rng.below(3) {
                    wire.extend_from_slice(rng.pick(&[&b"\n"[..], b"\r\n"]));
                    want.push(Decoded::HeartBeat);
                }
            }

            // Feed in random chunks; Ok(None) must never consume anything.
            let mut decoder = Decoder::new(Limits::default());
            decoder.set_version(version);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut pos = 0;
            while pos < wire.len() {
                let step = 1 + rng.below(16);
                let end = (pos + step).min(wire.len());
                buf.extend_from_slice(&wire[pos..end]);
                pos = end;
                loop {
                    let before = buf.len();
                    match decoder.decode(&mut buf) {
                        Ok(Some(d)) => got.push(d),
                        Ok(None) => {
                            assert_eq!(buf.len(), before);
                            break;
                        }
                        Err(e) => panic!("{version}: {e} decoding {wire:?}"),
                    }
                }
            }
            assert!(buf.is_empty());
            assert_eq!(got, want, "{version}: {wire:?}");
        }
    }
}
