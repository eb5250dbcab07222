//! The only seam between the gateway and a bridge.
//!
//! A bridge sees a [`Session`]: a stream of client messages, an [`Outbox`] for messages to the
//! client, who the client is, and a shutdown signal. Nothing here names a socket or a WebSocket
//! type, so the same bridge runs over any transport the gateway offers.

mod bridge;
mod control;
// Kept until the STOMP bridge moves to EndKind.
#[doc(hidden)]
mod end;
mod error;
mod lifecycle;
mod message;
mod outbox;
mod outgoing;
mod principal;
mod session;
mod settings;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use bridge::{Bridge, BridgeFactory, BuildContext, DefaultService};
pub use control::{ExpiryWatch, SessionControl, StopReason};
pub use end::{End, EndKind};
pub use error::{BridgeError, ErrorSource};
pub use lifecycle::Background;
pub use message::{Message, Text};
pub use outbox::{
    Lane, LanePolicy, Outbox, OutboxPermit, OutboxReceiver, Pushed, QueueDepth, SendError,
    SessionClosed,
};
pub use outgoing::Outgoing;
pub use principal::{AuthMethod, CredentialCheck, LoginRefused, Principal};
pub use session::{Incoming, Session, SessionInfo};
pub use settings::{parse_settings, Credentials, SettingsError};

/// Re-exported so bridges name the same types the gateway uses.
pub use async_trait::async_trait;
pub use bytes::Bytes;
pub use tokio_util::sync::CancellationToken;
pub use tokio_util::task::TaskTracker;
