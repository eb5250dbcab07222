//! The fuzz target's logic, shared with `tests/corpus_replay.rs` (both include this file by
//! path) so every corpus and regression file is checked on each `cargo test`.
//!
//! Input: byte 0 seeds where the stream is cut, the rest is what a client sends after its
//! protocol header. The stream is decoded whole, one octet at a time (short inputs) and in
//! pieces cut at seeded points; every run must give the same frames, the same commands out
//! of the per-channel content assemblers and the same error, must consume exactly the frames
//! it returns, and every method must survive encode -> decode unchanged.

use std::collections::HashMap;

use bytes::BytesMut;
use protocol_amqp::{
    encode_content, encode_method, Assembler, Command, Decoder, Frame, FrameError, Limits, Scope,
    FRAME_OVERHEAD,
};

/// Small limits so short inputs reach every check: frame-max at the spec's minimum, a few
/// channels, bodies of up to 1000 octets.
pub const LIMITS: Limits = Limits {
    frame_max: 4096,
    channel_max: 8,
    max_body_size: 1000,
};

/// What one run produced: the frames, what the assemblers made of them (channel-level
/// errors included, as the bridge closes only that channel), and the error that ended it.
#[derive(Debug, PartialEq)]
struct Run {
    frames: Vec<Frame>,
    commands: Vec<(u16, Result<Command, FrameError>)>,
    error: Option<FrameError>,
    left: usize,
}

pub fn fuzz_decode(data: &[u8]) {
    let Some((&seed, stream)) = data.split_first() else {
        return;
    };
    let whole = run(stream, &[stream.len()]);
    if stream.len() <= 512 {
        let bytewise: Vec<usize> = (1..=stream.len()).collect();
        assert_eq!(
            whole,
            run(stream, &bytewise),
            "one octet at a time changed the outcome"
        );
    }
    let cuts = cuts(seed, stream.len());
    assert_eq!(
        whole,
        run(stream, &cuts),
        "cutting at {cuts:?} changed the outcome"
    );
}

/// Increasing cut points ending at `len`, spaced by a small generator seeded from `seed`
/// (gaps of 1 to 64 octets, so cuts land inside frame headers and payloads alike).
fn cuts(seed: u8, len: usize) -> Vec<usize> {
    let mut state = u32::from(seed).wrapping_mul(2_654_435_761) | 1;
    let mut at = 0;
    let mut out = Vec::new();
    while at < len {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        at = (at + 1 + (state % 64) as usize).min(len);
        out.push(at);
    }
    out.push(len);
    out
}

/// Feeds `stream` up to each of `cuts` in turn, decoding until `Ok(None)`, and hands every
/// frame to its channel's assembler as the bridge does.
fn run(stream: &[u8], cuts: &[usize]) -> Run {
    let mut decoder = Decoder::new(LIMITS);
    let mut assemblers: HashMap<u16, Assembler> = HashMap::new();
    let mut buf = BytesMut::new();
    let (mut fed, mut consumed) = (0, 0);
    let mut out = Run {
        frames: Vec::new(),
        commands: Vec::new(),
        error: None,
        left: 0,
    };
    for &cut in cuts {
        buf.extend_from_slice(&stream[fed..cut]);
        fed = cut;
        loop {
            let before = buf.len();
            let result = decoder.decode(&mut buf);
            assert!(buf.len() <= before, "decode grew the buffer");
            match result {
                Ok(None) => {
                    assert_eq!(buf.len(), before, "Ok(None) consumed octets");
                    break;
                }
                Ok(Some(frame)) => {
                    let size = frame_size(&stream[consumed..]);
                    assert_eq!(before - buf.len(), size, "consumed other than one frame");
                    assert!(
                        size as u64 <= u64::from(LIMITS.frame_max),
                        "frame above frame-max"
                    );
                    consumed += size;
                    assert_eq!(
                        &buf[..],
                        &stream[consumed..fed],
                        "buffer is not the unconsumed input"
                    );
                    if let Err(e) = assemble(&mut assemblers, &frame, &mut out.commands) {
                        out.frames.push(frame);
                        // What was left unfed differs between runs: not compared.
                        out.error = Some(e);
                        return out;
                    }
                    out.frames.push(frame);
                }
                Err(e) => {
                    assert_ne!(e.code, 0, "an error without a reply code");
                    out.error = Some(e);
                    // The buffer's position after an error is unspecified.
                    return out;
                }
            }
        }
    }
    out.left = buf.len();
    out
}

/// The size field of the frame at the start of `rest`, plus the frame's overhead.
fn frame_size(rest: &[u8]) -> usize {
    u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]) as usize + FRAME_OVERHEAD as usize
}

/// A frame into its channel's content assembler. A channel-level error is recorded and the
/// assembler reset (the bridge closes that channel and carries on); a connection-level one is
/// returned (the session ends).
fn assemble(
    assemblers: &mut HashMap<u16, Assembler>,
    frame: &Frame,
    commands: &mut Vec<(u16, Result<Command, FrameError>)>,
) -> Result<(), FrameError> {
    let channel = frame.channel();
    let a = assemblers.entry(channel).or_default();
    let result = match frame {
        Frame::Method(c, m) => {
            round_trip_method(*c, m);
            a.method(*c, (**m).clone())
        }
        Frame::Header(c, h) => a.header(*c, (**h).clone(), LIMITS.max_body_size),
        Frame::Body(c, b) => a.body(*c, b.clone()),
        Frame::Heartbeat => return Ok(()),
    };
    match result {
        Ok(None) => Ok(()),
        Ok(Some(cmd)) => {
            if let Command::Content(content) = &cmd {
                assert!(
                    content.body.len() as u64 <= LIMITS.max_body_size,
                    "body above the limit"
                );
                round_trip_content(channel, content);
            }
            assert!(!a.busy(), "a finished command left content in progress");
            commands.push((channel, Ok(cmd)));
            Ok(())
        }
        Err(e) if e.scope() == Scope::Channel => {
            a.reset();
            commands.push((channel, Err(e)));
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Decodes `bytes`, which must be whole frames, with limits that refuse nothing.
fn redecode(bytes: &[u8]) -> Vec<Frame> {
    let mut d = Decoder::new(Limits {
        frame_max: u32::MAX,
        channel_max: u16::MAX,
        max_body_size: u64::MAX,
    });
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    loop {
        match d.decode(&mut buf) {
            Ok(Some(f)) => out.push(f),
            Ok(None) => break,
            Err(e) => panic!("re-decoding the encoder's {bytes:?} failed: {e:?}"),
        }
    }
    assert!(
        buf.is_empty(),
        "the encoder wrote a partial frame: {bytes:?}"
    );
    out
}

/// encode -> decode -> encode gives the same octets (compared as octets, not values, so a
/// NaN in a field table is not a difference).
fn round_trip_method(channel: u16, m: &protocol_amqp::protocol::AMQPClass) {
    let wire = encode_method(channel, m);
    let again = redecode(&wire);
    let [Frame::Method(c, m2)] = &again[..] else {
        panic!("{m:?} re-decoded as {again:?}");
    };
    assert_eq!(*c, channel);
    assert_eq!(
        encode_method(channel, m2),
        wire,
        "method round trip changed {m:?}"
    );
}

/// An assembled content, encoded as header + body frames and read back, is the same body.
fn round_trip_content(channel: u16, content: &protocol_amqp::Content) {
    let class_id = content.method.get_amqp_class_id();
    let frames = encode_content(
        channel,
        class_id,
        &content.properties,
        &content.body,
        LIMITS.frame_max,
    );
    let bytes: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
    let mut a = Assembler::new();
    assert!(a.method(channel, content.method.clone()).unwrap().is_none());
    let mut done = None;
    for f in redecode(&bytes) {
        let r = match f {
            Frame::Header(c, h) => a.header(c, *h, u64::MAX),
            Frame::Body(c, b) => a.body(c, b),
            other => panic!("encode_content wrote {other:?}"),
        };
        if let Some(cmd) = r.expect("re-assembling the encoder's content") {
            done = Some(cmd);
        }
    }
    match done {
        Some(Command::Content(c)) => {
            assert_eq!(c.body, content.body, "content body changed in a round trip");
            assert_eq!(c.method, content.method);
        }
        other => panic!("re-assembled content gave {other:?}"),
    }
}
