//! One module per scenario. Each has an `Args` struct (flattening the shared
//! [`crate::cli::ConnectArgs`] and [`crate::cli::ProcessArgs`]), a `parent` that spawns and
//! steers the workers and prints the results, and a `worker` that opens its share of the
//! connections and reports JSON lines. New scenarios (STOMP fan-out, idle and slow
//! consumers against any STOMP-over-WebSocket URL; XMPP login and round trips) slot in the
//! same way.

pub mod echo;
pub mod idle;
pub mod stomp;
pub mod storm;
pub mod xmpp;
