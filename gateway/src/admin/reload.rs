//! `POST /api/reload`: what SIGHUP does, asked for over HTTP, with its outcome in the
//! answer: 200 and what was applied, or 422 with the refusal and the key at fault (the
//! configuration in force is then unchanged).

use http::Response;

use super::{reply, AdminApi};
use crate::response::Body;

pub async fn run(api: &AdminApi) -> Response<Body> {
    tracing::info!("admin API: reloading the configuration");
    let state = &api.state;
    let result = crate::reload::reload(state, state.config_path.as_deref()).await;
    let (status, body) = crate::reload::answer(&result);
    reply::json(status, &body)
}
