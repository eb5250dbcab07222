//! The public listener: accept, the PROXY header from trusted load balancers, optional
//! TLS, then HTTP/1.1 with upgrades, all under the handshake timeout and the connection cap.
//! From the PROXY header on, `peer` is the client it names.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};

use crate::limits::{record_trip, trip, ConnectionSlot, OpenGuard};
use crate::proxy_protocol::Prefixed;
use crate::state::AppState;

/// Accept until `state.shutdown` fires; the listening socket closes when this returns.
pub async fn accept_loop(listener: TcpListener, state: Arc<AppState>) {
    loop {
        let accepted = tokio::select! {
            _ = state.shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((tcp, peer)) => {
                let state = state.clone();
                tokio::spawn(async move { serve_connection(state, tcp, peer).await });
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

/// What one connection takes from the settings in force when it was accepted (a reload
/// changes them for later connections only). Not the whole snapshot: a long-lived
/// connection must not keep replaced services alive.
#[derive(Clone, Copy)]
struct ConnSettings {
    handshake_timeout: Duration,
    max_header_bytes: usize,
}

async fn serve_connection(state: Arc<AppState>, tcp: TcpStream, socket_peer: SocketAddr) {
    let (tls, settings, send_buffer, proxied) = {
        let live = state.live();
        let settings = ConnSettings {
            handshake_timeout: live.limits.handshake_timeout,
            max_header_bytes: live.limits.max_header_bytes,
        };
        let proxied = live.proxy_protocol.contains(socket_peer.ip());
        let send_buffer = live.limits.socket_send_buffer;
        (live.tls.clone(), settings, send_buffer, proxied)
    };
    let slot = state.connections.try_open();
    if let Err(e) = configure_accepted(&tcp, send_buffer) {
        tracing::debug!(peer = %socket_peer, "setting SO_SNDBUF failed: {e}");
    }
    // The PROXY header and the TLS handshake share one deadline: a slow header leaves
    // less time for TLS, not a second full timeout.
    let deadline = tokio::time::Instant::now() + settings.handshake_timeout;
    let (io, peer) = if proxied {
        match crate::proxy_protocol::accept(tcp, socket_peer, deadline).await {
            Some(accepted) => accepted,
            None => return,
        }
    } else {
        (Prefixed::new(tcp, Bytes::new()), socket_peer)
    };
    match tls {
        None => serve_http(state, io, peer, slot, settings).await,
        Some(acceptor) => match tokio::time::timeout_at(deadline, acceptor.accept(io)).await {
            Ok(Ok(stream)) => serve_http(state, stream, peer, slot, settings).await,
            Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
            Err(_) => {
                record_trip(trip::HANDSHAKE_TIMEOUT);
                tracing::debug!(%peer, "TLS handshake timed out");
            }
        },
    }
}

/// Socket options for an accepted client connection: no Nagle delay, and `SO_SNDBUF` at
/// `send_buffer` bytes (0: leave the kernel's autotuning). The caller logs a failure and
/// serves the connection all the same.
fn configure_accepted(tcp: &TcpStream, send_buffer: usize) -> std::io::Result<()> {
    let _ = tcp.set_nodelay(true);
    if send_buffer > 0 {
        // The kernel takes an int, and caps it at net.core.wmem_max anyway.
        SockRef::from(tcp).set_send_buffer_size(send_buffer.min(i32::MAX as usize))?;
    }
    Ok(())
}

async fn serve_http<IO>(
    state: Arc<AppState>,
    io: IO,
    peer: SocketAddr,
    slot: Option<OpenGuard>,
    settings: ConnSettings,
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
        .header_read_timeout(settings.handshake_timeout)
        .max_buf_size(settings.max_header_bytes.max(8192))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An accepted socket (and its client end) on loopback, configured as the accept loop does.
    async fn accepted(send_buffer: usize) -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (tcp, _) = listener.accept().await.unwrap();
        configure_accepted(&tcp, send_buffer).unwrap();
        (tcp, client)
    }

    #[tokio::test]
    async fn accepted_sockets_get_the_configured_send_buffer() {
        let (tcp, _client) = accepted(64 * 1024).await;
        let got = SockRef::from(&tcp).send_buffer_size().unwrap();
        // Linux doubles the requested size (the rest is its bookkeeping); others keep it.
        if cfg!(target_os = "linux") {
            assert_eq!(got, 128 * 1024);
        } else {
            assert!(got >= 64 * 1024, "{got}");
        }
        assert!(tcp.nodelay().unwrap());
    }

    #[tokio::test]
    async fn zero_leaves_the_kernel_default() {
        let (untouched, _c1) = accepted(0).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _c2 = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (fresh, _) = listener.accept().await.unwrap();
        assert_eq!(
            SockRef::from(&untouched).send_buffer_size().unwrap(),
            SockRef::from(&fresh).send_buffer_size().unwrap()
        );
        assert!(untouched.nodelay().unwrap());
    }
}
