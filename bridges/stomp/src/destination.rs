//! STOMP destinations this bridge understands, named the way RabbitMQ's STOMP plugin names
//! them so clients can move between the two unchanged.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Destination {
    /// `/topic/K`: fan-out to every subscriber whose pattern matches routing key K.
    Topic(String),
    /// `/queue/Q`: competing consumers.
    Queue(String),
    /// `/temp-queue/N`: a queue private to the session that names it (request/reply).
    TempQueue(String),
    /// `/amq/queue/Q`: an existing broker queue, used as it is (never declared).
    AmqQueue(String),
    /// `/exchange/E/K`: broker exchange E with routing key (or binding pattern) K.
    Exchange { exchange: String, key: String },
}

const TOPIC: &str = "/topic/";
const QUEUE: &str = "/queue/";
const TEMP_QUEUE: &str = "/temp-queue/";
const AMQ_QUEUE: &str = "/amq/queue/";
const EXCHANGE: &str = "/exchange/";

fn valid_word_chars(s: &str, wildcards: bool) -> bool {
    s.chars().all(|c| {
        c.is_alphanumeric()
            || matches!(c, '.' | '-' | '_' | ':' | '~' | '@')
            || (wildcards && matches!(c, '*' | '#'))
    })
}

impl Destination {
    /// Parse a destination; `for_subscribe` allows topic wildcards (`*` one word, `#` any).
    pub fn parse(raw: &str, for_subscribe: bool) -> Result<Destination, String> {
        let invalid = |why: &str| format!("invalid destination {raw:?}: {why}");
        if let Some(key) = raw.strip_prefix(TOPIC) {
            if key.is_empty() {
                return Err(invalid("empty topic name"));
            }
            if !valid_word_chars(key, for_subscribe) {
                return Err(invalid(if for_subscribe {
                    "topic names use letters, digits and . - _ : ~ @, with * and # as whole words"
                } else {
                    "wildcards (* #) are only allowed in SUBSCRIBE"
                }));
            }
            if for_subscribe
                && key
                    .split('.')
                    .any(|w| (w.contains('*') || w.contains('#')) && w.len() > 1)
            {
                return Err(invalid("* and # must be whole dot-separated words"));
            }
            return Ok(Destination::Topic(key.to_string()));
        }
        if let Some(rest) = raw.strip_prefix(EXCHANGE) {
            // `/exchange/E` alone means E with an empty routing key (fanout exchanges).
            let (exchange, key) = rest.split_once('/').unwrap_or((rest, ""));
            if exchange.is_empty() || !valid_word_chars(exchange, false) {
                return Err(invalid(
                    "exchange names use letters, digits and . - _ : ~ @",
                ));
            }
            if !valid_word_chars(key, for_subscribe) {
                return Err(invalid(if for_subscribe {
                    "routing keys use letters, digits and . - _ : ~ @, with * and # in SUBSCRIBE"
                } else {
                    "routing keys use letters, digits and . - _ : ~ @ (wildcards only in SUBSCRIBE)"
                }));
            }
            return Ok(Destination::Exchange {
                exchange: exchange.to_string(),
                key: key.to_string(),
            });
        }
        for (prefix, make) in [
            (QUEUE, Destination::Queue as fn(String) -> Destination),
            (TEMP_QUEUE, Destination::TempQueue),
            (AMQ_QUEUE, Destination::AmqQueue),
        ] {
            if let Some(name) = raw.strip_prefix(prefix) {
                if name.is_empty() || !valid_word_chars(name, false) {
                    return Err(invalid("queue names use letters, digits and . - _ : ~ @"));
                }
                return Ok(make(name.to_string()));
            }
        }
        Err(invalid(
            "use /topic/NAME, /queue/NAME, /temp-queue/NAME, /amq/queue/NAME or /exchange/NAME/KEY",
        ))
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Topic(k) => write!(f, "{TOPIC}{k}"),
            Destination::Queue(q) => write!(f, "{QUEUE}{q}"),
            Destination::TempQueue(q) => write!(f, "{TEMP_QUEUE}{q}"),
            Destination::AmqQueue(q) => write!(f, "{AMQ_QUEUE}{q}"),
            Destination::Exchange { exchange, key } if key.is_empty() => {
                write!(f, "{EXCHANGE}{exchange}")
            }
            Destination::Exchange { exchange, key } => write!(f, "{EXCHANGE}{exchange}/{key}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds() {
        assert_eq!(
            Destination::parse("/topic/prices.AAPL", false),
            Ok(Destination::Topic("prices.AAPL".into()))
        );
        assert_eq!(
            Destination::parse("/queue/orders", false),
            Ok(Destination::Queue("orders".into()))
        );
        assert_eq!(
            Destination::parse("/temp-queue/r1", true),
            Ok(Destination::TempQueue("r1".into()))
        );
    }

    #[test]
    fn wildcards_only_in_subscribe_and_as_whole_words() {
        assert!(Destination::parse("/topic/prices.*", true).is_ok());
        assert!(Destination::parse("/topic/#", true).is_ok());
        assert!(Destination::parse("/topic/prices.*", false).is_err());
        assert!(Destination::parse("/topic/pri*", true).is_err());
        assert!(Destination::parse("/queue/a*", true).is_err());
    }

    #[test]
    fn parses_rabbitmq_queue_and_exchange_forms() {
        assert_eq!(
            Destination::parse("/amq/queue/existing", false),
            Ok(Destination::AmqQueue("existing".into()))
        );
        let e = Destination::parse("/exchange/amq.direct/k1", false).unwrap();
        assert_eq!(
            e,
            Destination::Exchange {
                exchange: "amq.direct".into(),
                key: "k1".into()
            }
        );
        assert_eq!(e.to_string(), "/exchange/amq.direct/k1");
        let fanout = Destination::parse("/exchange/logs", false).unwrap();
        assert_eq!(fanout.to_string(), "/exchange/logs");
        assert!(Destination::parse("/exchange/amq.topic/a.*", true).is_ok());
        assert!(Destination::parse("/exchange/amq.topic/a.*", false).is_err());
        assert!(Destination::parse("/exchange//k", false).is_err());
        assert!(Destination::parse("/amq/queue/", false).is_err());
    }

    #[test]
    fn rejects_unknown_prefixes_and_empty_names() {
        assert!(Destination::parse("/reply-queue/x", false).is_err());
        assert!(Destination::parse("prices", false).is_err());
        assert!(Destination::parse("/topic/", false).is_err());
        assert!(Destination::parse("/queue/a b", false).is_err());
    }
}
