//! The only seam between the gateway and a bridge.
//!
//! A bridge sees a [`Session`]: a stream of client messages, an [`Outbox`] for messages to the
//! client, who the client is, and a shutdown signal. Nothing here names a socket or a WebSocket
//! type, so the same bridge runs over any transport the gateway offers.

mod bridge;
mod error;
mod message;
mod outbox;
mod outgoing;
mod principal;
mod session;
mod settings;

pub use bridge::{Bridge, BridgeFactory, BuildContext, DefaultService};
pub use error::{BridgeError, ErrorSource};
pub use message::{Message, Text};
pub use outbox::{
    Lane, LanePolicy, Outbox, OutboxPermit, OutboxReceiver, Pushed, SendError, SessionClosed,
};
pub use outgoing::{CloseFrame, Outgoing};
pub use principal::{AuthMethod, CredentialCheck, Principal};
pub use session::{Incoming, Session, SessionInfo};
pub use settings::{parse_settings, SettingsError};

/// Re-exported so bridges name the same types the gateway uses.
pub use async_trait::async_trait;
pub use bytes::Bytes;
pub use tokio_util::sync::CancellationToken;

/// WebSocket-compatible close codes a bridge may ask for (RFC 6455 section 7.4).
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL_ERROR: u16 = 1002;
    pub const UNSUPPORTED_DATA: u16 = 1003;
    pub const INVALID_PAYLOAD: u16 = 1007;
    pub const POLICY_VIOLATION: u16 = 1008;
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    pub const INTERNAL_ERROR: u16 = 1011;
    pub const TRY_AGAIN_LATER: u16 = 1013;
    pub const BAD_GATEWAY: u16 = 1014;
}
