//! The PROXY protocol header (HAProxy's spec, v1 text and v2 binary) as a sans-IO parse of
//! the bytes read so far. `ppp` does the field decoding; this adds what a listener needs on
//! top: which version by the first bytes, "incomplete" told apart from "wrong" (v1 is
//! handed to `ppp` only as a whole line), a bound on v2's length (its 16-bit length would
//! otherwise make us buffer 64 KiB per connection), and which address to believe.

use std::net::SocketAddr;

use ppp::v2::{Addresses, Command, Protocol};
use ppp::PartialResult;

/// The 12-byte v2 signature, then version/command, family/protocol and a 16-bit length.
const V2_FIXED: usize = 16;

/// Largest v2 header accepted, TLVs included. HAProxy's and AWS NLB's TLVs (ALPN, authority,
/// unique id, VPC endpoint id, TLS details) take a few hundred bytes.
pub const MAX_V2_HEADER: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Not yet a whole header; no error so far.
    Incomplete,
    /// A whole header of `len` bytes; what follows it is the client's own data.
    Header {
        len: usize,
        version: Version,
        /// The client's address, or `None` when the header says to use the connection's own
        /// (v2 `LOCAL`, the proxy's health checks; v1 `UNKNOWN`; v2 `UNSPEC`).
        source: Option<SocketAddr>,
    },
}

/// Why the bytes are not a PROXY header; the text is for the operator's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("no PROXY protocol signature (the connection starts with {0:?})")]
    NoSignature(String),
    #[error("bad PROXY v1 header: {0}")]
    V1(String),
    #[error("bad PROXY v2 header: {0}")]
    V2(String),
    #[error("PROXY v2 header of {0} bytes is over the {MAX_V2_HEADER}-byte limit")]
    TooLong(usize),
    #[error("PROXY v2 header for a {0} connection; only TCP over IPv4 or IPv6 is served")]
    Unsupported(&'static str),
}

/// Parse the start of a connection. Call again with more bytes on `Incomplete`; the buffer
/// never needs to hold more than `MAX_V2_HEADER` bytes before an answer.
pub fn parse(buf: &[u8]) -> Result<Parsed, HeaderError> {
    let sig = ppp::v2::PROTOCOL_PREFIX;
    if buf.starts_with(sig) || sig.starts_with(buf) {
        parse_v2(buf)
    } else {
        parse_v1(buf)
    }
}

fn parse_v2(buf: &[u8]) -> Result<Parsed, HeaderError> {
    if buf.len() >= V2_FIXED {
        let total = V2_FIXED + u16::from_be_bytes([buf[14], buf[15]]) as usize;
        if total > MAX_V2_HEADER {
            return Err(HeaderError::TooLong(total));
        }
    }
    let header = match ppp::v2::Header::try_from(buf) {
        Err(e) if e.is_incomplete() => return Ok(Parsed::Incomplete),
        Err(e) => return Err(HeaderError::V2(e.to_string())),
        Ok(h) => h,
    };
    let source = match (header.command, header.protocol, header.addresses) {
        // Health checks from the proxy itself: the connection is the peer.
        (Command::Local, _, _) => None,
        (_, Protocol::Datagram, _) => return Err(HeaderError::Unsupported("UDP")),
        // The spec: accept, and use the connection's own endpoints.
        (_, _, Addresses::Unspecified) => None,
        (_, _, Addresses::IPv4(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
        (_, _, Addresses::IPv6(a)) => Some(SocketAddr::from((a.source_address, a.source_port))),
        (_, _, Addresses::Unix(_)) => return Err(HeaderError::Unsupported("UNIX socket")),
    };
    Ok(Parsed::Header {
        len: header.len(),
        version: Version::V2,
        source,
    })
}

/// The spec's longest v1 line (`PROXY TCP6` with two full IPv6 addresses and ports).
const MAX_V1_HEADER: usize = 107;

fn parse_v1(buf: &[u8]) -> Result<Parsed, HeaderError> {
    const PREFIX: &[u8] = b"PROXY ";
    if !(buf.starts_with(PREFIX) || PREFIX.starts_with(buf)) {
        return Err(HeaderError::NoSignature(start_of(buf)));
    }
    if let Some(cr) = buf.iter().position(|&b| b == b'\r') {
        if buf.get(cr + 1).is_some_and(|&b| b != b'\n') {
            return Err(HeaderError::V1("CR inside the line".into()));
        }
    }
    // Only a whole line goes to `ppp`, whose reading of a partial one is not dependable
    // (a line cut after a space looks like an empty, invalid port).
    let line_end = match buf.iter().position(|&b| b == b'\n') {
        Some(lf) => lf + 1,
        None if buf.len() >= MAX_V1_HEADER => {
            return Err(HeaderError::V1(format!(
                "no end of line within {MAX_V1_HEADER} bytes"
            )))
        }
        None => return Ok(Parsed::Incomplete),
    };
    if line_end > MAX_V1_HEADER {
        return Err(HeaderError::V1(format!(
            "line of {line_end} bytes is over the {MAX_V1_HEADER}-byte limit"
        )));
    }
    let line = &buf[..line_end];
    let header = ppp::v1::Header::try_from(line).map_err(|e| HeaderError::V1(e.to_string()))?;
    if header.header.len() != line_end {
        // `ppp` stops at the first CR: a CR inside the line, or LF without CR.
        return Err(HeaderError::V1("the line must end in CRLF".into()));
    }
    let source = match header.addresses {
        ppp::v1::Addresses::Unknown => None,
        ppp::v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
        ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
    };
    Ok(Parsed::Header {
        len: line_end,
        version: Version::V1,
        source,
    })
}

/// The first bytes, printable, for a log line that helps tell "the proxy is not sending
/// the header" (an HTTP request line, a TLS record) from line noise.
fn start_of(buf: &[u8]) -> String {
    String::from_utf8_lossy(&buf[..buf.len().min(24)]).into_owned()
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
