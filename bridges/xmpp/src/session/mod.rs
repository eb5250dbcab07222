//! One client session: wait for `<open/>`, open the secure server stream, then relay
//! elements both ways in one `select!` loop until either side closes.

mod client;
mod failure;
mod server;
mod stop;

use std::time::Duration;

use bridge_api::{
    BridgeError, CancellationToken, EndKind, Incoming, Message, Outbox, Session, SessionInfo,
};
use protocol_xmpp::{
    ClientFrame, Open, RateLimiter, ServerEvent, StanzaKind, StreamError,
    StreamErrorCondition as C, NS_SASL, NS_STREAM,
};
use tokio::io::AsyncReadExt;
use tokio::time::Instant;

use crate::metrics::{self, ActiveSession, Login};
use crate::XmppBridge;
use failure::{send, Failure};
use server::Server;

/// How long a closing side waits for the other's `</stream:stream>`.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// How a relay step ends the session when it does.
enum End {
    /// Both streams closed cleanly (or the client left).
    Closed,
    /// The gateway is shutting down.
    Shutdown,
}

pub(crate) struct Relay<'a> {
    bridge: &'a XmppBridge,
    info: &'a SessionInfo,
    outbox: &'a Outbox,
    shutdown: &'a CancellationToken,
    server: Server,
    domain: String,
    /// After SASL success: the client's next `<open/>` restarts the server stream.
    awaiting_restart: bool,
    rate: RateLimiter,
    started: Instant,
}

pub(crate) async fn run(bridge: &XmppBridge, session: Session) -> Result<(), BridgeError> {
    let Session {
        info,
        mut incoming,
        outbox,
        shutdown,
        control,
    } = session;
    // Boxed: opening needs far more state than relaying, and only once; inline it would
    // enlarge every idle session's future. The server goes straight into the relay: a named
    // local would keep its own slot in this future after being moved out.
    let mut relay = match Box::pin(open(bridge, &info, &mut incoming, &outbox, &shutdown)).await {
        Ok(Some((server, domain))) => Relay {
            bridge,
            info: &info,
            outbox: &outbox,
            shutdown: &shutdown,
            server,
            domain,
            awaiting_restart: false,
            rate: RateLimiter::new(bridge.settings.stanza_rate, bridge.settings.stanza_burst),
            started: Instant::now(),
        },
        Ok(None) => {
            // Stopped before the server stream was up (or the client left first).
            let told = stop::tell(control.stop_reason(), &info, &outbox, false, None).await;
            return told.unwrap_or(Ok(()));
        }
        Err(e) => return Err(e),
    };
    let _active = ActiveSession::new(
        bridge
            .settings
            .server
            .clone()
            .unwrap_or_else(|| relay.server.target.to_string()),
    );
    match relay.run(&mut incoming).await {
        Ok(End::Closed) => Ok(()),
        Ok(End::Shutdown) => {
            let domain = Some(relay.domain.as_str());
            if let Some(told) =
                stop::tell(control.stop_reason(), &info, &outbox, true, domain).await
            {
                relay.close_server().await;
                return told;
            }
            let error = StreamError::new(C::SystemShutdown, "the gateway is shutting down");
            metrics::stream_error(error.condition, metrics::Side::Gateway);
            let text = protocol_xmpp::stream_error_to_client(&error);
            if outbox.try_send(Message::text(text)).is_ok() {
                let _ = outbox.try_send(Message::text(protocol_xmpp::client_close()));
            }
            relay.close_server().await;
            Ok(())
        }
        Err(f) => {
            let client_fault = f.fault == bridge_api::ErrorSource::Client;
            // The client hears first; the server's goodbye only delays the session's end.
            let error = f.report(&info, &outbox, true, Some(&relay.domain)).await;
            if client_fault {
                relay.close_server().await;
            }
            Err(error)
        }
    }
}

/// Waits for the client's `<open/>`, opens the secure server stream and answers the client
/// with the server's header and features. `Ok(None)`: the client left or the gateway is
/// shutting down first.
async fn open(
    bridge: &XmppBridge,
    info: &SessionInfo,
    incoming: &mut Incoming,
    outbox: &Outbox,
    shutdown: &CancellationToken,
) -> Result<Option<(Server, String)>, BridgeError> {
    let open = match wait_for_open(bridge, incoming, outbox, shutdown).await {
        Ok(Some(open)) => open,
        Ok(None) => return Ok(None),
        Err(f) => return Err(f.report(info, outbox, false, None).await),
    };
    let domain = match checked_domain(bridge, &open) {
        Ok(domain) => domain,
        Err(f) => return Err(f.report(info, outbox, false, None).await),
    };
    let opened = tokio::select! {
        opened = bridge.open_server(&open, &domain) => opened,
        _ = shutdown.cancelled() => return Ok(None),
    };
    let opened = match opened {
        Ok(opened) => opened,
        Err(f) => return Err(f.report(info, outbox, false, Some(&domain)).await),
    };
    send(outbox, protocol_xmpp::client_open(&opened.header)).await;
    send(outbox, protocol_xmpp::to_client(&opened.features)).await;
    Ok(Some((opened.server, domain)))
}

/// The client's first message must be `<open/>`. `Ok(None)`: the client left first.
async fn wait_for_open(
    bridge: &XmppBridge,
    incoming: &mut Incoming,
    outbox: &Outbox,
    shutdown: &CancellationToken,
) -> Result<Option<Open>, Failure> {
    let first = tokio::select! {
        first = tokio::time::timeout(bridge.settings.open_timeout, incoming.recv()) => first,
        _ = shutdown.cancelled() => return Ok(None),
    };
    let text = match first {
        Err(_) => {
            return Err(Failure::client(StreamError::new(
                C::ConnectionTimeout,
                format!("no <open/> within {:?}", bridge.settings.open_timeout),
            )))
        }
        Ok(None) => return Ok(None),
        Ok(Some(Message::Binary(_))) => return Err(binary_message()),
        Ok(Some(Message::Text(text))) => text,
    };
    match protocol_xmpp::parse_client_message(&text, &bridge.limits) {
        Ok(ClientFrame::Open(open)) => Ok(Some(open)),
        Ok(ClientFrame::Close) => {
            send(outbox, protocol_xmpp::client_close().to_owned()).await;
            Ok(None)
        }
        Ok(ClientFrame::Element(e)) => Err(Failure::client(StreamError::new(
            C::NotWellFormed,
            format!("expected <open/>, got <{}/>", e.name()),
        ))),
        Err(e) => Err(Failure::client(e)),
    }
}

fn checked_domain(bridge: &XmppBridge, open: &Open) -> Result<String, Failure> {
    match open.to.as_deref() {
        Some(to) if bridge.settings.allows_domain(to) => {
            Ok(to.trim_end_matches('.').to_ascii_lowercase())
        }
        Some(to) => Err(Failure::client(StreamError::new(
            C::HostUnknown,
            format!("this gateway does not serve {to}"),
        ))),
        None => Err(Failure::client(StreamError::new(
            C::HostUnknown,
            "<open/> names no domain (to)",
        ))),
    }
}

/// RFC 7395 3.2: XMPP over WebSocket is text only.
fn binary_message() -> Failure {
    Failure::client(StreamError::new(
        C::UnsupportedEncoding,
        "binary WebSocket messages are not allowed (RFC 7395)",
    ))
    .with_end(EndKind::UnsupportedData)
}

impl Relay<'_> {
    async fn run(&mut self, incoming: &mut Incoming) -> Result<End, Failure> {
        let keepalive_every = self.bridge.settings.server_keepalive;
        let keepalive = tokio::time::sleep(keepalive_every);
        tokio::pin!(keepalive);
        loop {
            // Events already parsed go out before anything else is read.
            while let Some(event) = self.server.reader.next_event().map_err(|e| {
                Failure::backend(C::UndefinedCondition, format!("server sent bad XML: {e}"))
            })? {
                // Boxed, like the client side below: each element allocates anyway, and
                // the idle session's future stays small.
                if let Some(end) = Box::pin(self.server_event(event)).await? {
                    return Ok(end);
                }
            }
            let wrote = tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => return Ok(End::Shutdown),
                // The read buffer lives on the stack only while polled, not in this future:
                // idle sessions spend their life parked here.
                read = std::future::poll_fn(|cx| server::poll_feed(&mut self.server, cx)) => {
                    read.map_err(|e| e.into_failure(C::RemoteConnectionFailed))?;
                    false
                }
                msg = incoming.recv() => match msg {
                    None => {
                        self.close_server().await;
                        return Ok(End::Closed);
                    }
                    Some(msg) => match Box::pin(self.client_message(msg)).await? {
                        Some(end) => return Ok(end),
                        None => true,
                    },
                },
                () = &mut keepalive => {
                    // Whitespace between elements: keeps NATs and the server's idle timer
                    // from dropping a quiet stream.
                    self.write(b" ").await?;
                    true
                }
            };
            if wrote {
                keepalive.as_mut().reset(Instant::now() + keepalive_every);
            }
        }
    }

    async fn server_event(&mut self, event: ServerEvent) -> Result<Option<End>, Failure> {
        let outbox = self.outbox;
        match event {
            ServerEvent::Header(header) => {
                send(outbox, protocol_xmpp::client_open(&header)).await;
            }
            ServerEvent::End => {
                send(outbox, protocol_xmpp::client_close().to_owned()).await;
                let _ = tokio::time::timeout(
                    CLOSE_GRACE,
                    self.write(protocol_xmpp::server_close().as_bytes()),
                )
                .await;
                return Ok(Some(End::Closed));
            }
            ServerEvent::Element(element) => {
                if element.is("error", NS_STREAM) {
                    return Err(Failure::from_server(element));
                }
                if element.is("success", NS_SASL) {
                    metrics::login(Login::Success);
                    // The server's next bytes are a new stream header, sent once the
                    // client restarts the stream.
                    self.server.reader.restart();
                    self.awaiting_restart = true;
                } else if element.is("failure", NS_SASL) {
                    metrics::login(Login::SaslFailure);
                }
                self.bridge.metrics.stanza_out(StanzaKind::of(&element));
                let text = protocol_xmpp::to_client(&element);
                if outbox.send(Message::text(text)).await.is_err() {
                    // The client is gone; the session's incoming ends next.
                    return Ok(Some(End::Closed));
                }
            }
        }
        Ok(None)
    }

    async fn write(&mut self, data: &[u8]) -> Result<(), Failure> {
        server::write(&mut self.server.io, data).await.map_err(|e| {
            Failure::backend(C::RemoteConnectionFailed, format!("write to server: {e}"))
        })
    }

    /// Ends the server stream and gives the server a moment to end its own. Boxed: a cold
    /// path whose state would otherwise enlarge every idle session's future.
    async fn close_server(&mut self) {
        let closing = tokio::time::timeout(CLOSE_GRACE, async {
            self.write(protocol_xmpp::server_close().as_bytes()).await?;
            let mut buf = [0u8; 512];
            loop {
                let read = self.server.io.read(&mut buf).await;
                if server::feed(&mut self.server.reader, read, &buf).is_err() {
                    return Ok::<_, Failure>(());
                }
                while let Ok(Some(event)) = self.server.reader.next_event() {
                    if event == ServerEvent::End {
                        return Ok(());
                    }
                }
            }
        });
        let _ = Box::pin(closing).await;
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}
