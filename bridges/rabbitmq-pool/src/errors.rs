//! lapin errors as a bridge needs them: refused (the client asked for something the broker
//! said no to) or unavailable (the broker is gone), with RabbitMQ's own words.

use lapin::protocol::AMQPErrorKind;
use lapin::ErrorKind;

use crate::Error;

/// `what` says what was being done, e.g. `"subscribing to /queue/a"`.
pub fn from_lapin(e: &lapin::Error, what: &str) -> Error {
    match e.kind() {
        // Channel-level errors are answers to what the client asked (404, 403, 406, ...).
        ErrorKind::ProtocolError(amqp) if matches!(amqp.kind(), AMQPErrorKind::Soft(_)) => {
            Error::refused(format!("{what}: {}", amqp.get_message()))
        }
        ErrorKind::ProtocolError(amqp) => Error::unavailable(format!(
            "{what}: RabbitMQ closed the connection ({})",
            amqp.get_message()
        )),
        // Said in so many words: lapin's own text alone ("IO error: Connection reset by
        // peer") does not tell a client what failed.
        ErrorKind::IOError(_)
        | ErrorKind::InvalidConnectionState(_)
        | ErrorKind::MissingHeartbeatError => {
            Error::unavailable(format!("{what}: lost the connection to RabbitMQ ({e})"))
        }
        _ => Error::unavailable(format!("{what}: RabbitMQ failed ({e})")),
    }
}

/// Why a connection attempt failed, in a form fit for logs and ERROR frames.
pub fn describe_connect(e: &lapin::Error) -> String {
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => amqp.get_message().to_string(),
        ErrorKind::IOError(io) => io.to_string(),
        _ => e.to_string(),
    }
}

/// True when the broker answered a connection attempt with a refusal (bad login, no
/// access to the vhost), as opposed to not answering.
pub fn is_refusal(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(_))
}

/// Longest wait for the broker's answer to one operation (open a channel, declare, bind,
/// consume, ack). A request sent just as a connection dies may never be answered.
pub const RPC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `fut` bounded by [`RPC_TIMEOUT`]; `what` names the operation for the error.
pub async fn timed<T, E: From<Error>>(
    what: impl FnOnce() -> String,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, E> {
    match tokio::time::timeout(RPC_TIMEOUT, fut).await {
        Ok(r) => r,
        Err(_) => Err(E::from(Error::unavailable(format!(
            "{}: no answer from RabbitMQ within {RPC_TIMEOUT:?}",
            what()
        )))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn a_lost_connection_names_rabbitmq() {
        let io = std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "Connection reset by peer",
        );
        let e = from_lapin(
            &lapin::Error::from(io),
            "acknowledging a message of /queue/a",
        );
        assert_eq!(e.kind, ErrorKind::Unavailable);
        assert!(
            e.message.starts_with(
                "acknowledging a message of /queue/a: lost the connection to RabbitMQ ("
            ),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("Connection reset by peer"),
            "{}",
            e.message
        );
    }
}
