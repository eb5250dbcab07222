//! AMQP 0-9-1 framing, sans-IO: bytes in, frames out, and frames back to bytes.
//!
//! The method types and their wire form are amq-protocol's (lapin's own codec), so the
//! gateway and lapin agree on every field. What this crate adds is what a server in front of
//! untrusted clients needs and amq-protocol leaves to the caller: limits checked from a
//! frame's first seven bytes (before its payload is buffered), content assembly with a body
//! size limit announced by the header frame, and errors that carry the reply code the spec
//! asks a server to close with.
//!
//! Bytes may come split or packed in any way (clients put one frame per WebSocket message,
//! several, or a byte stream); [`Decoder::decode`] takes what is buffered and returns one frame
//! at a time. Body frames are slices of the input buffer, not copies.

mod codes;
mod content;
mod decode;
mod encode;
mod error;
mod header;
mod names;

pub use amq_protocol::frame::AMQPContentHeader;
pub use amq_protocol::protocol::{
    self, basic::AMQPProperties as BasicProperties, AMQPClass, AMQPHardError, AMQPSoftError,
};
pub use amq_protocol::types::{
    AMQPValue, FieldArray, FieldTable, LongString, LongUInt, ShortString, ShortUInt,
};
pub use codes::*;
pub use content::{Assembler, Command, Content};
pub use decode::{Decoder, Frame, Limits};
pub use encode::{encode_content, encode_method, HEARTBEAT, PROTOCOL_HEADER};
pub use error::{FrameError, Scope};
pub use header::{parse_protocol_header, ProtocolHeader};
pub use names::method_name;

/// Octets a frame adds around its payload: type, channel, size, and the frame-end octet.
pub const FRAME_OVERHEAD: u32 = 8;
/// The smallest frame-max a peer may set (the spec's frame-min-size).
pub const FRAME_MIN_SIZE: u32 = 4096;

/// A field table from its wire form (length first), `None` if malformed. SASL AMQPLAIN
/// responses are tables.
pub fn parse_field_table(bytes: &[u8]) -> Option<FieldTable> {
    amq_protocol::types::parsing::parse_field_table(bytes)
        .ok()
        .map(|(_, t)| t)
}
