//! HTTP on the public port: health, readiness, static pages and WebSocket upgrades.

mod refusal;
mod websocket;

pub(crate) use refusal::refusal_response;

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::limits::ConnectionSlot;
use crate::response::{text, Body};
use crate::state::AppState;

/// Handle one request on the public listener. A connection that arrived past
/// `max_connections` (an empty slot) only ever gets a 503.
pub async fn handle(
    state: Arc<AppState>,
    req: Request<Incoming>,
    peer: SocketAddr,
    slot: ConnectionSlot,
) -> Result<Response<Body>, std::convert::Infallible> {
    let over_capacity = slot.lock().unwrap_or_else(|p| p.into_inner()).is_none();
    if over_capacity {
        let mut resp = text(StatusCode::SERVICE_UNAVAILABLE, "too many connections\n");
        resp.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return Ok(resp);
    }
    // One snapshot of the settings for the whole request, however a reload interleaves.
    let live = state.live();
    if crate::fallback::is_route(&state, &live, req.uri().path()) {
        return Ok(crate::fallback::handle(state, live, req, peer).await);
    }
    if websocket::is_upgrade(&req) || live.services.has_path(req.uri().path()) {
        return Ok(websocket::start(state, live, req, peer, slot).await);
    }
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => text(StatusCode::OK, "ok\n"),
        (&Method::GET, "/readyz") => readyz(&state),
        (&Method::GET | &Method::HEAD, path) => {
            live.static_files
                .serve(path, req.method() == Method::HEAD)
                .await
        }
        _ => text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n"),
    };
    Ok(resp)
}

/// `/readyz`, on the public port and the admin port alike: 200, or 503 with the reasons.
pub fn readyz(state: &AppState) -> Response<Body> {
    match state.readiness() {
        Ok(()) => text(StatusCode::OK, "ready\n"),
        Err(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", why.join(", ")),
        ),
    }
}
