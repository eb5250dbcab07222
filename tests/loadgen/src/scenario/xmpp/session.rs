//! One XMPP session as the generator drives it: log in (SASL PLAIN, stream restart, bind,
//! presence), then either send timed messages to a peer or answer them.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use super::wire;
use crate::stats::Latency;
use crate::ws::{Failure, Target, Ws};

/// Who logs in where.
#[derive(Clone, Debug)]
pub struct Account {
    pub user: String,
    pub password: String,
    pub domain: String,
}

impl Account {
    pub fn full_jid(&self) -> String {
        format!("{}@{}/{}", self.user, self.domain, RESOURCE)
    }
}

const RESOURCE: &str = "lg";

/// The next text message, pings skipped; a close or error ends the session.
async fn next_text(ws: &mut Ws, timeout: Duration, waiting_for: &str) -> Result<String, Failure> {
    let next = tokio::time::timeout(timeout, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => return Ok(t.as_str().to_owned()),
                Some(Ok(Message::Close(c))) => {
                    return Err(Failure::new(
                        "closed",
                        format!("closed while waiting for {waiting_for}: {c:?}"),
                    ))
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(Failure::new("read", e)),
                None => {
                    return Err(Failure::new(
                        "closed",
                        format!("stream ended while waiting for {waiting_for}"),
                    ))
                }
            }
        }
    })
    .await;
    next.unwrap_or_else(|_| {
        Err(Failure::new(
            "timeout",
            format!("no {waiting_for} within {timeout:?}"),
        ))
    })
}

async fn send(ws: &mut Ws, text: String) -> Result<(), Failure> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| Failure::new("send", e))
}

/// Reads until a message whose root is `name`; a stream error or SASL failure ends it.
async fn expect(ws: &mut Ws, name: &str, timeout: Duration) -> Result<String, Failure> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let text = next_text(ws, left, name).await?;
        match wire::root_name(&text) {
            n if n == name => return Ok(text),
            "error" => return Err(Failure::new("stream_error", text)),
            "failure" => return Err(Failure::new("sasl_failure", text)),
            "close" => return Err(Failure::new("closed", text)),
            _ => continue,
        }
    }
}

/// Connects and logs in; returns the session and how long the whole login took.
pub async fn login(
    target: &Target,
    account: &Account,
    timeout: Duration,
) -> Result<(Ws, Duration), Failure> {
    let started = Instant::now();
    let mut ws = tokio::time::timeout(timeout, target.open(None))
        .await
        .map_err(|_| Failure::new("connect_timeout", "TCP connect + handshake"))??;
    send(&mut ws, wire::open(&account.domain)).await?;
    expect(&mut ws, "features", timeout).await?;
    send(&mut ws, wire::auth_plain(&account.user, &account.password)).await?;
    expect(&mut ws, "success", timeout).await?;
    send(&mut ws, wire::open(&account.domain)).await?;
    expect(&mut ws, "features", timeout).await?;
    send(&mut ws, wire::bind(RESOURCE)).await?;
    loop {
        let iq = expect(&mut ws, "iq", timeout).await?;
        if wire::root_attr(&iq, "id") == Some("bind") {
            if wire::root_attr(&iq, "type") != Some("result") {
                return Err(Failure::new("bind", iq));
            }
            break;
        }
    }
    send(&mut ws, wire::presence().to_owned()).await?;
    Ok((ws, started.elapsed()))
}

/// Sends `count` messages to `peer`, one at a time, each waiting for its answer; records
/// the round trips.
pub async fn ask(
    ws: &mut Ws,
    peer: &str,
    count: u32,
    interval: Duration,
    timeout: Duration,
    rtt: &mut Latency,
) -> Result<(), Failure> {
    for seq in 0..count {
        let id = format!("m{seq}");
        let sent = Instant::now();
        send(ws, wire::message(peer, &id, &seq.to_string())).await?;
        loop {
            let reply = expect(ws, "message", timeout).await?;
            if wire::root_attr(&reply, "id") == Some(id.as_str()) {
                rtt.record(sent.elapsed());
                break;
            }
        }
        tokio::time::sleep(interval).await;
    }
    Ok(())
}

/// Answers `count` messages (same id, back to the sender), or gives up at `deadline`.
pub async fn answer(ws: &mut Ws, count: u32, deadline: Instant) -> Result<(), Failure> {
    for _ in 0..count {
        let left = deadline.saturating_duration_since(Instant::now());
        let msg = expect(ws, "message", left).await?;
        let (Some(from), Some(id)) = (wire::root_attr(&msg, "from"), wire::root_attr(&msg, "id"))
        else {
            return Err(Failure::new("bad_message", msg));
        };
        let reply = wire::message(from, id, "ok");
        send(ws, reply).await?;
    }
    Ok(())
}

/// `<close/>` and a bounded wait for the server's.
pub async fn logout(mut ws: Ws, timeout: Duration) {
    let _ = send(&mut ws, wire::close()).await;
    crate::ws::close(ws, timeout).await;
}
