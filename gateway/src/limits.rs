//! Connection counting: a global cap on open client sockets and a per-IP cap on sessions.
//! Both hand out guards, so a count can never leak on an early return.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Names used in `gateway_limit_trips_total{limit}`.
pub mod trip {
    pub const MAX_CONNECTIONS: &str = "max_connections";
    pub const PER_IP: &str = "per_ip";
    pub const HANDSHAKE_RATE: &str = "handshake_rate";
    pub const HANDSHAKE_TIMEOUT: &str = "handshake_timeout";
    pub const MESSAGE_SIZE: &str = "message_size";
    pub const IDLE_TIMEOUT: &str = "idle_timeout";
    pub const HEADER_SIZE: &str = "header_size";
    pub const ACCEPT_ERRORS: &str = "accept_errors";
    pub const OUTGOING_QUEUE: &str = "outgoing_queue";
    pub const HTTP_FALLBACK_SESSIONS: &str = "http_fallback_sessions";
}

pub fn record_trip(limit: &'static str) {
    record_trips(limit, 1);
}

pub fn record_trips(limit: &'static str, n: u64) {
    metrics::counter!("gateway_limit_trips_total", "limit" => limit).increment(n);
}

/// The caps are atomics so a reload changes them without touching the live counts.
pub struct ConnectionLimits {
    open: AtomicUsize,
    max_open: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    max_per_ip: AtomicUsize,
}

pub struct OpenGuard(Arc<ConnectionLimits>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("gateway_connections_open").decrement(1.0);
    }
}

pub struct IpGuard(Arc<ConnectionLimits>, IpAddr);

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut map = self.0.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.1) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.1);
            }
        }
    }
}

impl ConnectionLimits {
    pub fn new(max_open: usize, max_per_ip: usize) -> Arc<Self> {
        Arc::new(ConnectionLimits {
            open: AtomicUsize::new(0),
            max_open: AtomicUsize::new(max_open),
            per_ip: Mutex::new(HashMap::new()),
            max_per_ip: AtomicUsize::new(max_per_ip),
        })
    }

    /// New caps for connections and sessions from now on; those already open stay open.
    pub fn set_caps(&self, max_open: usize, max_per_ip: usize) {
        self.max_open.store(max_open, Ordering::Relaxed);
        self.max_per_ip.store(max_per_ip, Ordering::Relaxed);
    }

    /// A slot for one more open socket, or `None` at the cap.
    pub fn try_open(self: &Arc<Self>) -> Option<OpenGuard> {
        let prev = self.open.fetch_add(1, Ordering::Relaxed);
        if prev >= self.max_open.load(Ordering::Relaxed) {
            self.open.fetch_sub(1, Ordering::Relaxed);
            record_trip(trip::MAX_CONNECTIONS);
            return None;
        }
        metrics::gauge!("gateway_connections_open").increment(1.0);
        Some(OpenGuard(self.clone()))
    }

    /// A session slot for `ip`, or `None` at the per-IP cap.
    pub fn try_ip(self: &Arc<Self>, ip: IpAddr) -> Option<IpGuard> {
        let mut map = self.per_ip.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.max_per_ip.load(Ordering::Relaxed) {
            record_trip(trip::PER_IP);
            return None;
        }
        *n += 1;
        Some(IpGuard(self.clone(), ip))
    }
}

/// The connection's place under `max_connections`; an upgrade moves it into the session,
/// so it is held exactly as long as the socket is open. `None` inside: over capacity.
pub type ConnectionSlot = Arc<Mutex<Option<OpenGuard>>>;

/// What an admitted session holds for its whole life: its place under the per-IP cap and
/// the connection's open slot, released together when the session ends.
pub struct SessionSlots {
    _ip: IpGuard,
    _open: Option<OpenGuard>,
}

impl SessionSlots {
    /// Takes the open slot out of `conn`, which from now on belongs to the session.
    pub fn take(ip: IpGuard, conn: &ConnectionSlot) -> SessionSlots {
        let open = conn.lock().unwrap_or_else(|p| p.into_inner()).take();
        SessionSlots {
            _ip: ip,
            _open: open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_and_releases() {
        let l = ConnectionLimits::new(2, 1);
        let a = l.try_open().unwrap();
        let _b = l.try_open().unwrap();
        assert!(l.try_open().is_none());
        drop(a);
        assert!(l.try_open().is_some());

        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let g = l.try_ip(ip).unwrap();
        assert!(l.try_ip(ip).is_none());
        assert!(l.try_ip("127.0.0.3".parse().unwrap()).is_some());
        drop(g);
        assert!(l.try_ip(ip).is_some());
        assert!(l.per_ip.lock().unwrap().is_empty());
    }

    #[test]
    fn lowered_caps_keep_what_is_open_and_refuse_more() {
        let l = ConnectionLimits::new(3, 2);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let held = [l.try_ip(ip).unwrap(), l.try_ip(ip).unwrap()];
        let _open = [l.try_open().unwrap(), l.try_open().unwrap()];
        l.set_caps(1, 1);
        assert!(l.try_ip(ip).is_none());
        assert!(l.try_open().is_none());
        drop(held);
        let _again = l.try_ip(ip).unwrap();
        assert!(l.try_ip(ip).is_none());
        l.set_caps(3, 2);
        assert!(l.try_ip(ip).is_some());
        assert!(l.try_open().is_some());
    }
}
