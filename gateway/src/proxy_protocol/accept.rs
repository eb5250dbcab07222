//! The listener's step for a connection from a trusted load balancer: the header within
//! the deadline, or the connection is closed, counted and logged.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::AsyncRead;
use tokio::time::Instant;

use super::parse::Version;
use super::prefixed::Prefixed;
use super::read::{read_header, ReadError};
use crate::limits::{record_trip, trip};

/// `result` label values of `gateway_proxy_headers_total`.
pub mod result {
    pub const V1: &str = "v1";
    pub const V2: &str = "v2";
    /// A header that says "use the connection's address" (v2 LOCAL, v1 UNKNOWN).
    pub const LOCAL: &str = "local";
    pub const INVALID: &str = "invalid";
    /// Closed before sending a byte (a TCP health check).
    pub const CLOSED: &str = "closed";
    pub const TIMEOUT: &str = "timeout";
}

fn count(result: &'static str) {
    metrics::counter!("gateway_proxy_headers_total", "result" => result).increment(1);
}

/// A misconfigured load balancer (one not sending the header) shows at warn the first
/// time; every connection after that at debug, so a flood does not flood the log.
static WARNED: AtomicBool = AtomicBool::new(false);

/// Read the PROXY header from `io`, a connection from `socket_peer`, by `deadline`. Returns
/// the connection with any bytes read past the header put back, and the client's address;
/// `None` when the connection is to be closed (already counted and logged).
pub async fn accept<IO: AsyncRead + Unpin>(
    mut io: IO,
    socket_peer: SocketAddr,
    deadline: Instant,
) -> Option<(Prefixed<IO>, SocketAddr)> {
    let why = match tokio::time::timeout_at(deadline, read_header(&mut io)).await {
        Ok(Ok(header)) => {
            count(match (header.source, header.version) {
                (None, _) => result::LOCAL,
                (Some(_), Version::V1) => result::V1,
                (Some(_), Version::V2) => result::V2,
            });
            let client = header.source.unwrap_or(socket_peer);
            return Some((Prefixed::new(io, header.rest), client));
        }
        Ok(Err(ReadError::Truncated(0))) => {
            count(result::CLOSED);
            tracing::debug!(peer = %socket_peer, "closed before sending its PROXY header");
            return None;
        }
        Err(_) => {
            count(result::TIMEOUT);
            record_trip(trip::HANDSHAKE_TIMEOUT);
            tracing::debug!(peer = %socket_peer, "no PROXY header within the handshake timeout");
            return None;
        }
        Ok(Err(e)) => e,
    };
    count(result::INVALID);
    if !WARNED.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            peer = %socket_peer,
            "closing a connection from a server.proxy_protocol peer without a valid PROXY \
             header: {why} (is the load balancer sending the PROXY protocol? later ones are \
             logged at debug)"
        );
    } else {
        tracing::debug!(peer = %socket_peer, "closing: {why}");
    }
    None
}
