//! Decoder and assembler edge cases at the boundaries the bridge relies on: limits exactly
//! met and exceeded by one, refusals from a frame's header alone, packed and partial input,
//! and the reply codes and scopes of content errors.

use bytes::{Bytes, BytesMut};
use protocol_amqp::protocol::{basic, channel, AMQPClass};
use protocol_amqp::{
    encode_method, parse_protocol_header, AMQPContentHeader, Assembler, Command, Decoder, Frame,
    Limits, ProtocolHeader, Scope, CONTENT_TOO_LARGE, FRAME_ERROR, NOT_ALLOWED, UNEXPECTED_FRAME,
};

const LIMITS: Limits = Limits {
    frame_max: 4096,
    channel_max: 8,
    max_body_size: 1000,
};

fn raw(kind: u8, channel: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = vec![kind];
    f.extend_from_slice(&channel.to_be_bytes());
    f.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    f.extend_from_slice(payload);
    f.push(0xCE);
    f
}

fn publish() -> AMQPClass {
    AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
        exchange: "".into(),
        routing_key: "q".into(),
        mandatory: false,
        immediate: false,
    }))
}

fn content_header(body_size: u64) -> AMQPContentHeader {
    AMQPContentHeader {
        class_id: 60,
        body_size,
        properties: Default::default(),
    }
}

#[test]
fn fewer_than_seven_octets_wait_and_consume_nothing() {
    let frame = raw(3, 1, b"abc");
    for n in 0..7 {
        let mut buf = BytesMut::from(&frame[..n]);
        assert_eq!(Decoder::new(LIMITS).decode(&mut buf).unwrap(), None);
        assert_eq!(buf.len(), n, "{n} octets: something was consumed");
    }
}

#[test]
fn a_frame_of_exactly_frame_max_passes_and_one_more_octet_fails() {
    let at = raw(3, 1, &vec![7u8; 4096 - 8]);
    let mut buf = BytesMut::from(&at[..]);
    assert!(
        matches!(Decoder::new(LIMITS).decode(&mut buf), Ok(Some(Frame::Body(1, b))) if b.len() == 4088)
    );
    assert!(buf.is_empty());

    // One octet over: refused from the seven-octet header, the payload never waited for.
    let over = raw(3, 1, &vec![7u8; 4096 - 7]);
    let mut buf = BytesMut::from(&over[..7]);
    assert_eq!(
        Decoder::new(LIMITS).decode(&mut buf).unwrap_err().code,
        FRAME_ERROR
    );
}

#[test]
fn channel_max_itself_is_allowed_and_the_next_refused_from_the_header() {
    let open = AMQPClass::Channel(channel::AMQPMethod::Open(channel::Open {}));
    let mut buf = BytesMut::from(&encode_method(8, &open)[..]);
    assert!(matches!(
        Decoder::new(LIMITS).decode(&mut buf),
        Ok(Some(Frame::Method(8, _)))
    ));

    let nine = encode_method(9, &open);
    let mut buf = BytesMut::from(&nine[..7]);
    let e = Decoder::new(LIMITS).decode(&mut buf).unwrap_err();
    assert_eq!((e.code, e.channel), (NOT_ALLOWED, 9));
    assert_eq!(e.scope(), Scope::Connection);
}

#[test]
fn packed_frames_come_out_one_at_a_time_and_a_partial_tail_stays() {
    let mut bytes = raw(8, 0, b"");
    bytes.extend(raw(3, 2, b"body"));
    bytes.extend(&raw(3, 2, b"tail")[..5]);
    let mut buf = BytesMut::from(&bytes[..]);
    let mut d = Decoder::new(LIMITS);
    assert_eq!(d.decode(&mut buf).unwrap(), Some(Frame::Heartbeat));
    assert_eq!(
        d.decode(&mut buf).unwrap(),
        Some(Frame::Body(2, Bytes::from_static(b"body")))
    );
    assert_eq!(d.decode(&mut buf).unwrap(), None);
    assert_eq!(&buf[..], &raw(3, 2, b"tail")[..5]);
    buf.extend_from_slice(&raw(3, 2, b"tail")[5..]);
    assert_eq!(
        d.decode(&mut buf).unwrap(),
        Some(Frame::Body(2, Bytes::from_static(b"tail")))
    );
    assert!(buf.is_empty());
}

#[test]
fn lowered_limits_apply_to_the_next_frame() {
    // Connection.Tune-Ok may lower frame-max below what the decoder started with.
    let mut d = Decoder::new(Limits {
        frame_max: 131_072,
        ..LIMITS
    });
    let big = raw(3, 1, &vec![0u8; 5000]);
    let mut buf = BytesMut::from(&big[..]);
    assert!(d.decode(&mut buf).unwrap().is_some());
    d.set_limits(LIMITS);
    let mut buf = BytesMut::from(&big[..]);
    assert_eq!(d.decode(&mut buf).unwrap_err().code, FRAME_ERROR);
}

#[test]
fn a_body_of_exactly_max_body_size_is_taken_and_one_more_is_311_on_the_channel() {
    let mut a = Assembler::new();
    a.method(1, publish()).unwrap();
    assert!(a.header(1, content_header(1000), 1000).unwrap().is_none());
    let done = a.body(1, Bytes::from(vec![1u8; 1000])).unwrap();
    assert!(matches!(done, Some(Command::Content(c)) if c.body.len() == 1000));

    let mut a = Assembler::new();
    a.method(1, publish()).unwrap();
    let e = a.header(1, content_header(1001), 1000).unwrap_err();
    assert_eq!((e.code, e.scope()), (CONTENT_TOO_LARGE, Scope::Channel));
    // The close names the publish whose content was refused.
    assert_eq!((e.class_id, e.method_id), (60, 40));
    // The channel can publish again at once.
    a.method(1, publish()).unwrap();
    assert!(a.busy());
}

#[test]
fn a_content_error_on_channel_0_closes_the_connection() {
    let mut a = Assembler::new();
    a.method(0, publish()).unwrap();
    let e = a.header(0, content_header(1 << 30), 1000).unwrap_err();
    assert_eq!(e.code, CONTENT_TOO_LARGE);
    assert_eq!(
        e.scope(),
        Scope::Connection,
        "no channel to close on channel 0"
    );
}

#[test]
fn body_frames_past_the_announced_size_are_a_frame_error() {
    let mut a = Assembler::new();
    a.method(1, publish()).unwrap();
    a.header(1, content_header(4), 1000).unwrap();
    assert!(a.body(1, Bytes::from_static(b"ab")).unwrap().is_none());
    assert_eq!(
        a.body(1, Bytes::from_static(b"cde")).unwrap_err().code,
        FRAME_ERROR
    );
}

#[test]
fn empty_body_frames_add_nothing_and_a_body_in_pieces_is_joined_in_order() {
    let mut a = Assembler::new();
    a.method(1, publish()).unwrap();
    a.header(1, content_header(6), 1000).unwrap();
    assert!(a.body(1, Bytes::new()).unwrap().is_none());
    assert!(a.body(1, Bytes::from_static(b"ab")).unwrap().is_none());
    assert!(a.body(1, Bytes::new()).unwrap().is_none());
    assert!(a.body(1, Bytes::from_static(b"cd")).unwrap().is_none());
    let done = a.body(1, Bytes::from_static(b"ef")).unwrap();
    assert!(matches!(done, Some(Command::Content(c)) if &c.body[..] == b"abcdef"));
}

#[test]
fn a_second_header_or_a_header_of_another_class_is_unexpected() {
    let mut a = Assembler::new();
    a.method(1, publish()).unwrap();
    a.header(1, content_header(3), 1000).unwrap();
    assert_eq!(
        a.header(1, content_header(3), 1000).unwrap_err().code,
        UNEXPECTED_FRAME
    );

    let mut a = Assembler::new();
    a.method(1, publish()).unwrap();
    let mut other = content_header(3);
    other.class_id = 50;
    assert_eq!(a.header(1, other, 1000).unwrap_err().code, UNEXPECTED_FRAME);
}

#[test]
fn a_reset_channel_forgets_its_content() {
    let mut a = Assembler::new();
    a.method(1, publish()).unwrap();
    a.header(1, content_header(3), 1000).unwrap();
    a.reset();
    assert!(!a.busy());
    assert_eq!(
        a.body(1, Bytes::from_static(b"abc")).unwrap_err().code,
        UNEXPECTED_FRAME
    );
}

#[test]
fn the_protocol_header_arriving_one_octet_at_a_time() {
    let mut buf = BytesMut::new();
    for (i, b) in b"AMQP\x00\x00\x09\x01".iter().enumerate() {
        buf.extend_from_slice(&[*b]);
        let got = parse_protocol_header(&mut buf);
        if i < 7 {
            assert_eq!(got, None, "decided after {} octets", i + 1);
        } else {
            assert_eq!(got, Some(ProtocolHeader::Amqp091));
        }
    }
    assert!(buf.is_empty());
    // An empty buffer is not yet garbage.
    assert_eq!(parse_protocol_header(&mut BytesMut::new()), None);
    // Garbage after a good "AMQ" prefix is known at its first wrong octet.
    assert_eq!(
        parse_protocol_header(&mut BytesMut::from(&b"AMQX"[..])),
        Some(ProtocolHeader::NotAmqp)
    );
}
