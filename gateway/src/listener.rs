//! The public listener: accept, optional TLS, then HTTP/1.1 with upgrades, all under the
//! handshake timeout and the connection cap.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use crate::limits::{record_trip, trip};
use crate::state::AppState;

/// Accept until `state.shutdown` fires; the listening socket closes when this returns.
pub async fn accept_loop(listener: TcpListener, state: Arc<AppState>, tls: Option<TlsAcceptor>) {
    loop {
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let state = state.clone();
                let tls = tls.clone();
                tokio::spawn(async move { serve_connection(state, tcp, peer, tls).await });
            }
            Err(e) => {
                // Out of file descriptors (or a transient error): back off instead of
                // spinning, and let closing connections free slots.
                record_trip(trip::ACCEPT_ERRORS);
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_connection(
    state: Arc<AppState>,
    tcp: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
) {
    let slot = state.connections.try_open();
    let _ = tcp.set_nodelay(true);
    match tls {
        None => serve_http(state, tcp, peer, slot).await,
        Some(acceptor) => {
            match tokio::time::timeout(state.limits.handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => serve_http(state, stream, peer, slot).await,
                Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                Err(_) => {
                    record_trip(trip::HANDSHAKE_TIMEOUT);
                    tracing::debug!(%peer, "TLS handshake timed out");
                }
            }
        }
    }
}

async fn serve_http<IO>(
    state: Arc<AppState>,
    io: IO,
    peer: SocketAddr,
    slot: Option<crate::limits::OpenGuard>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let over_capacity = slot.is_none();
    let slot: ConnectionSlot = Arc::new(Mutex::new(slot));
    let handler_state = state.clone();
    let handler_slot = slot.clone();
    let service = service_fn(move |req| {
        crate::http::handle(handler_state.clone(), req, peer, handler_slot.clone())
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(state.limits.handshake_timeout)
        .max_buf_size(state.limits.max_header_bytes.max(8192))
        .keep_alive(!over_capacity)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    if let Err(e) = conn.await {
        if e.is_timeout() {
            record_trip(trip::HANDSHAKE_TIMEOUT);
        } else if e.is_parse_too_large() {
            record_trip(trip::HEADER_SIZE);
        }
        tracing::debug!(%peer, "http connection ended: {e}");
    }
}

/// The connection's place under `max_connections`; an upgrade moves it into the session,
/// so it is held exactly as long as the socket is open. `None` inside: over capacity.
pub type ConnectionSlot = Arc<Mutex<Option<crate::limits::OpenGuard>>>;
