use crate::Message;

/// A close the bridge asks the transport to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    pub code: u16,
    pub reason: String,
}

/// What a bridge puts in its [`Outbox`](crate::Outbox).
#[derive(Debug)]
pub enum Outgoing {
    Message(Message),
    /// Flush what is queued, then close the session with this code and reason.
    Close(CloseFrame),
}
