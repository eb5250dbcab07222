//! `GET /api/info`: what is running and how it is doing.

use http::{Response, StatusCode};
use serde::Serialize;

use super::{reply, AdminApi};
use crate::response::Body;

#[derive(Serialize)]
struct Info {
    /// `server.node`: which of the gateways sharing a broker this is.
    node: String,
    version: &'static str,
    started_at: String,
    uptime_seconds: f64,
    sessions: usize,
    draining: bool,
    ready: bool,
    /// Why `/readyz` answers 503, if it does.
    problems: Vec<String>,
}

pub fn show(api: &AdminApi) -> Response<Body> {
    let problems = api.state.readiness().err().unwrap_or_default();
    reply::json(
        StatusCode::OK,
        &Info {
            node: api.state.live().config.node().to_string(),
            version: env!("CARGO_PKG_VERSION"),
            started_at: humantime::format_rfc3339_millis(api.started_at).to_string(),
            uptime_seconds: (api.started.elapsed().as_millis() as f64) / 1000.0,
            sessions: api.state.live_sessions.len(),
            draining: api.state.is_draining(),
            ready: problems.is_empty(),
            problems,
        },
    )
}
