//! Whether a session may start, whatever transport carries it: pick the service and
//! subprotocol, then check the per-IP handshake rate, draining, origin, readiness, the
//! per-IP cap, credentials and roles, in that order (the rate first, so a flood is turned
//! away before it costs a password check). Every outcome is counted in `gateway_handshakes_total`.

use std::net::SocketAddr;
use std::sync::Arc;

use bridge_api::SessionInfo;
use http::{header, HeaderMap, StatusCode};

use crate::forwarded::client_addr;
use crate::limits::{record_trip, trip, ConnectionSlot, SessionSlots};
use crate::services::{NoService, Service};
use crate::state::{AppState, Live};

#[cfg(test)]
mod tests;

/// `result` label values of `gateway_handshakes_total`.
pub mod outcome {
    pub const ACCEPTED: &str = "accepted";
    pub const NO_SUBPROTOCOL: &str = "no_subprotocol";
    pub const BAD_ORIGIN: &str = "bad_origin";
    pub const UNAUTHENTICATED: &str = "unauthenticated";
    pub const FORBIDDEN: &str = "forbidden";
    pub const LIMIT: &str = "limit";
    pub const NOT_FOUND: &str = "not_found";
    pub const BAD_REQUEST: &str = "bad_request";
    pub const UNAVAILABLE: &str = "unavailable";
    /// Too many password checks under way to check this one's credentials.
    pub const AUTH_BUSY: &str = "auth_busy";
}

/// What a refusal for too many password checks tells clients to wait, in seconds.
pub const AUTH_BUSY_RETRY_AFTER: u64 = 1;

/// What admission looks at. `offered` comes from the transport, which knows where a
/// client names its subprotocols.
pub struct AdmissionRequest<'a> {
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    pub query: Option<&'a str>,
    pub peer: SocketAddr,
    pub offered: &'a [&'a str],
    pub transport: &'static str,
}

/// A session allowed to start: its service, what the bridge is told about it, and the
/// limit slots it holds until it ends.
pub struct Admitted {
    pub service: Arc<Service>,
    pub info: Arc<SessionInfo>,
    pub subprotocol: Option<&'static str>,
    pub slots: SessionSlots,
}

/// A session refused, already counted and logged. `reason` is safe to show the client;
/// `challenge` asks for a `WWW-Authenticate` header, `retry_after` (seconds) for a
/// `Retry-After` one.
#[derive(Debug)]
pub struct Refusal {
    pub status: StatusCode,
    pub result: &'static str,
    pub reason: String,
    pub challenge: bool,
    pub retry_after: Option<u64>,
}

fn count(service: &str, result: &'static str, transport: &'static str) {
    metrics::counter!(
        "gateway_handshakes_total",
        "service" => service.to_string(),
        "result" => result,
        "transport" => transport
    )
    .increment(1);
}

/// Counts and logs a refusal; `service` is `-` when none was chosen yet.
pub fn refuse(
    service: &str,
    transport: &'static str,
    result: &'static str,
    status: StatusCode,
    reason: String,
) -> Refusal {
    let refusal = Refusal {
        status,
        result,
        reason,
        challenge: false,
        retry_after: None,
    };
    count(service, refusal.result, transport);
    tracing::debug!(
        service,
        result = refusal.result,
        status = %refusal.status,
        "handshake refused: {}",
        refusal.reason
    );
    refusal
}

fn unauthorized(service: &str, transport: &'static str, reason: String) -> Refusal {
    Refusal {
        challenge: true,
        ..refuse(
            service,
            transport,
            outcome::UNAUTHENTICATED,
            StatusCode::UNAUTHORIZED,
            reason,
        )
    }
}

/// On success the connection's open slot moves out of `conn` into the session's slots.
/// `live` is the request's one snapshot of the settings in force.
pub async fn admit(
    state: &AppState,
    live: &Live,
    req: AdmissionRequest<'_>,
    conn: &ConnectionSlot,
) -> Result<Admitted, Refusal> {
    let (service, subprotocol) = match live.services.select(req.path, req.offered) {
        Ok(found) => found,
        Err(NoService::UnknownPath) => {
            return Err(refuse(
                "-",
                req.transport,
                outcome::NOT_FOUND,
                StatusCode::NOT_FOUND,
                format!("no WebSocket service at {}", req.path),
            ))
        }
        Err(NoService::NoSubprotocol { supported }) => {
            return Err(refuse(
                "-",
                req.transport,
                outcome::NO_SUBPROTOCOL,
                StatusCode::BAD_REQUEST,
                format!(
                    "no supported subprotocol offered (offered: [{}]; supported here: [{}])",
                    req.offered.join(", "),
                    supported.join(", ")
                ),
            ))
        }
    };
    let client = client_addr(req.peer, req.headers, &live.trusted_proxies);
    if let Err(wait) = state.handshake_rate.check(client.ip()) {
        record_trip(trip::HANDSHAKE_RATE);
        // Whole seconds (the header's unit), rounded up so a client that obeys succeeds.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        return Err(Refusal {
            retry_after: Some(secs.max(1)),
            ..refuse(
                &service.name,
                req.transport,
                outcome::LIMIT,
                StatusCode::TOO_MANY_REQUESTS,
                format!("too many handshakes from {}: retry later", client.ip()),
            )
        });
    }
    if state.is_draining() {
        return Err(refuse(
            &service.name,
            req.transport,
            outcome::UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            "server is shutting down".into(),
        ));
    }
    let origin = req
        .headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let host = req.headers.get(header::HOST).and_then(|v| v.to_str().ok());
    if !service.origins.allows(origin.as_deref(), host) {
        return Err(refuse(
            &service.name,
            req.transport,
            outcome::BAD_ORIGIN,
            StatusCode::FORBIDDEN,
            match &origin {
                Some(o) => format!("origin {o} is not allowed"),
                None => "a missing Origin header is not allowed".into(),
            },
        ));
    }
    if !service.bridge.is_ready() {
        return Err(refuse(
            &service.name,
            req.transport,
            outcome::UNAVAILABLE,
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "service {} is not ready (its backend is unavailable)",
                service.name
            ),
        ));
    }
    let Some(ip_slot) = state.connections.try_ip(client.ip()) else {
        return Err(refuse(
            &service.name,
            req.transport,
            outcome::LIMIT,
            StatusCode::TOO_MANY_REQUESTS,
            format!("too many connections from {}", client.ip()),
        ));
    };
    let principal = match live.auth.authenticate(req.headers, req.query).await {
        Ok(p) => p,
        Err(failure) if failure.busy => {
            return Err(Refusal {
                retry_after: Some(AUTH_BUSY_RETRY_AFTER),
                ..refuse(
                    &service.name,
                    req.transport,
                    outcome::AUTH_BUSY,
                    StatusCode::SERVICE_UNAVAILABLE,
                    failure.reason,
                )
            })
        }
        Err(failure) => return Err(unauthorized(&service.name, req.transport, failure.reason)),
    };
    match &principal {
        None if service.require_auth => {
            return Err(unauthorized(
                &service.name,
                req.transport,
                "authentication required".into(),
            ));
        }
        Some(p) => {
            if let Some(missing) = service.require_roles.iter().find(|r| !p.has_role(r)) {
                return Err(refuse(
                    &service.name,
                    req.transport,
                    outcome::FORBIDDEN,
                    StatusCode::FORBIDDEN,
                    format!("user {} lacks the role {missing}", p.name),
                ));
            }
        }
        None => {}
    }

    count(&service.name, outcome::ACCEPTED, req.transport);
    let info = Arc::new(SessionInfo {
        id: state.next_session_id(),
        service: service.name.clone(),
        peer: client,
        origin,
        principal,
        subprotocol: subprotocol.map(str::to_string),
        transport: req.transport,
    });
    Ok(Admitted {
        service,
        info,
        subprotocol,
        slots: SessionSlots::take(ip_slot, conn),
    })
}
