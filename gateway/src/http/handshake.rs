//! The WebSocket handshake: validate the upgrade, pick the service and subprotocol, check
//! origin, credentials, roles and limits, answer 101 and start the session, or refuse with a
//! status and a reason. Every outcome is counted.

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

use crate::forwarded::client_addr;
use crate::limits::{ConnectionSlot, SessionSlots};
use crate::response::{text, Body};
use crate::services::{offered_subprotocols, NoService, Service};
use crate::state::AppState;
use crate::transport::run_session;

/// `result` label values of `gateway_handshakes_total`.
mod outcome {
    pub const ACCEPTED: &str = "accepted";
    pub const NO_SUBPROTOCOL: &str = "no_subprotocol";
    pub const BAD_ORIGIN: &str = "bad_origin";
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const FORBIDDEN: &str = "forbidden";
    pub const LIMIT: &str = "limit";
    pub const NOT_FOUND: &str = "not_found";
    pub const BAD_REQUEST: &str = "bad_request";
    pub const UNAVAILABLE: &str = "unavailable";
}

fn count(service: &str, result: &'static str) {
    metrics::counter!("gateway_handshakes_total", "service" => service.to_string(), "result" => result)
        .increment(1);
}

fn refuse(
    service: &str,
    result: &'static str,
    status: StatusCode,
    reason: String,
) -> Response<Body> {
    count(service, result);
    tracing::debug!(service, result, %status, "handshake refused: {reason}");
    text(status, format!("{reason}\n"))
}

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

pub async fn upgrade(
    state: Arc<AppState>,
    mut req: Request<Incoming>,
    peer: SocketAddr,
    slot: ConnectionSlot,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let accept = match validate(&req) {
        Ok(a) => a,
        Err(why) => {
            let status = if state.services.has_path(&path) && !is_upgrade(&req) {
                StatusCode::UPGRADE_REQUIRED
            } else {
                StatusCode::BAD_REQUEST
            };
            let mut resp = refuse("-", outcome::BAD_REQUEST, status, why);
            resp.headers_mut().insert(
                header::SEC_WEBSOCKET_VERSION,
                HeaderValue::from_static("13"),
            );
            return resp;
        }
    };
    let offered = offered_subprotocols(req.headers());
    let (service, subprotocol) = match state.services.select(&path, &offered) {
        Ok(found) => found,
        Err(NoService::UnknownPath) => {
            return refuse(
                "-",
                outcome::NOT_FOUND,
                StatusCode::NOT_FOUND,
                format!("no WebSocket service at {path}"),
            )
        }
        Err(NoService::NoSubprotocol { supported }) => {
            return refuse(
                "-",
                outcome::NO_SUBPROTOCOL,
                StatusCode::BAD_REQUEST,
                format!(
                    "no supported subprotocol offered (offered: [{}]; supported here: [{}])",
                    offered.join(", "),
                    supported.join(", ")
                ),
            )
        }
    };
    if state.is_draining() {
        return refuse(
            &service.name,
            outcome::UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            "server is shutting down".into(),
        );
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    if !service.origins.allows(origin.as_deref(), host) {
        return refuse(
            &service.name,
            outcome::BAD_ORIGIN,
            StatusCode::FORBIDDEN,
            match &origin {
                Some(o) => format!("origin {o} is not allowed"),
                None => "a missing Origin header is not allowed".into(),
            },
        );
    }
    if !service.bridge.is_ready() {
        return refuse(
            &service.name,
            outcome::UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "service {} is not ready (its backend is unavailable)",
                service.name
            ),
        );
    }
    let client = client_addr(peer, req.headers(), &state.trusted_proxies);
    let Some(ip_slot) = state.connections.try_ip(client.ip()) else {
        return refuse(
            &service.name,
            outcome::LIMIT,
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many connections from {}", client.ip()),
        );
    };
    let principal = match state
        .auth
        .authenticate(req.headers(), req.uri().query())
        .await
    {
        Ok(p) => p,
        Err(failure) => {
            return unauthorized(&service.name, failure.reason);
        }
    };
    match &principal {
        None if service.require_auth => {
            return unauthorized(&service.name, "authentication required".into());
        }
        Some(p) => {
            if let Some(missing) = service.require_roles.iter().find(|r| !p.has_role(r)) {
                return refuse(
                    &service.name,
                    outcome::FORBIDDEN,
                    StatusCode::FORBIDDEN,
                    format!("user {} lacks the role {missing}", p.name),
                );
            }
        }
        None => {}
    }

    count(&service.name, outcome::ACCEPTED);
    let info = Arc::new(SessionInfo {
        id: state.next_session_id(),
        service: service.name.clone(),
        peer: client,
        origin,
        principal,
        subprotocol: subprotocol.map(str::to_string),
        transport: "websocket",
    });
    let on_upgrade = hyper::upgrade::on(&mut req);
    let slots = SessionSlots::take(ip_slot, &slot);
    let task_state = state.clone();
    state.sessions.spawn(async move {
        let _slots = slots;
        match on_upgrade.await {
            Ok(upgraded) => {
                // Ready on first poll (no I/O happens); not awaiting keeps the stream out
                // of this task's saved state.
                let Some(ws) = WebSocketStream::from_raw_socket(
                    TokioIo::new(upgraded),
                    Role::Server,
                    Some(task_state.ws_config),
                )
                .now_or_never() else {
                    tracing::error!("WebSocket set-up unexpectedly pending");
                    return;
                };
                serve(task_state, service, info, ws).await;
            }
            Err(e) => tracing::debug!("upgrade failed: {e}"),
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
    if let Some(token) = subprotocol {
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(token),
        );
    }
    resp
}

fn unauthorized(service: &str, reason: String) -> Response<Body> {
    let mut resp = refuse(
        service,
        outcome::UNAUTHENTICATED,
        StatusCode::UNAUTHORIZED,
        reason,
    );
    resp.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"gateway\", Bearer"),
    );
    resp
}

fn serve<S>(
    state: Arc<AppState>,
    service: Arc<Service>,
    info: Arc<SessionInfo>,
    ws: WebSocketStream<S>,
) -> impl std::future::Future<Output = ()> + Send
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let subprotocol = info.subprotocol.clone().unwrap_or_default();
    let labels = [
        ("service", service.name.to_string()),
        ("subprotocol", subprotocol),
    ];
    let active = metrics::gauge!("gateway_sessions_active", &labels);
    active.increment(1.0);
    let started = std::time::Instant::now();
    tracing::debug!(id = info.id, service = %service.name, peer = %info.peer, "session start");
    let session = run_session(
        ws,
        service.bridge.clone(),
        info,
        state.transport.clone(),
        state.shutdown.clone(),
        service.counters.clone(),
    );
    let duration = metrics::histogram!("gateway_session_duration_seconds", "service" => service.name.to_string());
    async move {
        session.await;
        active.decrement(1.0);
        duration.record(started.elapsed().as_secs_f64());
    }
}
