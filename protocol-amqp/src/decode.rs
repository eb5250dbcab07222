//! Check-then-parse framing: a frame's seven-octet header is checked against the limits
//! before its payload is waited for, so a peer announcing a huge frame is refused at once
//! instead of being buffered.

use amq_protocol::frame::{parsing::parse_content_header, AMQPContentHeader};
use amq_protocol::protocol::{parse_class, AMQPClass};
use bytes::{Buf, Bytes, BytesMut};

use crate::codes::{COMMAND_INVALID, FRAME_ERROR, NOT_ALLOWED, NOT_IMPLEMENTED, SYNTAX_ERROR};
use crate::names::method_name;
use crate::{FrameError, FRAME_OVERHEAD};

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;
const FRAME_HEADER_LEN: usize = 7;

/// What one peer may send the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The largest frame, overhead included (the spec's frame-max).
    pub frame_max: u32,
    /// The highest channel number (the spec's channel-max).
    pub channel_max: u16,
    /// The largest message body a content header may announce.
    pub max_body_size: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_max: 131_072,
            channel_max: 2047,
            max_body_size: 16 * 1024 * 1024,
        }
    }
}

/// One frame from the peer.
#[derive(Debug, Clone, PartialEq)]
pub enum Frame {
    Method(u16, Box<AMQPClass>),
    Header(u16, Box<AMQPContentHeader>),
    Body(u16, Bytes),
    Heartbeat,
}

impl Frame {
    pub fn channel(&self) -> u16 {
        match self {
            Frame::Method(c, _) | Frame::Header(c, _) | Frame::Body(c, _) => *c,
            Frame::Heartbeat => 0,
        }
    }
}

/// Frames out of a byte buffer that fills as the peer's bytes arrive.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: Limits,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder { limits }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Apply what Connection.Tune(-Ok) settled.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// The next whole frame off `buf`, `Ok(None)` until one is buffered. An error is the
    /// connection's end: after it the buffer's position is unspecified.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < FRAME_HEADER_LEN {
            return Ok(None);
        }
        let kind = buf[0];
        let channel = u16::from_be_bytes([buf[1], buf[2]]);
        let size = u32::from_be_bytes([buf[3], buf[4], buf[5], buf[6]]);
        if !matches!(
            kind,
            FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
        ) {
            return Err(FrameError::new(
                FRAME_ERROR,
                channel,
                format!("unknown frame type {kind}"),
            ));
        }
        if u64::from(size) + u64::from(FRAME_OVERHEAD) > u64::from(self.limits.frame_max) {
            return Err(FrameError::new(
                FRAME_ERROR,
                channel,
                format!(
                    "frame of {} octets is larger than frame-max {}",
                    u64::from(size) + u64::from(FRAME_OVERHEAD),
                    self.limits.frame_max
                ),
            ));
        }
        if channel > self.limits.channel_max {
            return Err(FrameError::new(
                NOT_ALLOWED,
                channel,
                format!(
                    "channel {channel} is above the negotiated channel-max {}",
                    self.limits.channel_max
                ),
            ));
        }
        let total = FRAME_HEADER_LEN + size as usize + 1;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        if buf[total - 1] != FRAME_END {
            return Err(FrameError::new(
                FRAME_ERROR,
                channel,
                format!("frame end octet is {:#04x}, not 0xce", buf[total - 1]),
            ));
        }
        buf.advance(FRAME_HEADER_LEN);
        let payload = buf.split_to(size as usize).freeze();
        buf.advance(1);
        let frame = match kind {
            FRAME_METHOD => Frame::Method(channel, Box::new(method(channel, &payload[..])?)),
            FRAME_HEADER => {
                Frame::Header(channel, Box::new(content_header(channel, &payload[..])?))
            }
            FRAME_BODY => Frame::Body(channel, payload),
            _ => {
                if channel != 0 {
                    return Err(FrameError::new(
                        COMMAND_INVALID,
                        channel,
                        format!("heartbeat frame on channel {channel}"),
                    ));
                }
                Frame::Heartbeat
            }
        };
        Ok(Some(frame))
    }
}

fn method(channel: u16, payload: &[u8]) -> Result<AMQPClass, FrameError> {
    if payload.len() < 4 {
        return Err(FrameError::new(
            SYNTAX_ERROR,
            channel,
            "method frame shorter than its class and method ids",
        ));
    }
    let class_id = u16::from_be_bytes([payload[0], payload[1]]);
    let method_id = u16::from_be_bytes([payload[2], payload[3]]);
    let Some(name) = method_name(class_id, method_id) else {
        return Err(FrameError::new(
            NOT_IMPLEMENTED,
            channel,
            format!("unknown method {class_id}.{method_id}"),
        )
        .on_method(class_id, method_id));
    };
    match parse_class(payload) {
        Ok((_, class)) => Ok(class),
        Err(_) => Err(
            FrameError::new(SYNTAX_ERROR, channel, format!("malformed {name}"))
                .on_method(class_id, method_id),
        ),
    }
}

fn content_header(channel: u16, payload: &[u8]) -> Result<AMQPContentHeader, FrameError> {
    match parse_content_header(payload) {
        Ok((_, header)) => Ok(header),
        Err(_) => Err(FrameError::new(
            SYNTAX_ERROR,
            channel,
            "malformed content header",
        )),
    }
}

#[cfg(test)]
mod tests;
