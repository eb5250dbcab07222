//! `queue_types`: which kind of RabbitMQ queue a `/queue/` destination is declared as, by
//! destination prefix, e.g. `queue_types = { "/queue/orders." = "quorum" }`. Quorum queues
//! are replicated over the cluster's nodes (Raft), so a message RabbitMQ confirmed (and a
//! RECEIPT was sent for) survives the loss of a node; classic queues live on one node.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Classic,
    Quorum,
}

impl QueueType {
    /// The `x-queue-type` argument.
    pub fn as_str(self) -> &'static str {
        match self {
            QueueType::Classic => "classic",
            QueueType::Quorum => "quorum",
        }
    }
}

/// Prefix → type; the longest matching prefix wins. No match: declared without an
/// `x-queue-type` (the broker's default, classic on RabbitMQ 3.x).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct QueueTypes(BTreeMap<String, QueueType>);

impl QueueTypes {
    pub fn validate(&self, rabbitmq: bool) -> Result<(), (String, String)> {
        if self.0.is_empty() {
            return Ok(());
        }
        if !rabbitmq {
            return Err((
                "queue_types".into(),
                "queue types apply to a RabbitMQ (amqp://) backend".into(),
            ));
        }
        for prefix in self.0.keys() {
            if !prefix.starts_with("/queue/") {
                return Err((
                    format!("queue_types.{prefix:?}"),
                    "a queue type applies to /queue/ destinations: use a prefix such as \"/queue/\" or \"/queue/orders.\"".into(),
                ));
            }
        }
        Ok(())
    }

    pub fn for_destination(&self, destination: &str) -> Option<QueueType> {
        self.0
            .iter()
            .filter(|(prefix, _)| destination.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, t)| *t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn types(v: serde_json::Value) -> QueueTypes {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn the_longest_prefix_wins() {
        let t = types(serde_json::json!({ "/queue/": "quorum", "/queue/scratch.": "classic" }));
        assert!(t.validate(true).is_ok());
        assert_eq!(t.for_destination("/queue/orders"), Some(QueueType::Quorum));
        assert_eq!(
            t.for_destination("/queue/scratch.1"),
            Some(QueueType::Classic)
        );
        assert_eq!(t.for_destination("/topic/x"), None);
        assert_eq!(QueueTypes::default().for_destination("/queue/a"), None);
    }

    #[test]
    fn bad_entries_are_refused() {
        let (key, msg) = types(serde_json::json!({ "/topic/": "quorum" }))
            .validate(true)
            .unwrap_err();
        assert_eq!(key, "queue_types.\"/topic/\"");
        assert!(msg.contains("/queue/"), "{msg}");
        let (_, msg) = types(serde_json::json!({ "/queue/": "quorum" }))
            .validate(false)
            .unwrap_err();
        assert!(msg.contains("RabbitMQ"), "{msg}");
        assert!(
            serde_json::from_value::<QueueTypes>(serde_json::json!({ "/queue/": "mirrored" }))
                .is_err()
        );
    }
}
