//! Where a STOMP destination lives in RabbitMQ, following the RabbitMQ STOMP plugin:
//! `/topic/K` is routing key K on `amq.topic`; `/queue/Q` a durable queue Q (declared on
//! first use); `/amq/queue/Q` an existing queue; `/exchange/E/K` exchange E with key K;
//! `/temp-queue/N` an exclusive, auto-deleted queue private to one session.

use crate::backend::names::BrokerNames;
use crate::destination::Destination;

pub const TOPIC_EXCHANGE: &str = "amq.topic";

/// How a queue is made sure to exist before use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declare {
    /// Used as it is; a missing queue is the client's error (`/amq/queue/`).
    No,
    /// Declared durable (`/queue/`).
    Durable,
    /// Declared exclusive and auto-deleted, owned by the declaring connection (`/temp-queue/`).
    Temporary,
}

/// Where a SEND goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendTarget {
    pub exchange: String,
    pub routing_key: String,
    /// Queue to declare first (sends to queues go through the default exchange).
    pub queue: Option<(String, Declare)>,
    /// Unroutable messages come back as errors: a queue destination that routes nowhere
    /// would otherwise be confirmed and lost.
    pub mandatory: bool,
}

/// What a SUBSCRIBE consumes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscribeTarget {
    /// A binding shared by every local subscriber with the same (exchange, key).
    Shared(Binding),
    /// A queue consumed by this subscriber alone (competing consumers, acks).
    Queue { name: String, declare: Declare },
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Binding {
    pub exchange: String,
    pub key: String,
}

impl Binding {
    /// The `destination` header of messages that arrive through this binding with
    /// routing key `rk`.
    pub fn destination_for(&self, rk: &str) -> String {
        if self.exchange == TOPIC_EXCHANGE {
            format!("/topic/{rk}")
        } else if rk.is_empty() {
            format!("/exchange/{}", self.exchange)
        } else {
            format!("/exchange/{}/{rk}", self.exchange)
        }
    }
}

/// What every queue the gateway names on RabbitMQ starts with.
pub const QUEUE_PREFIX: &str = "stomp-gw";

/// The broker queue behind `/temp-queue/NAME` for one session: named after the gateway
/// (node and random part) and the session, and a valid `/amq/queue/` name so clients of
/// any gateway on the broker (or of RabbitMQ's own STOMP plugin) can reply to it.
pub fn temp_queue_name(names: &BrokerNames, session: u64, name: &str) -> String {
    names.temp_queue(QUEUE_PREFIX, session, name)
}

/// The queue of shared upstream topic subscription `n` (one per pattern per gateway).
pub fn topic_queue_name(names: &BrokerNames, n: u64) -> String {
    names.topic_queue(QUEUE_PREFIX, n)
}

pub fn for_send(dest: &Destination, temp_queue: impl Fn(&str) -> String) -> SendTarget {
    let to_queue = |name: String, declare: Declare| SendTarget {
        exchange: String::new(),
        routing_key: name.clone(),
        queue: (declare != Declare::No).then_some((name, declare)),
        mandatory: true,
    };
    match dest {
        Destination::Topic(key) => SendTarget {
            exchange: TOPIC_EXCHANGE.into(),
            routing_key: key.clone(),
            queue: None,
            mandatory: false,
        },
        Destination::Exchange { exchange, key } => SendTarget {
            exchange: exchange.clone(),
            routing_key: key.clone(),
            queue: None,
            mandatory: false,
        },
        Destination::Queue(q) => to_queue(q.clone(), Declare::Durable),
        Destination::AmqQueue(q) => to_queue(q.clone(), Declare::No),
        // The session's own temp queue exists once it asked for replies on it; sending
        // to one that does not exist is refused as unroutable.
        Destination::TempQueue(n) => to_queue(temp_queue(n), Declare::No),
    }
}

pub fn for_subscribe(dest: &Destination, temp_queue: impl Fn(&str) -> String) -> SubscribeTarget {
    match dest {
        Destination::Topic(pattern) => SubscribeTarget::Shared(Binding {
            exchange: TOPIC_EXCHANGE.into(),
            key: pattern.clone(),
        }),
        Destination::Exchange { exchange, key } => SubscribeTarget::Shared(Binding {
            exchange: exchange.clone(),
            key: key.clone(),
        }),
        Destination::Queue(q) => SubscribeTarget::Queue {
            name: q.clone(),
            declare: Declare::Durable,
        },
        Destination::AmqQueue(q) => SubscribeTarget::Queue {
            name: q.clone(),
            declare: Declare::No,
        },
        Destination::TempQueue(n) => SubscribeTarget::Queue {
            name: temp_queue(n),
            declare: Declare::Temporary,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str, sub: bool) -> Destination {
        Destination::parse(s, sub).unwrap()
    }

    fn tmp(n: &str) -> String {
        temp_queue_name(&BrokerNames::with_random("gw-a", 1), 7, n)
    }

    #[test]
    fn topics_are_keys_on_amq_topic() {
        let t = for_send(&parse("/topic/prices.AAPL", false), tmp);
        assert_eq!(t.exchange, "amq.topic");
        assert_eq!(t.routing_key, "prices.AAPL");
        assert_eq!(t.queue, None);
        assert!(!t.mandatory, "a topic nobody listens to is not an error");
        assert_eq!(
            for_subscribe(&parse("/topic/prices.*", true), tmp),
            SubscribeTarget::Shared(Binding {
                exchange: "amq.topic".into(),
                key: "prices.*".into()
            })
        );
    }

    #[test]
    fn queues_go_through_the_default_exchange() {
        let q = for_send(&parse("/queue/orders", false), tmp);
        assert_eq!(
            (q.exchange.as_str(), q.routing_key.as_str()),
            ("", "orders")
        );
        assert_eq!(q.queue, Some(("orders".into(), Declare::Durable)));
        assert!(q.mandatory);
        let a = for_send(&parse("/amq/queue/existing", false), tmp);
        assert_eq!(a.routing_key, "existing");
        assert_eq!(a.queue, None, "/amq/queue/ is never declared");
        assert_eq!(
            for_subscribe(&parse("/amq/queue/existing", true), tmp),
            SubscribeTarget::Queue {
                name: "existing".into(),
                declare: Declare::No
            }
        );
    }

    #[test]
    fn exchanges_and_temp_queues() {
        let e = for_send(&parse("/exchange/amq.direct/k", false), tmp);
        assert_eq!(
            (e.exchange.as_str(), e.routing_key.as_str()),
            ("amq.direct", "k")
        );
        assert_eq!(
            for_subscribe(&parse("/temp-queue/replies", true), tmp),
            SubscribeTarget::Queue {
                name: "stomp-gw.gw-a.000000000001.7.replies".into(),
                declare: Declare::Temporary
            }
        );
        // The rewritten reply-to must parse as a destination other clients can SEND to.
        let addr = format!("/amq/queue/{}", tmp("replies"));
        assert_eq!(
            Destination::parse(&addr, false),
            Ok(Destination::AmqQueue(
                "stomp-gw.gw-a.000000000001.7.replies".into()
            ))
        );
    }

    #[test]
    fn delivered_destinations() {
        let topic = Binding {
            exchange: "amq.topic".into(),
            key: "prices.*".into(),
        };
        assert_eq!(topic.destination_for("prices.IBM"), "/topic/prices.IBM");
        let ex = Binding {
            exchange: "logs".into(),
            key: String::new(),
        };
        assert_eq!(ex.destination_for(""), "/exchange/logs");
        assert_eq!(ex.destination_for("a"), "/exchange/logs/a");
    }
}
