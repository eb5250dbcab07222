use crate::{End, Message};

/// What a bridge puts in its [`Outbox`](crate::Outbox).
#[derive(Debug)]
pub enum Outgoing {
    Message(Message),
    /// Flush what is queued, then end the session this way.
    Close(End),
}
