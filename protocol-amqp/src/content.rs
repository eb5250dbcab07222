//! A channel's content: a content-bearing method, then a header frame announcing the body
//! size, then body frames until that size is reached (spec section 4.2.6).

use amq_protocol::frame::AMQPContentHeader;
use amq_protocol::protocol::{basic, AMQPClass};
use bytes::{Bytes, BytesMut};

use crate::codes::{CONTENT_TOO_LARGE, FRAME_ERROR, UNEXPECTED_FRAME};
use crate::{BasicProperties, FrameError};

/// A method with its content, assembled.
#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub method: AMQPClass,
    pub properties: BasicProperties,
    pub body: Bytes,
}

/// What a channel's frames add up to.
#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Method(AMQPClass),
    Content(Box<Content>),
}

#[derive(Debug)]
struct Partial {
    method: AMQPClass,
    header: Option<(BasicProperties, u64)>,
    /// The first body frame is kept as is: most bodies fit one frame and are never copied.
    first: Option<Bytes>,
    rest: BytesMut,
    received: u64,
}

/// One channel's content in progress.
#[derive(Debug, Default)]
pub struct Assembler {
    partial: Option<Partial>,
}

/// Whether a method from a client carries content.
fn has_content(method: &AMQPClass) -> bool {
    matches!(method, AMQPClass::Basic(basic::AMQPMethod::Publish(_)))
}

impl Assembler {
    pub fn new() -> Assembler {
        Assembler::default()
    }

    /// Content has been started and not finished.
    pub fn busy(&self) -> bool {
        self.partial.is_some()
    }

    /// Forget content in progress (its channel closed).
    pub fn reset(&mut self) {
        self.partial = None;
    }

    pub fn method(
        &mut self,
        channel: u16,
        method: AMQPClass,
    ) -> Result<Option<Command>, FrameError> {
        if self.partial.is_some() {
            return Err(
                unexpected(channel, "a method frame where content was expected")
                    .on_method(method.get_amqp_class_id(), method.get_amqp_method_id()),
            );
        }
        if !has_content(&method) {
            return Ok(Some(Command::Method(method)));
        }
        self.partial = Some(Partial {
            method,
            header: None,
            first: None,
            rest: BytesMut::new(),
            received: 0,
        });
        Ok(None)
    }

    /// A header frame; refused with 311 CONTENT_TOO_LARGE (a channel error) when it announces
    /// more than `max_body_size`, before any body octet is buffered.
    pub fn header(
        &mut self,
        channel: u16,
        header: AMQPContentHeader,
        max_body_size: u64,
    ) -> Result<Option<Command>, FrameError> {
        let Some(partial) = self.partial.as_mut().filter(|p| p.header.is_none()) else {
            return Err(unexpected(
                channel,
                "a content header without a method before it",
            ));
        };
        if header.class_id != partial.method.get_amqp_class_id() {
            return Err(unexpected(
                channel,
                format!(
                    "content header of class {} after a method of class {}",
                    header.class_id,
                    partial.method.get_amqp_class_id()
                ),
            ));
        }
        if header.body_size > max_body_size {
            let method = self.partial.take().map(|p| p.method);
            let mut e = FrameError::new(
                CONTENT_TOO_LARGE,
                channel,
                format!(
                    "message body of {} octets is larger than the maximum of {max_body_size}",
                    header.body_size
                ),
            );
            if let Some(m) = method {
                e = e.on_method(m.get_amqp_class_id(), m.get_amqp_method_id());
            }
            return Err(e);
        }
        partial.header = Some((header.properties, header.body_size));
        Ok(self.complete())
    }

    pub fn body(&mut self, channel: u16, bytes: Bytes) -> Result<Option<Command>, FrameError> {
        let Some(partial) = self.partial.as_mut() else {
            return Err(unexpected(channel, "a body frame without a content header"));
        };
        let Some(size) = partial.header.as_ref().map(|h| h.1) else {
            return Err(unexpected(
                channel,
                "a body frame before its content header",
            ));
        };
        let received = partial.received + bytes.len() as u64;
        if received > size {
            return Err(FrameError::new(
                FRAME_ERROR,
                channel,
                format!("body frames carry {received} octets, the header announced {size}"),
            ));
        }
        partial.received = received;
        match partial.first.take() {
            None if partial.rest.is_empty() => partial.first = Some(bytes),
            first => {
                // Grown as octets arrive, never to the announced size up front: a peer
                // announcing a large body and trickling it holds only what it sent.
                if let Some(first) = first {
                    partial.rest.extend_from_slice(&first);
                }
                partial.rest.extend_from_slice(&bytes);
            }
        }
        Ok(self.complete())
    }

    fn complete(&mut self) -> Option<Command> {
        let p = self.partial.as_ref()?;
        let (_, size) = p.header.as_ref()?;
        if p.received < *size {
            return None;
        }
        let p = self.partial.take()?;
        let (properties, _) = p.header?;
        let body = match p.first {
            Some(first) => first,
            None => p.rest.freeze(),
        };
        Some(Command::Content(Box::new(Content {
            method: p.method,
            properties,
            body,
        })))
    }
}

fn unexpected(channel: u16, detail: impl std::fmt::Display) -> FrameError {
    FrameError::new(UNEXPECTED_FRAME, channel, detail)
}
