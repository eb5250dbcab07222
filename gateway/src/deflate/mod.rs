//! permessage-deflate (RFC 7692) on the WebSocket transport: the service setting, the
//! handshake's negotiation, the outgoing compressor and the incoming inflater.
//!
//! tungstenite knows no extensions, so compression sits at its edges: outgoing messages are
//! compressed before tungstenite frames them (RSV1 set on the raw frame), incoming frames are
//! inflated by a byte-stream layer beneath it. Everything else (control frames, the closing
//! handshake, UTF-8 and size checks) stays tungstenite's.

mod compress;
mod config;
mod inflate;
mod negotiate;

pub use compress::Compressor;
pub use config::CompressionConfig;
pub use inflate::{close_for, InflateLimits, InflateStream};
pub use negotiate::{negotiate, Agreed};
