//! A service's `[service.compression]` table: permessage-deflate (RFC 7692), off unless the
//! table is there.

use serde::{Deserialize, Serialize};

/// Where the server's compressor lives, which decides what a compressed connection costs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompressorMode {
    /// `server_no_context_takeover`: every message is compressed on its own, by a
    /// compressor each worker thread keeps, so a connection holds no compressor at all and
    /// a message fanned out to many subscribers is compressed once.
    #[default]
    Shared,
    /// Each connection has its own compressor and the client keeps its window between
    /// messages (better ratio on small, similar messages; tens of KiB per busy connection).
    Dedicated,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompressionConfig {
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub mode: CompressorMode,
    /// zlib level, 1 (fastest) to 9 (smallest).
    #[serde(default = "default_level")]
    pub level: u32,
    /// Messages shorter than this many bytes go uncompressed (RSV1 clear).
    #[serde(default = "default_min_size")]
    pub min_size: usize,
    /// The largest LZ77 window the server compresses with, 8 to 15 (8 compresses with 9,
    /// whose matches never reach past 250 bytes, so a 256-byte window decodes them).
    #[serde(default = "fifteen")]
    pub server_max_window_bits: u8,
    /// The window asked of clients that offer `client_max_window_bits`, 8 to 15: a smaller
    /// one shrinks the per-connection decompressor of a context-takeover client.
    #[serde(default = "fifteen")]
    pub client_max_window_bits: u8,
    /// Ask every client to compress each message on its own, so the gateway keeps no
    /// decompressor between messages (on by default: a context-takeover client costs a
    /// ~60 KiB decompressor for the life of its connection).
    #[serde(default = "yes")]
    pub client_no_context_takeover: bool,
}

fn yes() -> bool {
    true
}
fn default_level() -> u32 {
    6
}
fn default_min_size() -> usize {
    64
}
fn fifteen() -> u8 {
    15
}

impl CompressionConfig {
    /// The first bad key and why, for the service table's error.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=9).contains(&self.level) {
            return Err(("level", format!("{} is not 1 to 9", self.level)));
        }
        for (key, bits) in [
            ("server_max_window_bits", self.server_max_window_bits),
            ("client_max_window_bits", self.client_max_window_bits),
        ] {
            if !(8..=15).contains(&bits) {
                return Err((key, format!("{bits} is not 8 to 15")));
            }
        }
        Ok(())
    }
}
