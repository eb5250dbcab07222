//! The frame value type shared by decoder and encoder.

use bytes::Bytes;

use crate::{Command, Headers};

/// One STOMP frame. The body is `Bytes` so a decoded body is a zero-copy
/// slice of the read buffer and an outgoing body can be shared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub command: Command,
    pub headers: Headers,
    pub body: Bytes,
}

impl Frame {
    pub fn new(command: Command) -> Self {
        Frame {
            command,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Builder form of [`Headers::push`].
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push(name, value);
        self
    }

    pub fn with_body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = body.into();
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder() {
        let f = Frame::new(Command::Send)
            .header("destination", "/q")
            .header("destination", "/ignored")
            .with_body("hi");
        assert_eq!(f.headers.get("destination"), Some("/q"));
        assert_eq!(f.headers.len(), 2);
        assert_eq!(&f.body[..], b"hi");
    }
}
