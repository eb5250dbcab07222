//! STOMP headers ↔ AMQP 0-9-1 basic properties, named the way RabbitMQ's STOMP plugin names
//! them: the standard properties have their own headers, every other header travels in the
//! AMQP `headers` table.

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use protocol_stomp::Headers;

/// STOMP frame headers that describe the frame or the session, not the message.
const FRAME_ONLY: &[&str] = &[
    "destination",
    "receipt",
    "transaction",
    "content-length",
    "subscription",
    "message-id",
    "ack",
    "id",
    "redelivered",
];

/// Headers mapped to properties (and so never copied into the AMQP headers table).
const PROPERTY_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "persistent",
    "priority",
    "correlation-id",
    "reply-to",
    "expiration",
    "amqp-message-id",
    "type",
    "app-id",
    "user-id",
    "timestamp",
];

fn short(name: &str, value: &str) -> Result<ShortString, String> {
    ShortString::try_new(value)
        .map_err(|_| format!("header {name} is longer than AMQP allows (255 bytes)"))
}

/// A STOMP `reply-to` as an AMQP `reply_to`: AMQP clients reply by publishing to a queue
/// name on the default exchange, so queue destinations become bare queue names.
fn reply_to_amqp(value: &str) -> &str {
    value
        .strip_prefix("/amq/queue/")
        .or_else(|| value.strip_prefix("/queue/"))
        .unwrap_or(value)
}

/// An AMQP `reply_to` as a STOMP `reply-to`: a bare queue name becomes `/amq/queue/NAME`,
/// a destination STOMP clients can SEND to; anything already shaped like one is kept.
fn reply_to_stomp(value: &str) -> String {
    if value.starts_with('/') {
        value.to_string()
    } else {
        format!("/amq/queue/{value}")
    }
}

/// The properties of a message a STOMP client SENDs. Errors name the offending header
/// (values RabbitMQ would answer with a channel error are refused here instead).
pub fn to_amqp(headers: &Headers) -> Result<BasicProperties, String> {
    let mut props = BasicProperties::default();
    let mut table = FieldTable::default();
    let mut seen: Vec<&str> = Vec::new();
    for (name, value) in headers.iter() {
        // Repeated headers: the first one counts (STOMP 1.2).
        if seen.contains(&name) {
            continue;
        }
        seen.push(name);
        props =
            match name {
                "content-type" => props.with_content_type(short(name, value)?),
                "content-encoding" => props.with_content_encoding(short(name, value)?),
                "persistent" => match value {
                    "true" => props.with_delivery_mode(2),
                    "false" => props.with_delivery_mode(1),
                    _ => return Err(format!("persistent must be true or false, not {value:?}")),
                },
                "priority" => props.with_priority(value.parse::<u8>().map_err(|_| {
                    format!("priority must be a number from 0 to 255, not {value:?}")
                })?),
                "correlation-id" => props.with_correlation_id(short(name, value)?),
                "reply-to" => props.with_reply_to(short(name, reply_to_amqp(value))?),
                "expiration" => {
                    // RabbitMQ closes the channel over a non-numeric expiration.
                    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(format!(
                            "expiration must be a number of milliseconds, not {value:?}"
                        ));
                    }
                    props.with_expiration(short(name, value)?)
                }
                "amqp-message-id" => props.with_message_id(short(name, value)?),
                "type" => props.with_type(short(name, value)?),
                "app-id" => props.with_app_id(short(name, value)?),
                "timestamp" => props.with_timestamp(value.parse::<u64>().map_err(|_| {
                    format!("timestamp must be seconds since the epoch, not {value:?}")
                })?),
                // RabbitMQ refuses (with a channel error) a user-id other than the connection's
                // user; the gateway's connection user is not the client, so it is not forwarded.
                "user-id" => props,
                n if FRAME_ONLY.contains(&n) => props,
                n => {
                    table.insert(
                        short("name", n)?,
                        AMQPValue::LongString(LongString::from(value)),
                    );
                    props
                }
            };
    }
    // A SEND's own `message-id` (unusual, but some clients set it) is the message's id too.
    if props.message_id().is_none() {
        if let Some(id) = headers.get("message-id") {
            props = props.with_message_id(short("message-id", id)?);
        }
    }
    if !table.inner().is_empty() {
        props = props.with_headers(table);
    }
    Ok(props)
}

fn value_to_string(v: &AMQPValue) -> Option<String> {
    Some(match v {
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        AMQPValue::ShortString(s) => s.as_str().to_string(),
        AMQPValue::Boolean(b) => b.to_string(),
        AMQPValue::ShortShortInt(n) => n.to_string(),
        AMQPValue::ShortShortUInt(n) => n.to_string(),
        AMQPValue::ShortInt(n) => n.to_string(),
        AMQPValue::ShortUInt(n) => n.to_string(),
        AMQPValue::LongInt(n) => n.to_string(),
        AMQPValue::LongUInt(n) => n.to_string(),
        AMQPValue::LongLongInt(n) => n.to_string(),
        AMQPValue::Float(n) => n.to_string(),
        AMQPValue::Double(n) => n.to_string(),
        AMQPValue::Timestamp(n) => n.to_string(),
        AMQPValue::ByteArray(b) => String::from_utf8_lossy(b.as_slice()).into_owned(),
        // Nested tables and arrays have no STOMP header form.
        _ => return None,
    })
}

/// The STOMP headers of a message delivered from RabbitMQ (the bridge adds destination,
/// subscription, message-id, ack and redelivered itself).
pub fn to_stomp(props: &BasicProperties) -> Headers {
    let mut h = Headers::new();
    if let Some(v) = props.content_type() {
        h.push("content-type", v.as_str());
    }
    if let Some(v) = props.content_encoding() {
        h.push("content-encoding", v.as_str());
    }
    if *props.delivery_mode() == Some(2) {
        h.push("persistent", "true");
    }
    if let Some(v) = props.priority() {
        h.push("priority", v.to_string());
    }
    if let Some(v) = props.correlation_id() {
        h.push("correlation-id", v.as_str());
    }
    if let Some(v) = props.reply_to() {
        h.push("reply-to", reply_to_stomp(v.as_str()));
    }
    if let Some(v) = props.expiration() {
        h.push("expiration", v.as_str());
    }
    if let Some(v) = props.message_id() {
        h.push("amqp-message-id", v.as_str());
    }
    if let Some(v) = props.kind() {
        h.push("type", v.as_str());
    }
    if let Some(v) = props.app_id() {
        h.push("app-id", v.as_str());
    }
    if let Some(v) = props.user_id() {
        h.push("user-id", v.as_str());
    }
    if let Some(v) = props.timestamp() {
        h.push("timestamp", v.to_string());
    }
    if let Some(table) = props.headers() {
        for (k, v) in table {
            let name = k.as_str();
            // A header table entry never overrides a property or a frame header.
            if PROPERTY_HEADERS.contains(&name) || FRAME_ONLY.contains(&name) {
                continue;
            }
            if let Some(v) = value_to_string(v) {
                h.push(name, v);
            }
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Headers {
        let mut h = Headers::new();
        for (k, v) in pairs {
            h.push(*k, *v);
        }
        h
    }

    #[test]
    fn standard_headers_become_properties() {
        let p = to_amqp(&headers(&[
            ("destination", "/queue/q"),
            ("receipt", "r1"),
            ("content-type", "application/json"),
            ("persistent", "true"),
            ("priority", "5"),
            ("correlation-id", "c-1"),
            ("reply-to", "/amq/queue/replies"),
            ("expiration", "60000"),
            ("amqp-message-id", "m-1"),
            ("x-trace", "abc"),
        ]))
        .unwrap();
        assert_eq!(
            p.content_type().as_ref().unwrap().as_str(),
            "application/json"
        );
        assert_eq!(*p.delivery_mode(), Some(2));
        assert_eq!(*p.priority(), Some(5));
        assert_eq!(p.correlation_id().as_ref().unwrap().as_str(), "c-1");
        assert_eq!(p.reply_to().as_ref().unwrap().as_str(), "replies");
        assert_eq!(p.expiration().as_ref().unwrap().as_str(), "60000");
        assert_eq!(p.message_id().as_ref().unwrap().as_str(), "m-1");
        let table = p.headers().as_ref().unwrap();
        assert_eq!(table.inner().len(), 1, "only user headers go to the table");
        assert_eq!(
            table.inner().get("x-trace"),
            Some(&AMQPValue::LongString("abc".into()))
        );
    }

    #[test]
    fn round_trip_keeps_what_a_client_sent() {
        let sent = headers(&[
            ("content-type", "text/plain"),
            ("persistent", "true"),
            ("correlation-id", "42"),
            ("reply-to", "/temp-queue/x"),
            ("priority", "1"),
            ("expiration", "1000"),
            ("symbol", "AAPL"),
            ("x-empty", ""),
        ]);
        let back = to_stomp(&to_amqp(&sent).unwrap());
        for (k, v) in sent.iter() {
            assert_eq!(back.get(k), Some(v), "header {k}");
        }
    }

    #[test]
    fn amqp_properties_become_headers() {
        let mut table = FieldTable::default();
        table.insert("count".into(), AMQPValue::LongInt(7));
        table.insert("flag".into(), AMQPValue::Boolean(true));
        table.insert(
            "nested".into(),
            AMQPValue::FieldTable(FieldTable::default()),
        );
        // A table entry may not pose as a frame header.
        table.insert(
            "destination".into(),
            AMQPValue::LongString("/queue/evil".into()),
        );
        let p = BasicProperties::default()
            .with_content_type("text/plain".into())
            .with_delivery_mode(2)
            .with_reply_to("amq.gen-xyz".into())
            .with_message_id("abc".into())
            .with_timestamp(1_700_000_000)
            .with_headers(table);
        let h = to_stomp(&p);
        assert_eq!(h.get("content-type"), Some("text/plain"));
        assert_eq!(h.get("persistent"), Some("true"));
        assert_eq!(h.get("reply-to"), Some("/amq/queue/amq.gen-xyz"));
        assert_eq!(h.get("amqp-message-id"), Some("abc"));
        assert_eq!(h.get("timestamp"), Some("1700000000"));
        assert_eq!(h.get("count"), Some("7"));
        assert_eq!(h.get("flag"), Some("true"));
        assert_eq!(h.get("nested"), None);
        assert_eq!(h.get("destination"), None);
    }

    #[test]
    fn values_rabbitmq_would_close_the_channel_over_are_refused() {
        assert!(to_amqp(&headers(&[("expiration", "soon")])).is_err());
        assert!(to_amqp(&headers(&[("priority", "high")])).is_err());
        assert!(to_amqp(&headers(&[("persistent", "yes")])).is_err());
        let long = "x".repeat(300);
        assert!(to_amqp(&headers(&[("correlation-id", long.as_str())])).is_err());
        // user-id would have to match the gateway's own AMQP user: dropped, not forwarded.
        let p = to_amqp(&headers(&[("user-id", "mallory")])).unwrap();
        assert!(p.user_id().is_none());
    }

    #[test]
    fn first_of_repeated_headers_wins() {
        let p = to_amqp(&headers(&[("x-a", "1"), ("x-a", "2")])).unwrap();
        assert_eq!(
            p.headers().as_ref().unwrap().inner().get("x-a"),
            Some(&AMQPValue::LongString("1".into()))
        );
    }
}
