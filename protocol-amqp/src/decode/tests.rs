use super::*;
use crate::{codes::*, encode_content, encode_method, Assembler, Command};
use amq_protocol::protocol::{basic, channel};

fn decoder() -> Decoder {
    Decoder::new(Limits {
        frame_max: 4096,
        channel_max: 8,
        max_body_size: 1000,
    })
}

fn publish() -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: "ex".into(),
        routing_key: "rk".into(),
        mandatory: true,
        immediate: false,
    }))
}

fn all(d: &mut Decoder, bytes: &[u8]) -> Result<Vec<Frame>, FrameError> {
    let mut buf = BytesMut::from(bytes);
    let mut out = Vec::new();
    while let Some(f) = d.decode(&mut buf)? {
        out.push(f);
    }
    assert!(buf.is_empty(), "left over: {buf:?}");
    Ok(out)
}

#[test]
fn a_method_round_trips_whole_or_one_octet_at_a_time() {
    let open = AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}));
    let bytes = encode_method(3, &open);
    let whole = all(&mut decoder(), &bytes).unwrap();
    assert_eq!(whole, vec![Frame::Method(3, Box::new(open.clone()))]);

    let mut d = decoder();
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for b in bytes.iter() {
        buf.extend_from_slice(&[*b]);
        if let Some(f) = d.decode(&mut buf).unwrap() {
            got.push(f);
        }
    }
    assert_eq!(got, whole);
}

#[test]
fn content_assembles_across_body_frames() {
    let body: Vec<u8> = (0..2500u32).map(|i| i as u8).collect();
    let mut bytes = encode_method(1, &publish()).to_vec();
    for f in encode_content(1, 60, &Default::default(), &body, 1024) {
        bytes.extend_from_slice(&f);
    }
    let mut d = decoder();
    let mut a = Assembler::new();
    let mut limits = *d.limits();
    limits.max_body_size = 10_000;
    d.set_limits(limits);
    let mut done = None;
    for f in all(&mut d, &bytes).unwrap() {
        let cmd = match f {
            Frame::Method(c, m) => a.method(c, *m),
            Frame::Header(c, h) => a.header(c, *h, 10_000),
            Frame::Body(c, b) => a.body(c, b),
            Frame::Heartbeat => unreachable!(),
        }
        .unwrap();
        if cmd.is_some() {
            done = cmd;
        }
    }
    let Some(Command::Content(c)) = done else {
        panic!("no content")
    };
    assert_eq!(c.method, publish());
    assert_eq!(&c.body[..], &body[..]);
}

#[test]
fn a_frame_above_frame_max_is_refused_from_its_header() {
    // Only the seven-octet header: the size alone decides.
    let mut head = vec![3u8, 0, 1];
    head.extend_from_slice(&5000u32.to_be_bytes());
    let e = all(&mut decoder(), &head).unwrap_err();
    assert_eq!(e.code, FRAME_ERROR);
}

#[test]
fn limits_and_garbage_get_the_specs_codes() {
    let mut bad_end = encode_method(1, &publish()).to_vec();
    *bad_end.last_mut().unwrap() = 0;
    assert_eq!(all(&mut decoder(), &bad_end).unwrap_err().code, FRAME_ERROR);

    let high = encode_method(9, &publish());
    assert_eq!(all(&mut decoder(), &high).unwrap_err().code, NOT_ALLOWED);

    let unknown = [1u8, 0, 1, 0, 0, 0, 4, 0, 99, 0, 1, 0xCE];
    let e = all(&mut decoder(), &unknown).unwrap_err();
    assert_eq!((e.code, e.class_id, e.method_id), (NOT_IMPLEMENTED, 99, 1));

    // basic.publish with its arguments cut short.
    let short = [1u8, 0, 1, 0, 0, 0, 5, 0, 60, 0, 40, 0, 0xCE];
    assert_eq!(all(&mut decoder(), &short).unwrap_err().code, SYNTAX_ERROR);

    let beat_on_1 = [8u8, 0, 1, 0, 0, 0, 0, 0xCE];
    assert_eq!(
        all(&mut decoder(), &beat_on_1).unwrap_err().code,
        COMMAND_INVALID
    );

    let kind = [7u8, 0, 0, 0, 0, 0, 0, 0xCE];
    assert_eq!(all(&mut decoder(), &kind).unwrap_err().code, FRAME_ERROR);
}

#[test]
fn content_out_of_order_or_too_large_is_refused() {
    let mut a = Assembler::new();
    assert_eq!(
        a.body(1, Bytes::from_static(b"x")).unwrap_err().code,
        UNEXPECTED_FRAME
    );
    a.method(1, publish()).unwrap();
    assert_eq!(a.method(1, publish()).unwrap_err().code, UNEXPECTED_FRAME);

    let mut a = Assembler::new();
    a.method(1, publish()).unwrap();
    let header = AMQPContentHeader {
        class_id: 60,
        body_size: 1 << 30,
        properties: Default::default(),
    };
    let e = a.header(1, header, 1000).unwrap_err();
    assert_eq!(
        (e.code, e.scope()),
        (CONTENT_TOO_LARGE, crate::Scope::Channel)
    );
    assert!(!a.busy());
}

#[test]
fn an_empty_body_needs_no_body_frame() {
    let mut a = Assembler::new();
    a.method(1, publish()).unwrap();
    let header = AMQPContentHeader {
        class_id: 60,
        body_size: 0,
        properties: Default::default(),
    };
    assert!(matches!(
        a.header(1, header, 1000).unwrap(),
        Some(Command::Content(_))
    ));
}
