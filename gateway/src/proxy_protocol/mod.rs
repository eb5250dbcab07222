//! The PROXY protocol (v1 and v2) from load balancers the configuration trusts: the
//! header they put before the client's bytes names the client, who then stands in for the
//! load balancer everywhere the gateway looks at the peer.

mod accept;
mod parse;
mod prefixed;
mod read;

pub use accept::accept;
pub use prefixed::Prefixed;
