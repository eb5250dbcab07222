//! Why a client's command failed, in the two scopes AMQP has, and lapin's errors sorted
//! into them: the broker's channel exceptions keep its code and text.

use protocol_amqp::{FrameError, Scope, CHANNEL_ERROR, CONNECTION_FORCED};
use rabbitmq_pool::lapin;
use rabbitmq_pool::lapin::protocol::AMQPErrorKind;

#[derive(Debug)]
pub enum Fault {
    /// Close this channel with Channel.Close; the connection carries on.
    Channel(Close),
    /// Close the connection with Connection.Close.
    Connection(Close),
    /// The broker went away: Connection.Close 320 so the client's reconnect logic runs.
    BrokerGone(String),
}

#[derive(Debug, Clone)]
pub struct Close {
    pub channel: u16,
    pub code: u16,
    pub text: String,
    pub class_id: u16,
    pub method_id: u16,
}

impl Fault {
    pub fn channel(channel: u16, code: u16, detail: impl std::fmt::Display) -> Fault {
        Fault::from(FrameError::new(code, channel, detail))
    }

    pub fn connection(code: u16, detail: impl std::fmt::Display) -> Fault {
        Fault::Connection(Close::from(FrameError::new(code, 0, detail)))
    }

    /// The method the fault answers, for the close's class-id and method-id.
    pub fn on_method(mut self, ids: (u16, u16)) -> Fault {
        if let Fault::Channel(c) | Fault::Connection(c) = &mut self {
            if c.class_id == 0 {
                (c.class_id, c.method_id) = ids;
            }
        }
        self
    }

    /// What lapin said on `channel`, doing what the client asked.
    pub fn from_lapin(channel: u16, e: &lapin::Error, broker: &str) -> Fault {
        match e.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => {
                let close = Close {
                    channel,
                    code: amqp.get_id(),
                    text: amqp.get_message().to_string(),
                    class_id: 0,
                    method_id: 0,
                };
                match amqp.kind() {
                    AMQPErrorKind::Soft(_) => Fault::Channel(close),
                    // The broker closed the pooled connection for what this client asked
                    // (others on it reconnect): the client hears the broker's own reason.
                    AMQPErrorKind::Hard(_) => Fault::Connection(close),
                }
            }
            lapin::ErrorKind::InvalidChannelState(..) => Fault::Channel(Close {
                channel,
                code: CHANNEL_ERROR,
                text: "CHANNEL_ERROR - the broker closed this channel".into(),
                class_id: 0,
                method_id: 0,
            }),
            _ => Fault::BrokerGone(format!("{e} (at {broker})")),
        }
    }
}

impl From<FrameError> for Fault {
    fn from(e: FrameError) -> Fault {
        match e.scope() {
            Scope::Channel => Fault::Channel(Close::from(e)),
            Scope::Connection => Fault::Connection(Close::from(e)),
        }
    }
}

impl From<FrameError> for Close {
    fn from(e: FrameError) -> Close {
        Close {
            channel: e.channel,
            code: e.code,
            text: e.text,
            class_id: e.class_id,
            method_id: e.method_id,
        }
    }
}

/// The Connection.Close for a broker that went away.
pub fn broker_gone(reason: &str) -> Close {
    Close::from(FrameError::new(CONNECTION_FORCED, 0, reason))
}
