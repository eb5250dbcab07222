//! `/api/sessions...` and `/api/principals/{name}/close`: the live sessions of both
//! transports, one by one or a page at a time, and closing them with a code and reason
//! the client sees.

use std::time::SystemTime;

use bridge_api::{AuthMethod, Principal, StopReason};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::filter::{encode_cursor, ListQuery};
use super::reply::ApiError;
use super::{body, query, reply, AdminApi};
use crate::response::Body;
use crate::sessions::LiveSession;

// === views ===

#[derive(Serialize)]
struct SessionView {
    id: u64,
    /// The gateway serving it (`server.node`), so lists from several gateways can be merged.
    node: String,
    service: String,
    transport: &'static str,
    subprotocol: Option<String>,
    peer: String,
    origin: Option<String>,
    principal: Option<PrincipalView>,
    started_at: String,
    age_seconds: f64,
    messages_in: u64,
    messages_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Messages in the session's outgoing queue, not yet written to the client.
    queued: usize,
    /// The gateway asked the session to end and it has not finished yet.
    closing: bool,
}

#[derive(Serialize)]
struct PrincipalView {
    name: String,
    roles: Vec<String>,
    auth_method: &'static str,
    expires_at: Option<String>,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

fn auth_method(m: AuthMethod) -> &'static str {
    match m {
        AuthMethod::Basic => "basic",
        AuthMethod::Bearer => "bearer",
        AuthMethod::QueryToken => "query",
        AuthMethod::Cookie => "cookie",
        AuthMethod::Bridge => "bridge",
    }
}

fn principal_view(p: Principal) -> PrincipalView {
    PrincipalView {
        name: p.name,
        roles: p.roles,
        auth_method: auth_method(p.method),
        expires_at: p.expires_at.map(rfc3339),
    }
}

fn view(s: &LiveSession, node: &str) -> SessionView {
    use std::sync::atomic::Ordering::Relaxed;
    let info = &s.info;
    SessionView {
        id: info.id,
        node: node.to_string(),
        service: info.service.to_string(),
        transport: info.transport,
        subprotocol: info.subprotocol.clone(),
        peer: info.peer.to_string(),
        origin: info.origin.clone(),
        principal: s.control.principal().map(principal_view),
        started_at: rfc3339(s.started_at),
        age_seconds: (s.started.elapsed().as_millis() as f64) / 1000.0,
        messages_in: s.traffic.messages_in.load(Relaxed),
        messages_out: s.traffic.messages_out.load(Relaxed),
        bytes_in: s.traffic.bytes_in.load(Relaxed),
        bytes_out: s.traffic.bytes_out.load(Relaxed),
        queued: s.queue.get(),
        closing: s.control.stop_reason().is_some(),
    }
}

#[derive(Serialize)]
struct Page {
    /// Sessions matching the filters, on every page.
    total: usize,
    sessions: Vec<SessionView>,
    /// Pass as `cursor` for the next page; `null` on the last one.
    next_cursor: Option<String>,
}

// === handlers ===

/// `GET /api/sessions`
pub fn list(api: &AdminApi, raw_query: Option<&str>) -> Response<Body> {
    let q = match query::pairs(raw_query).and_then(ListQuery::parse) {
        Ok(q) => q,
        Err(e) => return reply::bad_request(&e),
    };
    let mut matching: Vec<_> = api
        .state
        .live_sessions
        .all()
        .into_iter()
        .filter(|s| q.filter.matches(s))
        .collect();
    matching.sort_unstable_by_key(|s| s.info.id);
    let total = matching.len();
    let after = q
        .start
        .after
        .map_or(0, |id| matching.partition_point(|s| s.info.id <= id));
    let from = after.saturating_add(q.start.offset).min(total);
    let to = from.saturating_add(q.limit).min(total);
    let page = &matching[from..to];
    let next_cursor = match page.last() {
        Some(last) if to < total => Some(encode_cursor(last.info.id)),
        _ => None,
    };
    reply::json(
        StatusCode::OK,
        &Page {
            total,
            sessions: {
                let live = api.state.live();
                page.iter().map(|s| view(s, live.config.node())).collect()
            },
            next_cursor,
        },
    )
}

/// `GET /api/sessions/{id}`
pub fn show(api: &AdminApi, raw_id: &str) -> Response<Body> {
    match find(api, raw_id) {
        Ok(s) => reply::json(StatusCode::OK, &view(&s, api.state.live().config.node())),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/sessions/{id}/close`
pub async fn close(api: &AdminApi, raw_id: &str, req: Request<Incoming>) -> Response<Body> {
    let how = match close_request(req).await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let s = match find(api, raw_id) {
        Ok(s) => s,
        Err(e) => return e.into_response(),
    };
    tracing::info!(
        session = s.info.id,
        service = %s.info.service,
        code = how.code,
        reason = %how.reason,
        "admin API: closing the session"
    );
    s.control.stop(StopReason::Closed {
        code: how.code,
        reason: how.reason.clone(),
    });
    reply::json(
        StatusCode::ACCEPTED,
        &Closing {
            closed: 1,
            code: how.code,
            reason: how.reason,
        },
    )
}

/// `POST /api/principals/{name}/close`: every session whose current principal has this name.
pub async fn close_principal(
    api: &AdminApi,
    raw_name: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let name = match query::decode_segment(raw_name) {
        Ok(n) => n,
        Err(e) => return reply::bad_request(&format!("principal name: {e}")),
    };
    if name.is_empty() {
        return reply::bad_request("the principal name is empty");
    }
    let how = match close_request(req).await {
        Ok(h) => h,
        Err(e) => return e.into_response(),
    };
    let mut closed = 0;
    for s in api.state.live_sessions.all() {
        if s.control.principal().is_some_and(|p| p.name == name) {
            s.control.stop(StopReason::Closed {
                code: how.code,
                reason: how.reason.clone(),
            });
            closed += 1;
        }
    }
    tracing::info!(principal = %name, closed, code = how.code, reason = %how.reason, "admin API: closing the principal's sessions");
    reply::json(
        StatusCode::ACCEPTED,
        &Closing {
            closed,
            code: how.code,
            reason: how.reason,
        },
    )
}

fn find(api: &AdminApi, raw_id: &str) -> Result<std::sync::Arc<LiveSession>, ApiError> {
    // Ids are counted from 1 and stay far below 2^63: the JSON schema's int64.
    let id: u64 = raw_id
        .parse::<i64>()
        .ok()
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "session id `{raw_id}` is not a whole number from 0 (ids are as `GET /api/sessions` lists them)"
            ))
        })?;
    api.state
        .live_sessions
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("no live session {id} (it may have ended)")))
}

// === closing ===

/// What a close asks for: the WebSocket close code and reason the client will see.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CloseRequest {
    code: u32,
    reason: String,
}

impl Default for CloseRequest {
    fn default() -> Self {
        CloseRequest {
            code: 1000,
            reason: String::new(),
        }
    }
}

#[derive(Debug, PartialEq)]
struct Close {
    code: u16,
    reason: String,
}

#[derive(Serialize)]
struct Closing {
    /// Sessions told to end; each leaves the list once its close is done.
    closed: usize,
    code: u16,
    reason: String,
}

/// The largest reason a WebSocket close frame carries (125 bytes less the code).
const MAX_REASON: usize = 123;

async fn close_request(req: Request<Incoming>) -> Result<Close, ApiError> {
    let r: CloseRequest = body::json_or_default(req).await?;
    validate(r).map_err(ApiError::bad_request)
}

/// Codes that mean something to a client when a server ends a session on purpose: normal,
/// going away, policy, internal error, restart, try again later, and the ranges for
/// libraries (3000–3999) and applications (4000–4999). The rest are reserved or describe
/// a protocol failure this close is not.
fn allowed_code(code: u32) -> bool {
    matches!(code, 1000 | 1001 | 1008 | 1011 | 1012 | 1013 | 3000..=4999)
}

fn validate(r: CloseRequest) -> Result<Close, String> {
    if !allowed_code(r.code) {
        return Err(format!(
            "code {} cannot be sent: use 1000, 1001, 1008, 1011, 1012, 1013 or 3000-4999",
            r.code
        ));
    }
    if r.reason.len() > MAX_REASON {
        return Err(format!(
            "reason is {} bytes of UTF-8; a close frame holds at most {MAX_REASON}",
            r.reason.len()
        ));
    }
    Ok(Close {
        code: r.code as u16,
        reason: r.reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(code: u32, reason: &str) -> CloseRequest {
        CloseRequest {
            code,
            reason: reason.into(),
        }
    }

    #[test]
    fn codes_and_reasons() {
        for ok in [1000, 1001, 1008, 1011, 1012, 1013, 3000, 4001, 4999] {
            assert!(validate(req(ok, "")).is_ok(), "{ok}");
        }
        for bad in [0, 999, 1002, 1005, 1006, 1014, 1015, 2999, 5000, 70000] {
            assert!(
                validate(req(bad, "")).unwrap_err().contains("code"),
                "{bad}"
            );
        }
        assert!(validate(req(4000, &"x".repeat(123))).is_ok());
        // 62 two-byte characters: 124 bytes.
        assert!(validate(req(4000, &"é".repeat(62)))
            .unwrap_err()
            .contains("124 bytes"));
    }

    #[test]
    fn body_defaults_and_strictness() {
        let d: CloseRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(
            validate(d).unwrap(),
            Close {
                code: 1000,
                reason: String::new()
            }
        );
        assert!(serde_json::from_str::<CloseRequest>(r#"{"code": null}"#).is_err());
        assert!(serde_json::from_str::<CloseRequest>(r#"{"code": "4000"}"#).is_err());
        assert!(serde_json::from_str::<CloseRequest>(r#"{"cod": 4000}"#).is_err());
    }
}
