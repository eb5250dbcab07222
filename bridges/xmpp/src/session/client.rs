//! The client's messages during the relay: framing, stream restarts, the SASL identity
//! check, STARTTLS refusal and the stanza rate.

use bridge_api::Message;
use protocol_xmpp::{
    ClientFrame, Element, StanzaKind, StreamError, StreamErrorCondition as C, NS_SASL, NS_STREAM,
    NS_TLS,
};

use super::failure::{send, Failure};
use super::{binary_message, checked_domain, End, Relay};
use crate::identity;
use crate::metrics::{self, Login};

impl Relay<'_> {
    /// Handles one client message; `Some(end)` when it ends the session.
    pub(super) async fn client_message(&mut self, msg: Message) -> Result<Option<End>, Failure> {
        let text = match msg {
            Message::Text(text) => text,
            Message::Binary(_) => return Err(binary_message()),
        };
        match protocol_xmpp::parse_client_message(&text, &self.bridge.limits) {
            Err(e) => Err(Failure::client(e)),
            Ok(ClientFrame::Open(open)) => {
                if !self.awaiting_restart {
                    return Err(Failure::client(StreamError::new(
                        C::BadFormat,
                        "<open/> is only allowed at the start and after SASL success",
                    )));
                }
                let domain = checked_domain(self.bridge, &open)?;
                if domain != self.domain {
                    return Err(Failure::client(StreamError::new(
                        C::HostUnknown,
                        format!("the stream was opened to {}, not {domain}", self.domain),
                    )));
                }
                self.awaiting_restart = false;
                self.write(protocol_xmpp::server_header(&open).as_bytes())
                    .await?;
                Ok(None)
            }
            Ok(ClientFrame::Close) => {
                self.close_server().await;
                send(self.outbox, protocol_xmpp::client_close().to_owned()).await;
                Ok(Some(End::Closed))
            }
            Ok(ClientFrame::Element(element)) => self.client_element(element).await.map(|()| None),
        }
    }

    async fn client_element(&mut self, element: Element) -> Result<(), Failure> {
        if !self.rate.allow(self.now_ms()) {
            return Err(Failure::client(StreamError::new(
                C::PolicyViolation,
                format!(
                    "more than {} elements per second",
                    self.bridge.settings.stanza_rate
                ),
            )));
        }
        if element.is("starttls", NS_TLS) {
            // The gateway already secured the server stream and never offers STARTTLS.
            return Err(Failure::client(StreamError::new(
                C::PolicyViolation,
                "STARTTLS was not offered",
            )));
        }
        if element.is("auth", NS_SASL) {
            if let Some(reason) = self.identity_mismatch(&element) {
                tracing::info!(
                    service = %self.info.service,
                    session = self.info.id,
                    failed = "client",
                    "xmpp login refused: {reason}"
                );
                metrics::login(Login::SaslFailure);
                send(
                    self.outbox,
                    protocol_xmpp::to_client(&sasl_failure(&reason)),
                )
                .await;
                return Ok(());
            }
        }
        if element.is("error", NS_STREAM) {
            let error = StreamError::from_element(&element);
            metrics::stream_error(error.condition, metrics::Side::Client);
        }
        self.bridge.metrics.stanza_in(StanzaKind::of(&element));
        self.write(protocol_xmpp::to_server(&element).as_bytes())
            .await
    }

    /// Why this `<auth/>` may not log in as the user the handshake authenticated.
    fn identity_mismatch(&self, auth: &Element) -> Option<String> {
        let principal = self.info.principal.as_ref()?;
        let identity = protocol_xmpp::sasl_identity(auth);
        identity::check(
            self.bridge.settings.identity,
            &principal.name,
            &self.domain,
            identity.as_ref(),
        )
        .err()
    }
}

/// `<failure xmlns='urn:ietf:params:xml:ns:xmpp-sasl'><not-authorized/><text>…</text></failure>`
fn sasl_failure(reason: &str) -> Element {
    Element::builder("failure", NS_SASL)
        .append(Element::builder("not-authorized", NS_SASL).build())
        .append(Element::builder("text", NS_SASL).append(reason).build())
        .build()
}
