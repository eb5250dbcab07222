use std::sync::Arc;
use std::time::Duration;

use bridge_api::{async_trait, testkit, Bridge, BridgeError, Session};
use futures::{SinkExt, StreamExt};
use tokio::io::DuplexStream;
use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::sessions::SessionRegistry;

struct Echo;
#[async_trait]
impl Bridge for Echo {
    fn subprotocols(&self) -> &[&'static str] {
        &["echo"]
    }
    async fn serve(&self, mut s: Session) -> Result<(), BridgeError> {
        loop {
            tokio::select! {
                _ = s.shutdown.cancelled() => return Ok(()),
                m = s.incoming.recv() => match m {
                    Some(m) => { let _ = s.outbox.send(m).await; }
                    None => return Ok(()),
                }
            }
        }
    }
}

struct FailsAtOnce;
#[async_trait]
impl Bridge for FailsAtOnce {
    fn subprotocols(&self) -> &[&'static str] {
        &["x"]
    }
    async fn serve(&self, s: Session) -> Result<(), BridgeError> {
        s.outbox.send(bridge_api::Message::text("bye")).await.ok();
        Err(BridgeError::client("bad frame"))
    }
}

fn settings(idle: Duration) -> TransportSettings {
    TransportSettings {
        idle_timeout: idle,
        outgoing_queue: 8,
        linger: Duration::from_millis(500),
        deflate: None,
    }
}

/// A connected (client, server-task) pair over an in-memory pipe.
async fn start(
    bridge: Arc<dyn Bridge>,
    idle: Duration,
    shutdown: CancellationToken,
) -> (WebSocketStream<DuplexStream>, tokio::task::JoinHandle<()>) {
    let (c, s) = tokio::io::duplex(64 * 1024);
    let config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .max_message_size(Some(1000));
    let server = WebSocketStream::from_raw_socket(s, Role::Server, Some(config)).await;
    let client = WebSocketStream::from_raw_socket(c, Role::Client, None).await;
    let task = tokio::spawn(run_session(
        server,
        bridge,
        Arc::new(testkit::info("t")),
        settings(idle),
        shutdown,
        TrafficCounters::new("t", "websocket"),
        &SessionRegistry::new(),
    ));
    (client, task)
}

/// An echo session whose client end is raw bytes, for checking exact frames.
async fn start_raw(idle: Duration) -> (DuplexStream, tokio::task::JoinHandle<()>) {
    let (raw, s) = tokio::io::duplex(64 * 1024);
    let server = WebSocketStream::from_raw_socket(s, Role::Server, None).await;
    let task = tokio::spawn(run_session(
        server,
        Arc::new(Echo),
        Arc::new(testkit::info("t")),
        settings(idle),
        CancellationToken::new(),
        TrafficCounters::new("t", "websocket"),
        &SessionRegistry::new(),
    ));
    (raw, task)
}

async fn close_code(client: &mut WebSocketStream<DuplexStream>) -> Option<CloseCode> {
    while let Some(Ok(msg)) = client.next().await {
        if let WsMessage::Close(frame) = msg {
            return frame.map(|f| f.code);
        }
    }
    None
}

#[tokio::test]
async fn echoes_and_answers_a_client_close() {
    let (mut client, task) = start(Arc::new(Echo), Duration::ZERO, CancellationToken::new()).await;
    client.send(WsMessage::text("hi")).await.unwrap();
    client.send(WsMessage::binary(vec![0u8, 1])).await.unwrap();
    assert_eq!(client.next().await.unwrap().unwrap(), WsMessage::text("hi"));
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        WsMessage::binary(vec![0u8, 1])
    );
    client.close(None).await.unwrap();
    while client.next().await.is_some() {}
    tokio::time::timeout(Duration::from_secs(2), task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn bridge_error_becomes_its_close_code_after_queued_messages() {
    let (mut client, task) = start(
        Arc::new(FailsAtOnce),
        Duration::ZERO,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        WsMessage::text("bye")
    );
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Policy));
    task.await.unwrap();
}

#[tokio::test]
async fn shutdown_closes_with_going_away() {
    let token = CancellationToken::new();
    let (mut client, task) = start(Arc::new(Echo), Duration::ZERO, token.clone()).await;
    token.cancel();
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Away));
    task.await.unwrap();
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let (mut client, task) = start(Arc::new(Echo), Duration::ZERO, CancellationToken::new()).await;
    client
        .send(WsMessage::text("x".repeat(5000)))
        .await
        .unwrap();
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Size));
    task.await.unwrap();
}

#[tokio::test]
async fn silent_client_is_pinged_then_closed() {
    // The client end is read as raw bytes, so nothing ever answers the gateway's ping.
    let (mut raw, task) = start_raw(Duration::from_millis(100)).await;
    tokio::time::timeout(Duration::from_secs(3), task)
        .await
        .unwrap()
        .unwrap();
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut bytes)
        .await
        .unwrap();
    // Server frames are unmasked and short here: [fin|opcode, len, payload...].
    let mut opcodes = Vec::new();
    let mut close_code = None;
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let (op, len) = (bytes[at] & 0x0f, (bytes[at + 1] & 0x7f) as usize);
        if op == 0x8 && len >= 2 {
            close_code = Some(u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]));
        }
        opcodes.push(op);
        at += 2 + len;
    }
    assert_eq!(
        opcodes.first(),
        Some(&0x9),
        "expected a ping first: {opcodes:?}"
    );
    assert_eq!(close_code, Some(1001));
}

#[tokio::test]
async fn answering_pings_keeps_a_quiet_client() {
    let (mut client, task) = start(
        Arc::new(Echo),
        Duration::from_millis(300),
        CancellationToken::new(),
    )
    .await;
    // Reading lets tungstenite answer the gateway's pings with pongs. Several idle periods,
    // each long enough that a loaded machine's scheduling delays do not look like silence.
    let read = tokio::time::timeout(Duration::from_millis(1500), async {
        while let Some(Ok(_)) = client.next().await {}
    })
    .await;
    assert!(
        read.is_err(),
        "session ended although the client answered pings"
    );
    assert!(!task.is_finished());
}

#[tokio::test]
async fn a_client_close_is_answered_with_a_close_frame() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut raw, task) = start_raw(Duration::ZERO).await;
    // A masked close frame with code 1000 (an all-zero mask leaves the payload as is).
    raw.write_all(&[0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe8])
        .await
        .unwrap();
    let mut reply = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(2), raw.read_exact(&mut reply))
        .await
        .expect("no close reply")
        .unwrap();
    assert_eq!(reply, [0x88, 0x02, 0x03, 0xe8]);
    task.await.unwrap();
}

struct ErrorsThenCloses;
#[async_trait]
impl Bridge for ErrorsThenCloses {
    fn subprotocols(&self) -> &[&'static str] {
        &["x"]
    }
    async fn serve(&self, s: Session) -> Result<(), BridgeError> {
        s.outbox.send(bridge_api::Message::text("ERROR")).await.ok();
        s.outbox
            .end(bridge_api::EndKind::ProtocolError, "protocol error")
            .await;
        Ok(())
    }
}

#[tokio::test]
async fn a_close_queued_by_the_bridge_wins_over_its_normal_return() {
    let (mut client, task) = start(
        Arc::new(ErrorsThenCloses),
        Duration::ZERO,
        CancellationToken::new(),
    )
    .await;
    assert_eq!(
        client.next().await.unwrap().unwrap(),
        WsMessage::text("ERROR")
    );
    assert_eq!(close_code(&mut client).await, Some(CloseCode::Protocol));
    task.await.unwrap();
}
