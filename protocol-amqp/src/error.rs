use crate::codes::{code_name, is_hard_error};

/// What an error closes: the whole connection (`Connection.Close`) or one channel
/// (`Channel.Close`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Connection,
    Channel,
}

/// Why bytes from a peer were refused, with what the spec says to close with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text}")]
pub struct FrameError {
    /// The reply code, e.g. 501 FRAME_ERROR.
    pub code: u16,
    /// The reply text, "NAME - detail" as RabbitMQ words them.
    pub text: String,
    /// The channel the offending frame came on.
    pub channel: u16,
    /// The offending method's class and method ids, 0 when no method is to blame.
    pub class_id: u16,
    pub method_id: u16,
}

impl FrameError {
    pub fn new(code: u16, channel: u16, detail: impl std::fmt::Display) -> FrameError {
        FrameError {
            code,
            text: format!("{} - {detail}", code_name(code)),
            channel,
            class_id: 0,
            method_id: 0,
        }
    }

    /// The method that caused it, for the close's class-id and method-id fields.
    pub fn on_method(mut self, class_id: u16, method_id: u16) -> FrameError {
        self.class_id = class_id;
        self.method_id = method_id;
        self
    }

    pub fn scope(&self) -> Scope {
        if is_hard_error(self.code) || self.channel == 0 {
            Scope::Connection
        } else {
            Scope::Channel
        }
    }
}
