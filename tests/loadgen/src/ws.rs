//! Opening WebSocket connections to the target: resolve once, connect from a chosen source
//! address, handshake with a small client-side read buffer and an optional subprotocol.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderValue, Uri};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::spread::connect_tcp;

pub type Ws = WebSocketStream<TcpStream>;

/// Why one connection did not work out; `kind` is the tally key.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: &'static str,
    pub detail: String,
}

impl Failure {
    pub fn new(kind: &'static str, detail: impl ToString) -> Self {
        Failure {
            kind,
            detail: detail.to_string(),
        }
    }
}

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct Target {
    pub url: String,
    pub server: SocketAddr,
    pub subprotocol: Option<String>,
    pub config: WebSocketConfig,
    /// Fixed kernel socket buffer size for the client side (idle runs), else autotuned.
    pub kernel_buffer: Option<u32>,
}

/// Host and port of a `ws://` URL (`wss://` is not supported by the generator).
pub fn host_port(url: &str) -> Result<(String, u16), String> {
    let uri: Uri = url.parse().map_err(|e| format!("bad URL {url}: {e}"))?;
    match uri.scheme_str() {
        Some("ws") => {}
        Some(other) => {
            return Err(format!(
                "{url}: only ws:// URLs are supported, not {other}://"
            ))
        }
        None => return Err(format!("{url}: the URL needs ws://")),
    }
    let host = uri.host().ok_or_else(|| format!("{url}: no host"))?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    Ok((host, uri.port_u16().unwrap_or(80)))
}

impl Target {
    pub async fn resolve(
        url: &str,
        subprotocol: Option<String>,
        read_buffer: usize,
        kernel_buffer: Option<u32>,
    ) -> Result<Target, String> {
        let (host, port) = host_port(url)?;
        let server = match host.parse::<IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) => tokio::net::lookup_host((host.as_str(), port))
                .await
                .map_err(|e| format!("cannot resolve {host}: {e}"))?
                .next()
                .ok_or_else(|| format!("{host} resolves to nothing"))?,
        };
        let config = WebSocketConfig::default()
            .read_buffer_size(read_buffer)
            .write_buffer_size(0)
            .max_message_size(Some(16 << 20))
            .max_frame_size(Some(16 << 20));
        Ok(Target {
            url: url.to_string(),
            server,
            subprotocol,
            config,
            kernel_buffer,
        })
    }

    /// TCP connect plus WebSocket handshake.
    pub async fn open(&self, source: Option<IpAddr>) -> Result<Ws, Failure> {
        let tcp = connect_tcp(self.server, source, self.kernel_buffer)
            .await
            .map_err(|e| Failure::new("tcp_connect", e))?;
        let mut request = self
            .url
            .as_str()
            .into_client_request()
            .map_err(|e| Failure::new("bad_request", e))?;
        if let Some(p) = &self.subprotocol {
            let value = HeaderValue::from_str(p).map_err(|e| Failure::new("bad_request", e))?;
            request
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", value);
        }
        let (ws, _response) =
            tokio_tungstenite::client_async_with_config(request, tcp, Some(self.config))
                .await
                .map_err(|e| Failure::new("handshake", e))?;
        Ok(ws)
    }
}

/// Send `text` and wait for the same text back (pings and pongs skipped).
pub async fn round_trip(ws: &mut Ws, text: &str, timeout: Duration) -> Result<(), Failure> {
    ws.send(Message::text(text))
        .await
        .map_err(|e| Failure::new("send", e))?;
    let reply = tokio::time::timeout(timeout, async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => return other,
            }
        }
    })
    .await
    .map_err(|_| Failure::new("echo_timeout", format!("no echo within {timeout:?}")))?;
    match reply {
        Some(Ok(Message::Text(t))) if t.as_str() == text => Ok(()),
        Some(Ok(other)) => Err(Failure::new("echo_mismatch", format!("got {other:?}"))),
        Some(Err(e)) => Err(Failure::new("read", e)),
        None => Err(Failure::new("closed", "connection closed before the echo")),
    }
}

/// Send a close frame and wait (bounded) for the server's close or the end of the stream.
pub async fn close(mut ws: Ws, timeout: Duration) {
    let _ = tokio::time::timeout(timeout, async {
        if ws.close(None).await.is_err() {
            return;
        }
        while let Some(Ok(_)) = ws.next().await {}
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ws_urls() {
        assert_eq!(
            host_port("ws://127.0.0.1:8080/echo").unwrap(),
            ("127.0.0.1".into(), 8080)
        );
        assert_eq!(
            host_port("ws://localhost/ws").unwrap(),
            ("localhost".into(), 80)
        );
        assert_eq!(host_port("ws://[::1]:9/x").unwrap(), ("::1".into(), 9));
        assert!(host_port("wss://h/x").unwrap_err().contains("only ws://"));
        assert!(host_port("127.0.0.1:8080").is_err());
    }

    /// A tiny echo server on a tokio-tungstenite accept, to check open/round_trip/close.
    #[tokio::test]
    async fn open_round_trip_and_close_against_a_local_echo() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() && ws.send(m).await.is_err() {
                    break;
                }
            }
        });
        let url = format!("ws://{addr}/echo");
        let target = Target::resolve(&url, None, 256, Some(4096)).await.unwrap();
        let mut ws = target
            .open(Some(crate::spread::source_addr(1)))
            .await
            .unwrap();
        round_trip(&mut ws, "hello", Duration::from_secs(5))
            .await
            .unwrap();
        close(ws, Duration::from_secs(5)).await;
        server.await.unwrap();
    }
}
