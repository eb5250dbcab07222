//! `POST /api/drain`: what SIGTERM does, asked for over HTTP. `/readyz` is unready before
//! the answer goes out; the shutdown itself (stop accepting, ask every session to end,
//! wait up to `limits.drain_timeout`, exit 0) runs in the main task after it.

use http::{Response, StatusCode};
use serde::Serialize;

use super::{reply, AdminApi};
use crate::response::Body;

#[derive(Serialize)]
struct Draining {
    draining: bool,
    /// False when a drain was already under way.
    started: bool,
    sessions: usize,
    drain_timeout_seconds: f64,
}

pub fn start(api: &AdminApi) -> Response<Body> {
    let started = api.state.request_drain();
    let sessions = api.state.live_sessions.len();
    if started {
        tracing::info!(sessions, "admin API: drain requested");
    }
    reply::json(
        StatusCode::ACCEPTED,
        &Draining {
            draining: true,
            started,
            sessions,
            drain_timeout_seconds: api.state.live().limits.drain_timeout.as_secs_f64(),
        },
    )
}
