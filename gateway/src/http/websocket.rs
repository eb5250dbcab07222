//! The WebSocket transport's front door: check the RFC 6455 opening handshake, read the
//! offered subprotocols, ask admission, then answer 101 and run the session on the upgraded
//! connection.

use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine;
use bridge_api::SessionInfo;
use futures::FutureExt;
use http::{header, HeaderMap, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::WebSocketStream;

use super::refusal::refusal_response;
use crate::admission::{admit, outcome, refuse, AdmissionRequest, Admitted};
use crate::deflate::{InflateLimits, InflateStream};
use crate::limits::ConnectionSlot;
use crate::response::Body;
use crate::services::Service;
use crate::state::{AppState, Live};
use crate::transport::{run_session, TransportSettings};

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

pub fn is_upgrade(req: &Request<Incoming>) -> bool {
    header_has_token(req.headers(), header::UPGRADE, "websocket")
}

/// The accept key, or why the request is not a valid RFC 6455 opening handshake.
fn validate(req: &Request<Incoming>) -> Result<String, String> {
    let h = req.headers();
    if req.method() != http::Method::GET {
        return Err("WebSocket handshake must be a GET".into());
    }
    if req.version() != http::Version::HTTP_11 {
        return Err("WebSocket handshake needs HTTP/1.1".into());
    }
    if !is_upgrade(req) || !header_has_token(h, header::CONNECTION, "upgrade") {
        return Err("this path is a WebSocket endpoint: send Upgrade: websocket".into());
    }
    match h.get(header::SEC_WEBSOCKET_VERSION).map(|v| v.as_bytes()) {
        Some(b"13") => {}
        Some(_) => return Err("unsupported Sec-WebSocket-Version (only 13)".into()),
        None => return Err("missing Sec-WebSocket-Version".into()),
    }
    let key = h
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("missing Sec-WebSocket-Key")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key.as_bytes())
        .map_err(|_| "Sec-WebSocket-Key is not base64")?;
    if decoded.len() != 16 {
        return Err("Sec-WebSocket-Key must encode 16 bytes".into());
    }
    Ok(derive_accept_key(key.as_bytes()))
}

/// Tokens from every `Sec-WebSocket-Protocol` header, in the client's order.
fn offered_subprotocols(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

/// Answers a WebSocket opening handshake: 101 and the session, or a refusal.
pub async fn start(
    state: Arc<AppState>,
    live: Arc<Live>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    slot: ConnectionSlot,
) -> Response<Body> {
    let path = req.uri().path();
    let accept = match validate(&req) {
        Ok(a) => a,
        Err(why) => {
            let status = if live.services.has_path(path) && !is_upgrade(&req) {
                StatusCode::UPGRADE_REQUIRED
            } else {
                StatusCode::BAD_REQUEST
            };
            let mut resp =
                refusal_response(&refuse("-", "websocket", outcome::BAD_REQUEST, status, why));
            resp.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return resp;
        }
    };
    let admitted = {
        let offered = offered_subprotocols(req.headers());
        let request = AdmissionRequest {
            path,
            headers: req.headers(),
            query: req.uri().query(),
            peer,
            offered: &offered,
            transport: "websocket",
        };
        admit(&state, &live, request, &slot).await
    };
    let Admitted {
        service,
        info,
        subprotocol,
        slots,
    } = match admitted {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal_response(&refusal),
    };

    let deflate = service
        .compression
        .as_ref()
        .and_then(|c| crate::deflate::negotiate(req.headers(), c));
    let inflate_limits = InflateLimits {
        max_frame: live.limits.max_frame_size,
        max_message: live.limits.max_message_size,
    };
    if let Some(a) = &deflate {
        let mode = if a.server_no_context_takeover {
            "shared"
        } else {
            "dedicated"
        };
        metrics::counter!(
            "gateway_ws_compressed_sessions_total",
            "service" => service.name.to_string(),
            "mode" => mode
        )
        .increment(1);
    }
    let response_extension = deflate.as_ref().map(|a| a.response.clone());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_state = state.clone();
    // The session keeps these, not the snapshot, which would keep replaced services alive.
    let ws_config = live.ws_config;
    let mut transport = live.transport.clone();
    drop(live);
    state.sessions.spawn(async move {
        let _slots = slots;
        match on_upgrade.await {
            Ok(upgraded) => {
                // Ready on first poll (no I/O happens); not awaiting keeps the stream out
                // of this task's saved state.
                let io =
                    InflateStream::new(TokioIo::new(upgraded), deflate.as_ref(), inflate_limits);
                let Some(ws) = WebSocketStream::from_raw_socket(io, Role::Server, Some(ws_config))
                    .now_or_never()
                else {
                    tracing::error!(session = info.id, "WebSocket set-up unexpectedly pending");
                    return;
                };
                transport.deflate = deflate;
                serve(task_state, service, info, transport, ws).await;
            }
            Err(e) => tracing::debug!(session = info.id, peer = %info.peer, "upgrade failed: {e}"),
        }
    });

    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(ext) = response_extension.and_then(|e| HeaderValue::from_str(&e).ok()) {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, ext);
    }
    if let Some(token) = subprotocol {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(token),
        );
    }
    resp
}

fn serve<S>(
    state: Arc<AppState>,
    service: Arc<Service>,
    info: Arc<SessionInfo>,
    transport: TransportSettings,
    ws: WebSocketStream<S>,
) -> impl std::future::Future<Output = ()> + Send
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let subprotocol = info.subprotocol.clone().unwrap_or_default();
    let labels = [
        ("service", service.name.to_string()),
        ("subprotocol", subprotocol),
        ("transport", "websocket".to_string()),
    ];
    let active = metrics::gauge!("gateway_sessions_active", &labels);
    active.increment(1.0);
    let started = std::time::Instant::now();
    let session = run_session(
        ws,
        service.bridge.clone(),
        info,
        transport,
        state.shutdown.clone(),
        service.counters.clone(),
        &state.live_sessions,
    );
    let duration = metrics::histogram!(
        "gateway_session_duration_seconds",
        "service" => service.name.to_string(),
        "transport" => "websocket"
    );
    async move {
        // The session's bridge instance lives as long as the session.
        let _service = service;
        session.await;
        active.decrement(1.0);
        duration.record(started.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_tokens_from_several_headers() {
        let mut h = HeaderMap::new();
        h.append("sec-websocket-protocol", "a, b".parse().unwrap());
        h.append("sec-websocket-protocol", "c".parse().unwrap());
        assert_eq!(offered_subprotocols(&h), vec!["a", "b", "c"]);
    }
}
