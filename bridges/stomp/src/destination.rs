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
}

const TOPIC: &str = "/topic/";
const QUEUE: &str = "/queue/";
const TEMP_QUEUE: &str = "/temp-queue/";

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
        for (prefix, make) in [
            (QUEUE, Destination::Queue as fn(String) -> Destination),
            (TEMP_QUEUE, Destination::TempQueue),
        ] {
            if let Some(name) = raw.strip_prefix(prefix) {
                if name.is_empty() || !valid_word_chars(name, false) {
                    return Err(invalid("queue names use letters, digits and . - _ : ~ @"));
                }
                return Ok(make(name.to_string()));
            }
        }
        Err(invalid("use /topic/NAME, /queue/NAME or /temp-queue/NAME"))
    }

    pub fn is_wildcard(&self) -> bool {
        matches!(self, Destination::Topic(k) if k.contains('*') || k.contains('#'))
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Topic(k) => write!(f, "{TOPIC}{k}"),
            Destination::Queue(q) => write!(f, "{QUEUE}{q}"),
            Destination::TempQueue(q) => write!(f, "{TEMP_QUEUE}{q}"),
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
    fn rejects_unknown_prefixes_and_empty_names() {
        assert!(Destination::parse("/exchange/x", false).is_err());
        assert!(Destination::parse("prices", false).is_err());
        assert!(Destination::parse("/topic/", false).is_err());
        assert!(Destination::parse("/queue/a b", false).is_err());
    }
}
