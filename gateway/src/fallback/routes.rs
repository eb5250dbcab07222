//! `P/sessions...` for every service path P: open a session (`POST P/sessions`), its event
//! stream (`GET .../events`), its up messages (`POST .../messages`), close it (`DELETE`),
//! CORS preflights (`OPTIONS`). Every request for an existing session is checked: the id's
//! node (421 with `Gateway-Node` when another gateway owns it), the id (404), the Origin
//! (403 if it is not the session's) and the credentials (403 if they name someone else).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use percent_encoding::percent_decode_str;

use super::ids;
use super::registry::Fallback;
use super::session::{self, Applied, Shared};
use super::sse::SseBody;
use super::upstream::{self, PostError};
use crate::admission::{admit, outcome, refuse, AdmissionRequest, Admitted};
use crate::http::refusal_response;
use crate::limits::{record_trip, trip};
use crate::response::{text, Body};
use crate::state::{AppState, Live};

const GATEWAY_NODE: &str = "gateway-node";
const ALLOW_METHODS: &str = "GET, POST, DELETE";
const ALLOW_HEADERS: &str = "Content-Type, Authorization, Last-Event-ID";

#[derive(Debug, PartialEq, Eq)]
enum Tail {
    Session,
    Events,
    Messages,
}

#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    /// `P/sessions`
    Create { service_path: &'a str },
    /// `P/sessions/<id>[/events|/messages]`
    Existing {
        service_path: &'a str,
        id: &'a str,
        tail: Tail,
    },
}

fn parse_route(path: &str) -> Option<Route<'_>> {
    if let Some(service_path) = path.strip_suffix("/sessions") {
        return Some(Route::Create { service_path });
    }
    let (rest, tail) = if let Some(rest) = path.strip_suffix("/events") {
        (rest, Tail::Events)
    } else if let Some(rest) = path.strip_suffix("/messages") {
        (rest, Tail::Messages)
    } else {
        (path, Tail::Session)
    };
    let (prefix, id) = rest.rsplit_once('/')?;
    let service_path = prefix.strip_suffix("/sessions")?;
    if id.is_empty() {
        return None;
    }
    Some(Route::Existing {
        service_path,
        id,
        tail,
    })
}

/// Whether `path` is a fallback route of a configured service.
pub fn is_route(state: &AppState, live: &Live, path: &str) -> bool {
    state.fallback.is_some()
        && parse_route(path).is_some_and(|r| {
            let p = match r {
                Route::Create { service_path } | Route::Existing { service_path, .. } => {
                    service_path
                }
            };
            live.services.has_path(p)
        })
}

fn origin_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::ORIGIN).and_then(|v| v.to_str().ok())
}

fn host_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::HOST).and_then(|v| v.to_str().ok())
}

/// The CORS answer headers for `origin`, when the service allows it.
fn add_cors(resp: &mut Response<Body>, origin: Option<&str>, allowed: bool) {
    let h = resp.headers_mut();
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(origin) = origin.filter(|_| allowed) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static("Gateway-Node"),
        );
    }
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut resp = Response::new(crate::response::full(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn error(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    json(status, serde_json::json!({ "error": message.into() }))
}

fn method_not_allowed(allow: &'static str) -> Response<Body> {
    let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// Values of query parameter `name`, percent-decoded (the first occurrence).
fn query_param(query: Option<&str>, name: &str) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_decode_str(&v.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// Handles a request `is_route` accepted.
pub async fn handle(
    state: Arc<AppState>,
    live: Arc<Live>,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let Some(fallback) = state.fallback.clone() else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let path = req.uri().path().to_string();
    let Some(route) = parse_route(&path) else {
        return text(StatusCode::NOT_FOUND, "not found\n");
    };
    let origin = origin_of(req.headers()).map(str::to_string);
    let host = host_of(req.headers()).map(str::to_string);
    match route {
        Route::Create { service_path } => {
            let allowed = live
                .services
                .at_path(service_path)
                .iter()
                .any(|s| s.origins.allows(origin.as_deref(), host.as_deref()));
            let mut resp = match *req.method() {
                Method::OPTIONS => preflight(origin.as_deref(), allowed),
                Method::POST => create(&state, &live, &fallback, &req, service_path, peer).await,
                _ => method_not_allowed("POST, OPTIONS"),
            };
            add_cors(&mut resp, origin.as_deref(), allowed);
            resp
        }
        Route::Existing {
            service_path,
            id,
            tail,
        } => {
            let owner = ids::node_of(id);
            if owner.is_some_and(|n| n != fallback.routes.node) {
                let mut resp = error(
                    StatusCode::MISDIRECTED_REQUEST,
                    "this session belongs to another gateway",
                );
                if let Ok(v) = HeaderValue::from_str(owner.unwrap_or_default()) {
                    resp.headers_mut().insert(GATEWAY_NODE, v);
                }
                let allowed = live
                    .services
                    .at_path(service_path)
                    .iter()
                    .any(|s| s.origins.allows(origin.as_deref(), host.as_deref()));
                add_cors(&mut resp, origin.as_deref(), allowed);
                return resp;
            }
            // By the path the session's own service had: a reload may have replaced the
            // service since, and the session finishes on the one it started with.
            let session = fallback
                .registry
                .get(id)
                .filter(|s| s.service.config.path == service_path);
            let Some(session) = session else {
                let allowed = live
                    .services
                    .at_path(service_path)
                    .iter()
                    .any(|s| s.origins.allows(origin.as_deref(), host.as_deref()));
                let mut resp = error(StatusCode::NOT_FOUND, "no such session");
                add_cors(&mut resp, origin.as_deref(), allowed);
                return resp;
            };
            let allowed = session
                .service
                .origins
                .allows(origin.as_deref(), host.as_deref());
            let mut resp = if *req.method() == Method::OPTIONS {
                preflight(origin.as_deref(), allowed)
            } else {
                match check(&live, &session, &req, origin.as_deref()).await {
                    Err(resp) => resp,
                    Ok(()) => match (req.method().clone(), tail) {
                        (Method::GET, Tail::Events) => events(&fallback, session, &req),
                        (_, Tail::Events) => method_not_allowed("GET, OPTIONS"),
                        (Method::POST, Tail::Messages) => messages(&fallback, &session, req).await,
                        (_, Tail::Messages) => method_not_allowed("POST, OPTIONS"),
                        (Method::DELETE, Tail::Session) => {
                            session.delete();
                            let mut resp = Response::new(Body::default());
                            *resp.status_mut() = StatusCode::NO_CONTENT;
                            resp
                        }
                        (_, Tail::Session) => method_not_allowed("DELETE, OPTIONS"),
                    },
                }
            };
            add_cors(&mut resp, origin.as_deref(), allowed);
            resp
        }
    }
}

fn preflight(origin: Option<&str>, allowed: bool) -> Response<Body> {
    if origin.is_some() && !allowed {
        return text(StatusCode::FORBIDDEN, "origin not allowed\n");
    }
    let mut resp = Response::new(Body::default());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    let h = resp.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOW_METHODS),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static(ALLOW_HEADERS),
    );
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    resp
}

/// The request's Origin (if any) must be the session's, and its credentials (if any) must
/// name the session's principal.
async fn check(
    live: &Live,
    session: &Shared,
    req: &Request<Incoming>,
    origin: Option<&str>,
) -> Result<(), Response<Body>> {
    if let Some(origin) = origin {
        let same = session
            .info
            .origin
            .as_deref()
            .is_some_and(|o| o.eq_ignore_ascii_case(origin));
        if !same {
            return Err(error(
                StatusCode::FORBIDDEN,
                "this session was opened from another origin",
            ));
        }
    }
    let query = req.uri().query();
    let Some(fp) = live.auth.fingerprint(req.headers(), query) else {
        return Ok(());
    };
    if session.credentials == Some(fp) {
        return Ok(());
    }
    match live.auth.authenticate(req.headers(), query).await {
        Err(failure) if failure.busy => Err(error(StatusCode::SERVICE_UNAVAILABLE, failure.reason)),
        Err(failure) => Err(error(StatusCode::UNAUTHORIZED, failure.reason)),
        Ok(None) => Ok(()),
        Ok(Some(p)) => {
            let same = session
                .info
                .principal
                .as_ref()
                .is_some_and(|q| q.name == p.name);
            if same {
                Ok(())
            } else {
                Err(error(
                    StatusCode::FORBIDDEN,
                    "these credentials name another user than the session's",
                ))
            }
        }
    }
}

/// The subprotocols offered: `?protocol=a,b`, else `Sec-WebSocket-Protocol`.
fn offered(req: &Request<Incoming>) -> Vec<String> {
    let list = query_param(req.uri().query(), "protocol").or_else(|| {
        let values: Vec<&str> = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!values.is_empty()).then(|| values.join(","))
    });
    list.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
        .collect()
}

async fn create(
    state: &Arc<AppState>,
    live: &Live,
    fallback: &Arc<Fallback>,
    req: &Request<Incoming>,
    service_path: &str,
    peer: SocketAddr,
) -> Response<Body> {
    let Some(permit) = fallback.registry.reserve() else {
        record_trip(trip::HTTP_FALLBACK_SESSIONS);
        return refusal_response(&refuse(
            "-",
            "http",
            outcome::LIMIT,
            StatusCode::SERVICE_UNAVAILABLE,
            "too many HTTP fallback sessions".into(),
        ));
    };
    let offered = offered(req);
    let offered: Vec<&str> = offered.iter().map(String::as_str).collect();
    let request = AdmissionRequest {
        path: service_path,
        headers: req.headers(),
        query: req.uri().query(),
        peer,
        offered: &offered,
        transport: "http",
    };
    // The POST's connection keeps its own open slot: it may carry more requests.
    let no_connection = Arc::new(Mutex::new(None));
    let Admitted {
        service,
        info,
        subprotocol,
        slots,
    } = match admit(state, live, request, &no_connection).await {
        Ok(admitted) => admitted,
        Err(refusal) => return refusal_response(&refusal),
    };
    let Some(id) = ids::new_id(&fallback.routes.node) else {
        tracing::error!("no randomness for a session id");
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "cannot make a session id",
        );
    };
    let id: Arc<str> = id.into();
    let credentials = live.auth.fingerprint(req.headers(), req.uri().query());
    session::start(
        fallback,
        &state.sessions,
        &state.shutdown,
        &state.live_sessions,
        service,
        info,
        slots,
        permit,
        id.clone(),
        credentials,
    );
    let base = format!("{service_path}/sessions/{id}");
    let r = &fallback.routes;
    json(
        StatusCode::CREATED,
        serde_json::json!({
            "session": &*id,
            "protocol": subprotocol,
            "events": format!("{base}/events"),
            "messages": format!("{base}/messages"),
            "grace_ms": r.grace.as_millis() as u64,
            "max_post_bytes": r.max_post_bytes,
            "max_message_size": r.max_message_size,
        }),
    )
}

/// The resume point: `Last-Event-ID`, else `?last_event_id=`.
fn last_event_id(req: &Request<Incoming>) -> Result<Option<u64>, ()> {
    let raw = match req.headers().get("last-event-id") {
        Some(v) => Some(v.to_str().map_err(|_| ())?.trim().to_string()),
        None => query_param(req.uri().query(), "last_event_id"),
    };
    match raw.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s.parse().map(Some).map_err(|_| ()),
    }
}

fn events(fallback: &Fallback, session: Arc<Shared>, req: &Request<Incoming>) -> Response<Body> {
    let Ok(last) = last_event_id(req) else {
        return error(StatusCode::BAD_REQUEST, "Last-Event-ID is not a number");
    };
    let generation = session.attach(last);
    let r = &fallback.routes;
    let body = SseBody::new(
        session,
        generation,
        r.stream_bytes,
        r.keepalive,
        fallback.streams_active.clone(),
    );
    let mut resp = Response::new(body.boxed_unsync());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

async fn messages(fallback: &Fallback, session: &Shared, req: Request<Incoming>) -> Response<Body> {
    let Some(_slot) = session.try_post() else {
        return error(
            StatusCode::CONFLICT,
            "another POST is in flight for this session",
        );
    };
    let max = fallback.routes.max_post_bytes;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body over max_post_bytes ({max})"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    let body = match Limited::new(req.into_body(), max).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
        Err(e) => {
            tracing::debug!("reading a POST body failed: {e}");
            return error(StatusCode::BAD_REQUEST, "cannot read the body");
        }
    };
    let post = match upstream::parse(&body, fallback.routes.max_message_size) {
        Ok(post) => post,
        Err(PostError::Bad(why)) => return error(StatusCode::BAD_REQUEST, why),
        Err(PostError::TooBig(why)) => {
            session.too_big(why.clone());
            return error(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("{why}: the session is closed"),
            );
        }
    };
    drop(body);
    if let Some(ack) = post.ack {
        session.ack(ack);
    }
    if post.messages.is_empty() {
        return json(
            StatusCode::OK,
            serde_json::json!({ "ack": session.expected() - 1 }),
        );
    }
    if session.is_over() {
        return error(StatusCode::NOT_FOUND, "the session has ended");
    }
    match session.apply(post.seq, post.messages).await {
        Applied::Ok(ack) => json(StatusCode::OK, serde_json::json!({ "ack": ack })),
        Applied::Gap { expected } => json(
            StatusCode::CONFLICT,
            serde_json::json!({
                "error": format!("seq {} is past the next one expected", post.seq),
                "expected": expected,
            }),
        ),
        Applied::Gone => error(StatusCode::NOT_FOUND, "the session has ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            parse_route("/ws/sessions"),
            Some(Route::Create {
                service_path: "/ws"
            })
        );
        assert_eq!(
            parse_route("/a/b/sessions/n.x/events"),
            Some(Route::Existing {
                service_path: "/a/b",
                id: "n.x",
                tail: Tail::Events
            })
        );
        assert_eq!(
            parse_route("/ws/sessions/n.x/messages"),
            Some(Route::Existing {
                service_path: "/ws",
                id: "n.x",
                tail: Tail::Messages
            })
        );
        assert_eq!(
            parse_route("/ws/sessions/n.x"),
            Some(Route::Existing {
                service_path: "/ws",
                id: "n.x",
                tail: Tail::Session
            })
        );
        assert_eq!(parse_route("/ws/sessions/"), None);
        assert_eq!(parse_route("/ws/other/n.x"), None);
        assert_eq!(parse_route("/ws"), None);
    }

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(
            query_param(Some("a=1&protocol=v12.stomp%2Cv11.stomp"), "protocol").as_deref(),
            Some("v12.stomp,v11.stomp")
        );
        assert_eq!(query_param(Some("x=1"), "protocol"), None);
        assert_eq!(query_param(None, "protocol"), None);
    }
}
