//! The span a session's log lines are written in.

use std::sync::atomic::{AtomicBool, Ordering};

use bridge_api::SessionInfo;
use tracing::Span;

/// `log.session_fields`, set once when logging starts.
static SESSION_SPANS: AtomicBool = AtomicBool::new(false);

pub fn enable_session_spans(on: bool) {
    SESSION_SPANS.store(on, Ordering::Relaxed);
}

/// Every line a session's bridge logs carries these fields, whatever the bridge. At ERROR
/// level so that no level filter short of `off` drops the span while keeping its lines:
/// a warning without its session is the one an operator cannot place.
///
/// `principal` is empty for an anonymous handshake; a bridge that learns it later (a
/// STOMP CONNECT or AMQP login against the realm) fills it in with
/// `Span::current().record("principal", ..)`.
pub fn session_span(info: &SessionInfo) -> Span {
    if !SESSION_SPANS.load(Ordering::Relaxed) {
        return Span::none();
    }
    tracing::error_span!(
        target: "gateway::session",
        "session",
        session = info.id,
        service = %info.service,
        principal = info.principal.as_ref().map(|p| display(&p.name)),
        peer = %info.peer,
        transport = %info.transport,
        subprotocol = info.subprotocol.as_deref().map(display),
    )
}
