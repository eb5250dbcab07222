//! The gateway as the broker, up to Connection.Open-Ok: the protocol header (other versions
//! are answered with ours and a close, spec section 4.2.2), Start / Start-Ok with SASL PLAIN
//! or AMQPLAIN, Tune / Tune-Ok, Open / Open-Ok.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bridge_api::{
    BridgeError, CancellationToken, EndKind, Incoming, LoginRefused, Principal, StopReason,
};
use protocol_amqp::protocol::connection;
use protocol_amqp::{
    parse_protocol_header, AMQPClass, AMQPValue, FieldTable, Frame, Limits, LongString,
    ProtocolHeader, ACCESS_REFUSED, COMMAND_INVALID, CONNECTION_FORCED, FRAME_ERROR,
    FRAME_MIN_SIZE, NOT_ALLOWED, PROTOCOL_HEADER,
};
use rabbitmq_pool::Pool;

use super::fault::{Close, Fault};
use super::AmqpSession;
use crate::settings::Credentials;

/// A client that opens a WebSocket and says nothing is dropped after this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl AmqpSession<'_> {
    /// `Ok(true)` once the connection is open, `Ok(false)` if the client left first.
    pub(super) async fn handshake(
        &mut self,
        incoming: &mut Incoming,
        shutdown: &CancellationToken,
    ) -> Result<bool, BridgeError> {
        let steps = async {
            if !self.header(incoming).await? {
                return Ok(false);
            }
            self.send_method(0, start()).await;
            self.start_sent = true;
            let Some(start_ok) = self.next_method(incoming, "connection.start-ok").await? else {
                return Ok(false);
            };
            let AMQPClass::Connection(connection::AMQPMethod::StartOk(ok)) = start_ok else {
                return Err(unexpected(&start_ok, "connection.start-ok"));
            };
            self.login(ok).await?;
            let s = &self.b.settings;
            let tune = connection::Tune {
                channel_max: s.max_channels,
                frame_max: s.frame_max,
                heartbeat: s.heartbeat,
            };
            self.send_method(0, AMQPClass::Connection(connection::AMQPMethod::Tune(tune)))
                .await;
            let Some(tune_ok) = self.next_method(incoming, "connection.tune-ok").await? else {
                return Ok(false);
            };
            let AMQPClass::Connection(connection::AMQPMethod::TuneOk(t)) = tune_ok else {
                return Err(unexpected(&tune_ok, "connection.tune-ok"));
            };
            self.tune(t)?;
            let Some(open) = self.next_method(incoming, "connection.open").await? else {
                return Ok(false);
            };
            let AMQPClass::Connection(connection::AMQPMethod::Open(o)) = open else {
                return Err(unexpected(&open, "connection.open"));
            };
            self.check_vhost(o.virtual_host.as_str())?;
            self.send_method(
                0,
                AMQPClass::Connection(connection::AMQPMethod::OpenOk(connection::OpenOk {})),
            )
            .await;
            Ok(true)
        };
        let outcome = tokio::select! {
            r = tokio::time::timeout(HANDSHAKE_TIMEOUT, steps) => Some(match r {
                Ok(r) => r,
                Err(_) => Err(Refusal::Quiet(BridgeError::client(format!(
                    "no AMQP handshake within {HANDSHAKE_TIMEOUT:?}")).with_end(EndKind::PolicyViolation))),
            }),
            _ = shutdown.cancelled() => None,
        };
        let Some(outcome) = outcome else {
            // Before Connection.Start there is no way to say why; after it, there is.
            return match self.control.stop_reason() {
                Some(r) if r != StopReason::Shutdown && self.start_sent => {
                    self.close_stopped(&r, incoming).await.map(|()| false)
                }
                _ => Ok(false),
            };
        };
        match outcome {
            Ok(open) => Ok(open),
            Err(Refusal::Quiet(e)) => {
                self.out.end(e.end_kind(), e.message().to_string()).await;
                Err(e)
            }
            Err(Refusal::Close(f)) => Err(self.close_connection(f, incoming).await),
        }
    }

    /// The protocol header; false if the client left before sending one.
    async fn header(&mut self, incoming: &mut Incoming) -> Result<bool, Refusal> {
        loop {
            if let Some(h) = parse_protocol_header(&mut self.buf) {
                let reason = match h {
                    ProtocolHeader::Amqp091 => return Ok(true),
                    ProtocolHeader::Amqp10 { .. } => {
                        "AMQP 1.0 is not served here: this endpoint speaks AMQP 0-9-1"
                    }
                    ProtocolHeader::OtherVersion(_) => {
                        "unsupported AMQP version: this endpoint speaks AMQP 0-9-1"
                    }
                    ProtocolHeader::NotAmqp => {
                        "not an AMQP protocol header: this endpoint speaks AMQP 0-9-1"
                    }
                };
                // Our header tells the client which version we speak (spec 4.2.2).
                self.send(bytes::Bytes::from_static(&PROTOCOL_HEADER)).await;
                return Err(Refusal::Quiet(
                    BridgeError::client(reason).with_end(EndKind::ProtocolError),
                ));
            }
            match incoming.recv().await {
                Some(m) => self.buf.extend_from_slice(&m.payload()),
                None => return Ok(false),
            }
        }
    }

    /// The next method on channel 0 during the handshake; heart-beats are skipped.
    async fn next_method(
        &mut self,
        incoming: &mut Incoming,
        expected: &str,
    ) -> Result<Option<AMQPClass>, Refusal> {
        loop {
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(Frame::Heartbeat)) => continue,
                Ok(Some(Frame::Method(0, m))) => {
                    self.b.metrics.method_in(m.get_amqp_class_id());
                    return Ok(Some(*m));
                }
                Ok(Some(_)) => {
                    return Err(Refusal::Close(Fault::connection(
                        COMMAND_INVALID,
                        format!("expected {expected} on channel 0"),
                    )))
                }
                Ok(None) => {}
                Err(e) => return Err(Refusal::Close(Fault::Connection(Close::from(e)))),
            }
            match incoming.recv().await {
                Some(m) => self.buf.extend_from_slice(&m.payload()),
                None => return Ok(None),
            }
        }
    }

    async fn login(&mut self, ok: connection::StartOk) -> Result<(), Refusal> {
        let mechanism = ok.mechanism.as_str().to_string();
        let Some((user, pass)) = credentials(&mechanism, ok.response.as_bytes()) else {
            self.b.metrics.logins_refused.increment(1);
            return Err(refuse(format!(
                "ACCESS_REFUSED - unsupported or malformed {mechanism} login (PLAIN and AMQPLAIN are offered)"
            )));
        };
        let refused = || {
            format!("ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism}")
        };
        let mut realm_login = false;
        let principal: Option<Principal> =
            match (&self.info.principal, self.b.settings.credentials) {
                // The handshake already said who this is; a SASL user may only repeat it.
                (Some(p), _) if user.is_empty() || user == p.name => Some(p.clone()),
                (_, Credentials::PassThrough) => None,
                (_, Credentials::Service) => {
                    match self.b.credentials.check_login(&user, &pass).await {
                        Ok(p) => {
                            realm_login = true;
                            // The gateway's session span declared it empty for this moment.
                            tracing::Span::current()
                                .record("principal", tracing::field::display(&p.name));
                            Some(p)
                        }
                        Err(LoginRefused::Invalid) => {
                            self.b.metrics.logins_refused.increment(1);
                            return Err(refuse(refused()));
                        }
                        // Not the client's fault: a hard close it may retry, as when the broker
                        // is unavailable.
                        Err(LoginRefused::Busy) => return Err(Refusal::Close(Fault::connection(
                            CONNECTION_FORCED,
                            "the gateway is checking too many logins at once; try again shortly",
                        ))),
                    }
                }
            };
        if self.b.settings.credentials == Credentials::PassThrough {
            let nodes = rabbitmq_pool::as_user(&self.b.nodes, &user, &pass);
            let name = format!(
                "gateway amqp {} session {} (node {})",
                self.b.service, self.info.id, self.b.node
            );
            let start = self.b.next_node.fetch_add(1, Ordering::Relaxed);
            match rabbitmq_pool::connect_any(&nodes, start, self.b.tls.as_ref(), &name).await {
                Ok((conn, i)) => {
                    let uri = nodes[i].clone();
                    self.broker = rabbitmq_pool::endpoint(&uri);
                    let pool = Pool::single(conn, uri, name, self.b.metrics.pool.clone(), |_| {});
                    self.pool = Some(pool);
                    self.own_pool = true;
                }
                Err(e) if rabbitmq_pool::is_refusal(&e) => {
                    self.b.metrics.logins_refused.increment(1);
                    return Err(refuse(format!(
                        "ACCESS_REFUSED - RabbitMQ refused the login for {user:?}: {}",
                        rabbitmq_pool::describe_connect(&e)
                    )));
                }
                Err(e) => {
                    return Err(Refusal::Close(Fault::connection(
                        CONNECTION_FORCED,
                        format!(
                            "RabbitMQ at {} is unavailable ({})",
                            self.broker,
                            rabbitmq_pool::describe_connect(&e)
                        ),
                    )))
                }
            }
        } else {
            let pool = self
                .b
                .pool
                .clone()
                .expect("service credentials have a pool");
            if !pool.is_up() {
                return Err(Refusal::Close(Fault::connection(
                    CONNECTION_FORCED,
                    format!(
                        "RabbitMQ at {} is unavailable ({})",
                        self.broker,
                        pool.outage()
                    ),
                )));
            }
            self.pool = Some(pool);
        }
        if realm_login {
            // The gateway now knows who this is: its admin view and a realm reload's
            // revocation follow the session.
            self.control.set_principal(principal.clone());
        }
        self.grant = self.b.acl.grant(principal.as_ref());
        self.user = principal.map(|p| p.name).unwrap_or(user);
        Ok(())
    }

    fn tune(&mut self, t: connection::TuneOk) -> Result<(), Refusal> {
        let s = &self.b.settings;
        let frame_max = match t.frame_max {
            0 => s.frame_max,
            n => n.min(s.frame_max),
        };
        if frame_max < FRAME_MIN_SIZE {
            return Err(Refusal::Close(Fault::connection(
                FRAME_ERROR,
                format!("frame_max {frame_max} is below the minimum of {FRAME_MIN_SIZE}"),
            )));
        }
        let channel_max = match t.channel_max {
            0 => s.max_channels,
            n => n.min(s.max_channels),
        };
        self.frame_max = frame_max;
        self.heartbeat = t.heartbeat;
        self.decoder.set_limits(Limits {
            frame_max,
            channel_max,
            max_body_size: s.max_body_size,
        });
        Ok(())
    }

    fn check_vhost(&self, vhost: &str) -> Result<(), Refusal> {
        let ours = self.b.nodes[0].vhost.as_str();
        if vhost == "/" || vhost == ours || vhost.is_empty() {
            return Ok(());
        }
        Err(Refusal::Close(Fault::connection(
            NOT_ALLOWED,
            format!("access to vhost '{vhost}' refused: this service serves vhost '{ours}'"),
        )))
    }
}

/// Why the handshake stopped: with a Connection.Close, or without (before one can be sent).
enum Refusal {
    Close(Fault),
    Quiet(BridgeError),
}

impl From<Fault> for Refusal {
    fn from(f: Fault) -> Refusal {
        Refusal::Close(f)
    }
}

fn refuse(text: String) -> Refusal {
    Refusal::Close(Fault::Connection(Close {
        channel: 0,
        code: ACCESS_REFUSED,
        text,
        class_id: 10,
        method_id: 11,
    }))
}

fn unexpected(m: &AMQPClass, expected: &str) -> Refusal {
    Refusal::Close(
        Fault::connection(
            COMMAND_INVALID,
            format!("expected {expected}, got {}", super::name(m)),
        )
        .on_method(super::ids(m)),
    )
}

fn start() -> AMQPClass {
    let mut caps = FieldTable::default();
    for cap in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "authentication_failure_close",
        "per_consumer_qos",
    ] {
        caps.insert(cap.into(), AMQPValue::Boolean(true));
    }
    let mut props = FieldTable::default();
    props.insert("product".into(), AMQPValue::LongString("gateway".into()));
    props.insert(
        "version".into(),
        AMQPValue::LongString(env!("CARGO_PKG_VERSION").into()),
    );
    props.insert(
        "platform".into(),
        AMQPValue::LongString("AMQP 0-9-1 over WebSocket".into()),
    );
    props.insert("capabilities".into(), AMQPValue::FieldTable(caps));
    AMQPClass::Connection(connection::AMQPMethod::Start(connection::Start {
        version_major: 0,
        version_minor: 9,
        server_properties: props,
        mechanisms: LongString::from("PLAIN AMQPLAIN"),
        locales: LongString::from("en_US"),
    }))
}

/// User and password from a SASL response.
fn credentials(mechanism: &str, response: &[u8]) -> Option<(String, String)> {
    match mechanism {
        // authzid NUL authcid NUL password (RFC 4616)
        "PLAIN" => {
            let mut parts = response.splitn(3, |&b| b == 0);
            let _authzid = parts.next()?;
            let user = String::from_utf8(parts.next()?.to_vec()).ok()?;
            let pass = String::from_utf8(parts.next()?.to_vec()).ok()?;
            Some((user, pass))
        }
        // A field table's entries without the table's length (RabbitMQ's reading).
        "AMQPLAIN" => {
            let table = amqplain_table(response)?;
            let get = |k: &str| match table.inner().get(k)? {
                AMQPValue::LongString(s) => {
                    Some(String::from_utf8_lossy(s.as_bytes()).into_owned())
                }
                AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
                _ => None,
            };
            Some((get("LOGIN")?, get("PASSWORD")?))
        }
        _ => None,
    }
}

fn amqplain_table(entries: &[u8]) -> Option<FieldTable> {
    let mut framed = Vec::with_capacity(entries.len() + 4);
    framed.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    framed.extend_from_slice(entries);
    protocol_amqp::parse_field_table(&framed[..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_amqplain_logins_are_read() {
        assert_eq!(
            credentials("PLAIN", b"\0alice\0s3cret"),
            Some(("alice".into(), "s3cret".into()))
        );
        assert_eq!(credentials("PLAIN", b"alice"), None);
        // LOGIN: S "bob", PASSWORD: S "pw" as AMQPLAIN sends them.
        let mut t = Vec::new();
        for (k, v) in [("LOGIN", "bob"), ("PASSWORD", "pw")] {
            t.push(k.len() as u8);
            t.extend_from_slice(k.as_bytes());
            t.push(b'S');
            t.extend_from_slice(&(v.len() as u32).to_be_bytes());
            t.extend_from_slice(v.as_bytes());
        }
        assert_eq!(
            credentials("AMQPLAIN", &t),
            Some(("bob".into(), "pw".into()))
        );
        assert_eq!(credentials("EXTERNAL", b""), None);
    }
}
