//! Frames to bytes, one `Bytes` per frame: the gateway sends each frame as its own
//! WebSocket message, as CloudAMQP's relay and RabbitMQ's Web-AMQP plugins do.

use amq_protocol::frame::{gen_frame, AMQPContentHeader, AMQPFrame};
use amq_protocol::protocol::AMQPClass;
use bytes::Bytes;

use crate::{BasicProperties, FRAME_OVERHEAD};

/// The protocol header of AMQP 0-9-1, which a server also sends to refuse another version.
pub const PROTOCOL_HEADER: [u8; 8] = *b"AMQP\x00\x00\x09\x01";

/// A heartbeat frame.
pub const HEARTBEAT: [u8; 8] = [8, 0, 0, 0, 0, 0, 0, 0xCE];

fn encode(frame: &AMQPFrame, capacity: usize) -> Bytes {
    let (buf, _) = cookie_factory::gen(gen_frame(frame), Vec::with_capacity(capacity))
        .expect("a Vec grows to hold any frame");
    Bytes::from(buf)
}

pub fn encode_method(channel: u16, method: &AMQPClass) -> Bytes {
    // AMQPFrame owns its method; the clone is of a few short strings at most, except
    // for the rare large field table.
    encode(&AMQPFrame::Method(channel, method.clone()), 64)
}

/// A content header and the body frames that carry `body`, each at most `frame_max`
/// octets (overhead included).
pub fn encode_content(
    channel: u16,
    class_id: u16,
    properties: &BasicProperties,
    body: &[u8],
    frame_max: u32,
) -> Vec<Bytes> {
    let chunk = (frame_max.saturating_sub(FRAME_OVERHEAD).max(1)) as usize;
    let mut frames = Vec::with_capacity(1 + body.len().div_ceil(chunk));
    let header = AMQPContentHeader {
        class_id,
        body_size: body.len() as u64,
        properties: properties.clone(),
    };
    frames.push(encode(&AMQPFrame::Header(channel, header), 64));
    for part in body.chunks(chunk) {
        let mut buf = Vec::with_capacity(part.len() + FRAME_OVERHEAD as usize);
        buf.push(3);
        buf.extend_from_slice(&channel.to_be_bytes());
        buf.extend_from_slice(&(part.len() as u32).to_be_bytes());
        buf.extend_from_slice(part);
        buf.push(0xCE);
        frames.push(Bytes::from(buf));
    }
    frames
}
