//! Sans-IO STOMP 1.0 / 1.1 / 1.2 codec.
//!
//! Bytes in, frames out: [`Decoder::decode`] parses frames and heart-beats
//! from a caller-owned `BytesMut`, [`encode`] appends frames to one. No
//! sockets, no runtime, no timers; the bridge owns all I/O and policy
//! (version negotiation, heart-beat timing, subscriptions).

#![forbid(unsafe_code)]

mod command;
mod decode;
mod encode;
mod error;
mod escape;
mod frame;
mod fuzz;
mod headers;
mod heart_beating;
mod version;

#[cfg(test)]
mod prop_tests;

pub use command::Command;
pub use decode::{Decoded, Decoder, Limits};
pub use encode::{encode, encode_to_bytes, heart_beat};
pub use error::DecodeError;
pub use frame::Frame;
pub use headers::Headers;
pub use heart_beating::{negotiate as negotiate_heart_beats, parse_heart_beat};
pub use version::Version;

#[doc(hidden)]
pub use fuzz::fuzz_decode;
