//! The HTTP fallback transport: server-sent events down, POST up, for clients that cannot
//! open a WebSocket. It builds the same bridge `Session` as the WebSocket transport, so a
//! bridge cannot tell them apart.
//!
//! - `routes.rs`: `P/sessions...` requests, CORS, the per-request checks;
//! - `session.rs`: a session's shared state and its task (bridge + pump);
//! - `sse.rs`: event encoding and the streaming response body;
//! - `replay.rs`: the down replay buffer (bounded by bytes, resume, acks);
//! - `upstream.rs`: POST bodies and the bridge's `Incoming`;
//! - `registry.rs`: sessions by id and the transport's settings;
//! - `ids.rs`: unguessable ids carrying the owning node.

mod ids;
mod registry;
mod replay;
mod routes;
mod session;
mod sse;
mod upstream;

pub use registry::{Fallback, RouteSettings};
pub use routes::{handle, is_route};
pub use session::SessionSettings;
