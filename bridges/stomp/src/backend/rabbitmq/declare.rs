//! Declaring a `/queue/` destination's durable queue with the type `queue_types` gives it,
//! and turning RabbitMQ's refusal of a type mismatch (`PRECONDITION_FAILED - inequivalent
//! arg 'x-queue-type'`, e.g. a quorum declare of an existing classic queue) into an ERROR a
//! client and its operator can act on.

use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::backend::{BackendError, BackendErrorKind};
use crate::queue_types::QueueType;

/// `queue.declare` arguments for a queue of type `queue_type` (none: the broker's default).
pub fn arguments(queue_type: Option<QueueType>) -> FieldTable {
    let mut args = FieldTable::default();
    if let Some(t) = queue_type {
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString(LongString::from(t.as_str())),
        );
    }
    args
}

/// `e` as the client should read it when it is a queue type mismatch.
pub fn explain(
    e: BackendError,
    queue: &str,
    destination: &str,
    queue_type: Option<QueueType>,
) -> BackendError {
    if e.kind != BackendErrorKind::Refused || !e.message.contains("inequivalent arg 'x-queue-type'")
    {
        return e;
    }
    let wanted = match queue_type {
        Some(t) => format!("as a {} queue (queue_types)", t.as_str()),
        None => "without a queue type (no queue_types entry matches)".into(),
    };
    let rabbit = e
        .message
        .split_once("PRECONDITION_FAILED")
        .map(|(_, rest)| format!("PRECONDITION_FAILED{rest}"))
        .unwrap_or(e.message.clone());
    BackendError::refused(format!(
        "{destination}: queue '{queue}' already exists with another type than the gateway \
         declares it {wanted}; delete the queue or change queue_types (RabbitMQ: {rabbit})"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_type_mismatch_names_the_queue_and_the_setting() {
        let e = BackendError::refused(
            "declaring /queue/orders: PRECONDITION_FAILED - inequivalent arg 'x-queue-type' for \
             queue 'orders' in vhost '/': received the value 'quorum' of type 'longstr' but \
             current is none",
        );
        let m = explain(e, "orders", "/queue/orders", Some(QueueType::Quorum)).message;
        assert!(
            m.starts_with("/queue/orders: queue 'orders' already exists with another type"),
            "{m}"
        );
        assert!(m.contains("as a quorum queue (queue_types)"), "{m}");
        assert!(
            m.contains("(RabbitMQ: PRECONDITION_FAILED - inequivalent arg"),
            "{m}"
        );
    }

    #[test]
    fn other_refusals_pass_through() {
        let e = BackendError::refused("declaring /queue/a: ACCESS_REFUSED - no");
        assert_eq!(
            explain(e, "a", "/queue/a", Some(QueueType::Quorum)).message,
            "declaring /queue/a: ACCESS_REFUSED - no"
        );
        assert!(arguments(None).inner().is_empty());
        assert_eq!(
            arguments(Some(QueueType::Quorum))
                .inner()
                .get("x-queue-type"),
            Some(&AMQPValue::LongString(LongString::from("quorum")))
        );
    }
}
