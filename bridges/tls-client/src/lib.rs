//! The TLS client of every bridge towards its servers and brokers (XMPP servers, RabbitMQ
//! over `amqps://`, STOMP brokers over `stomp+ssl://`): one settings shape, one trust
//! decision, one rustls `ClientConfig` per service, so a pin given to one service never
//! applies to another.
//!
//! Trust, in order: `insecure` accepts anything (handshake signatures still checked);
//! `pin_sha256` requires a pinned key in the server's chain (the leaf's, or a CA's the
//! leaf chains up to); a `ca_file` (or no pin) requires the usual chain check against the
//! system roots plus that file, where a server certificate that is itself in the file is
//! trusted as it is. The certificate's name is checked in every case but `insecure`.

mod client;
mod pin;
mod settings;
mod verify;

pub use client::{describe, server_name, TlsClient};
pub use pin::{Pin, Pins};
pub use settings::{TlsError, TlsSettings};
pub use tokio_rustls::client::TlsStream;
