//! The `backend` setting, parsed once when the settings are read: which broker, and where.

use std::fmt;

use lapin::uri::AMQPUri;
use serde::Deserialize;

use super::rabbitmq;
use super::stomp_broker::{self, Endpoint};

#[derive(Clone, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum BackendUri {
    /// The in-process broker.
    #[default]
    Embedded,
    /// `amqp://user:pass@host:port/vhost`, or `amqps://` for TLS; a cluster's nodes as a
    /// comma-separated list of such URIs.
    RabbitMq(Vec<AMQPUri>),
    /// `stomp://user:pass@host:port[/vhost]` (`stomp+ssl://` or `stomps://` for TLS):
    /// ActiveMQ, Artemis or any STOMP 1.2 broker.
    StompBroker(Endpoint),
}

impl BackendUri {
    pub fn is_embedded(&self) -> bool {
        matches!(self, BackendUri::Embedded)
    }

    /// The URI asks for TLS (`amqps://`, `stomp+ssl://`, `stomps://`).
    pub fn is_tls(&self) -> bool {
        match self {
            BackendUri::Embedded => false,
            // Every node has the same scheme (checked when parsed).
            BackendUri::RabbitMq(nodes) => nodes[0].scheme == lapin::uri::AMQPScheme::AMQPS,
            BackendUri::StompBroker(e) => e.secure,
        }
    }
}

impl TryFrom<String> for BackendUri {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        let scheme = raw.split_once("://").map(|(s, _)| s);
        match (raw.as_str(), scheme) {
            ("embedded", _) => Ok(BackendUri::Embedded),
            (_, Some("amqp" | "amqps")) => {
                rabbitmq_pool::parse_nodes(&raw, rabbitmq::parse_uri).map(BackendUri::RabbitMq)
            }
            (_, Some("stomp" | "stomp+ssl" | "stomps")) => {
                stomp_broker::parse_uri(&raw).map(BackendUri::StompBroker)
            }
            _ => Err(format!(
                "unknown backend {raw:?}: use \"embedded\", \"amqp://user:pass@host:5672/vhost\" \
                 (RabbitMQ) or \"stomp://user:pass@host:61613\" (a STOMP broker)"
            )),
        }
    }
}

/// Never prints a password.
impl fmt::Debug for BackendUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendUri::Embedded => f.write_str("embedded"),
            BackendUri::RabbitMq(nodes) => {
                for (i, u) in nodes.iter().enumerate() {
                    write!(
                        f,
                        "{}{}://{}@{}:{}/{}",
                        if i > 0 { "," } else { "" },
                        if self.is_tls() { "amqps" } else { "amqp" },
                        u.authority.userinfo.username,
                        u.authority.host,
                        u.authority.port,
                        u.vhost
                    )?;
                }
                Ok(())
            }
            BackendUri::StompBroker(e) => write!(f, "{e:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: &str) -> Result<BackendUri, String> {
        BackendUri::try_from(raw.to_string())
    }

    #[test]
    fn each_scheme_picks_its_backend() {
        assert!(parse("embedded").unwrap().is_embedded());
        assert!(matches!(
            parse("amqp://u:p@127.0.0.1:5672/%2f"),
            Ok(BackendUri::RabbitMq(_))
        ));
        assert!(matches!(
            parse("stomp://u:p@127.0.0.1:61613"),
            Ok(BackendUri::StompBroker(_))
        ));
    }

    #[test]
    fn a_rabbitmq_cluster_is_a_list_of_uris() {
        let Ok(BackendUri::RabbitMq(nodes)) =
            parse("amqp://u:p@h1:5672/%2f, amqp://u:p@h2:5673/%2f")
        else {
            panic!("a list of amqp:// URIs is a RabbitMQ backend");
        };
        assert_eq!(rabbitmq_pool::endpoints(&nodes), "h1:5672, h2:5673");
        // Each node gets the gateway's heart-beat default.
        assert!(nodes.iter().all(|n| n.query.heartbeat == Some(10)));
        let shown = format!(
            "{:?}",
            parse("amqp://u:secret@h1/v,amqp://u:secret@h2/v").unwrap()
        );
        assert_eq!(shown, "amqp://u@h1:5672/v,amqp://u@h2:5672/v");
        assert!(parse("amqp://u:p@h1/v,stomp://h2:61613").is_err());
    }

    #[test]
    fn an_unknown_backend_names_every_choice() {
        let e = parse("kafka://x").unwrap_err();
        assert!(
            e.contains("embedded") && e.contains("amqp://") && e.contains("stomp://"),
            "{e}"
        );
    }

    #[test]
    fn tls_schemes_are_backends_too() {
        for raw in ["amqps://u:p@h/v", "stomp+ssl://h", "stomps://h:61614"] {
            assert!(parse(raw).unwrap().is_tls(), "{raw}");
        }
        for raw in ["embedded", "amqp://u:p@h/v", "stomp://h"] {
            assert!(!parse(raw).unwrap().is_tls(), "{raw}");
        }
        assert!(format!("{:?}", parse("amqps://u:p@h/v").unwrap()).starts_with("amqps://"));
    }

    #[test]
    fn debug_hides_passwords() {
        for raw in [
            "amqp://u:secret@h:5672/v",
            "amqps://u:secret@h:5671/v",
            "stomp://u:secret@h:61613",
        ] {
            let shown = format!("{:?}", parse(raw).unwrap());
            assert!(!shown.contains("secret"), "{shown}");
        }
    }
}
