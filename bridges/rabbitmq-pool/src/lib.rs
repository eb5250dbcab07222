//! A service's RabbitMQ connections: a fixed pool of supervised lapin connections with
//! channels multiplexed on them, spread over a cluster's nodes and failing over between
//! them with backoff, readiness for the service, and
//! lapin's errors sorted into what a client can act on. Shared by every bridge that talks
//! to RabbitMQ, so a service's broker connections are counted and kept in one place.

mod error;
mod errors;
mod metrics;
mod nodes;
mod pool;
mod probe;

pub use error::{Error, ErrorKind};
pub use errors::{describe_connect, from_lapin, is_refusal, timed, RPC_TIMEOUT};
pub use lapin;
pub use metrics::{NodeMetrics, PoolMetrics};
pub use nodes::{as_user, endpoints, parse_nodes};
pub use pool::{connect, connect_any, endpoint, Chan, Pool};
pub use probe::{probe, probe_any};
