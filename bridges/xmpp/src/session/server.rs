//! The server stream: TCP (or SRV) connect, STARTTLS or direct TLS, and the post-TLS stream
//! header and features the client finally sees. The client never sees the pre-TLS stream.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use protocol_xmpp::{
    Element, Open, ServerEvent, StreamErrorCondition as C, StreamHeader, StreamReader, NS_STREAM,
    NS_TLS,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::failure::Failure;
use crate::connect::{self, Target};
use crate::metrics::{self, Login, Side};
use crate::settings::TlsMode;
use crate::XmppBridge;

/// Bytes read from the server per read call. Small: rustls already buffers the decrypted
/// record, so a read is only a copy out of it.
pub const READ_CHUNK: usize = 1024;

const STARTTLS: &str = "<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>";

pub struct Server {
    pub io: TlsStream<TcpStream>,
    pub reader: StreamReader,
    pub target: Target,
}

/// What the client is answered with once the server stream is secure.
pub struct Opened {
    pub server: Server,
    pub header: StreamHeader,
    pub features: Element,
}

/// Why reading the next server event failed.
pub enum ReadError {
    Io(std::io::Error),
    Eof,
    Xml(protocol_xmpp::StreamError),
}

impl ReadError {
    pub fn into_failure(self, condition: C) -> Failure {
        match self {
            ReadError::Io(e) => {
                Failure::backend(condition, format!("server connection failed: {e}"))
            }
            ReadError::Eof => Failure::backend(condition, "server closed the connection"),
            ReadError::Xml(e) => Failure::backend(condition, format!("server sent bad XML: {e}")),
        }
    }
}

/// Feeds one read into `reader`; Ok(false) at end of stream.
pub fn feed(
    reader: &mut StreamReader,
    read: std::io::Result<usize>,
    buf: &[u8],
) -> Result<(), ReadError> {
    match read {
        Ok(0) => Err(ReadError::Eof),
        Ok(n) => reader.feed(&buf[..n]).map_err(ReadError::Xml),
        Err(e) => Err(ReadError::Io(e)),
    }
}

/// Reads what the server stream has ready into the reader. The buffer is a local of this
/// call, so a pending read holds no memory in the caller's future.
pub fn poll_feed(server: &mut Server, cx: &mut Context<'_>) -> Poll<Result<(), ReadError>> {
    let mut buf = [0u8; READ_CHUNK];
    let mut read = ReadBuf::new(&mut buf);
    match Pin::new(&mut server.io).poll_read(cx, &mut read) {
        Poll::Pending => Poll::Pending,
        Poll::Ready(Err(e)) => Poll::Ready(Err(ReadError::Io(e))),
        Poll::Ready(Ok(())) => {
            let n = read.filled().len();
            Poll::Ready(feed(&mut server.reader, Ok(n), &buf))
        }
    }
}

async fn next_event<S: AsyncRead + Unpin>(
    io: &mut S,
    reader: &mut StreamReader,
) -> Result<ServerEvent, ReadError> {
    let mut buf = [0u8; READ_CHUNK];
    loop {
        if let Some(event) = reader.next_event().map_err(ReadError::Xml)? {
            return Ok(event);
        }
        let read = io.read(&mut buf).await;
        feed(reader, read, &buf)?;
    }
}

pub async fn write<S: AsyncWrite + Unpin>(io: &mut S, data: &[u8]) -> std::io::Result<()> {
    io.write_all(data).await?;
    io.flush().await
}

/// The next element of a stream being opened; a `<stream:error>` ends the attempt.
async fn expect_element<S: AsyncRead + Unpin>(
    io: &mut S,
    reader: &mut StreamReader,
    what: &str,
) -> Result<Element, Failure> {
    match next_event(io, reader).await {
        Ok(ServerEvent::Element(e)) if e.is("error", NS_STREAM) => Err(Failure::from_server(e)),
        Ok(ServerEvent::Element(e)) => Ok(e),
        Ok(other) => Err(Failure::backend(
            C::RemoteConnectionFailed,
            format!("server sent {other:?} instead of {what}"),
        )),
        Err(e) => Err(e.into_failure(C::RemoteConnectionFailed)),
    }
}

async fn expect_header<S: AsyncRead + Unpin>(
    io: &mut S,
    reader: &mut StreamReader,
) -> Result<StreamHeader, Failure> {
    match next_event(io, reader).await {
        Ok(ServerEvent::Header(h)) => Ok(h),
        Ok(other) => Err(Failure::backend(
            C::RemoteConnectionFailed,
            format!("server sent {other:?} instead of a stream header"),
        )),
        Err(e) => Err(e.into_failure(C::RemoteConnectionFailed)),
    }
}

/// Opens a stream and reads the header and features that answer it.
async fn open_stream<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut S,
    reader: &mut StreamReader,
    open: &Open,
) -> Result<(StreamHeader, Element), Failure> {
    write(io, protocol_xmpp::server_header(open).as_bytes())
        .await
        .map_err(|e| {
            Failure::backend(C::RemoteConnectionFailed, format!("write to server: {e}"))
        })?;
    let header = expect_header(io, reader).await?;
    let features = expect_element(io, reader, "stream features").await?;
    if !features.is("features", NS_STREAM) {
        return Err(Failure::backend(
            C::RemoteConnectionFailed,
            format!(
                "server sent <{}/> instead of stream features",
                features.name()
            ),
        ));
    }
    Ok((header, features))
}

async fn starttls(
    tcp: &mut TcpStream,
    reader: &mut StreamReader,
    open: &Open,
) -> Result<(), Failure> {
    let (_, features) = open_stream(tcp, reader, open).await?;
    if !features.has_child("starttls", NS_TLS) {
        return Err(
            Failure::backend(C::RemoteConnectionFailed, "server does not offer STARTTLS")
                .with_login(Login::TlsFailure),
        );
    }
    write(tcp, STARTTLS.as_bytes()).await.map_err(|e| {
        Failure::backend(C::RemoteConnectionFailed, format!("write to server: {e}"))
    })?;
    let answer = expect_element(tcp, reader, "<proceed/>").await?;
    if !answer.is("proceed", NS_TLS) {
        return Err(Failure::backend(
            C::RemoteConnectionFailed,
            format!("server answered STARTTLS with <{}/>", answer.name()),
        )
        .with_login(Login::TlsFailure));
    }
    Ok(())
}

impl XmppBridge {
    /// Connects, secures and opens the server stream for a client that asked for `domain`.
    pub(super) async fn open_server(&self, open: &Open, domain: &str) -> Result<Opened, Failure> {
        let settings = &self.settings;
        let targets = match &self.server {
            Some(target) => vec![target.clone()],
            None => connect::targets(domain, settings.tls).await.map_err(|e| {
                Failure::backend(C::RemoteConnectionFailed, e).with_login(Login::ServerUnreachable)
            })?,
        };
        let started = Instant::now();
        let (mut tcp, target) = connect::connect(&targets, settings.connect_timeout)
            .await
            .map_err(|e| {
                Failure::backend(
                    C::RemoteConnectionFailed,
                    format!("cannot reach the server: {e}"),
                )
                .with_login(Login::ServerUnreachable)
            })?;
        if settings.insecure {
            tracing::warn!(
                service = %self.service,
                server = %target,
                "xmpp: TLS to the server is not verified (insecure = true)"
            );
        }
        let mut reader = StreamReader::new(self.limits.clone());
        let secure = async {
            if settings.tls == TlsMode::Starttls {
                starttls(&mut tcp, &mut reader, open).await?;
            }
            let mut io = self.tls.connect(domain, tcp).await.map_err(|e| {
                // A domain that is no TLS server name is ours to have accepted.
                if e.kind() == std::io::ErrorKind::InvalidInput {
                    return Failure::internal(e.to_string());
                }
                Failure::backend(C::RemoteConnectionFailed, format!("XMPP server: {e}"))
                    .with_login(Login::TlsFailure)
            })?;
            metrics::connect_seconds(started.elapsed().as_secs_f64());
            reader.restart();
            let (header, features) = open_stream(&mut io, &mut reader, open).await?;
            Ok::<_, Failure>((io, header, features))
        };
        // Whatever stops the secure stream from opening, short of the server refusing with
        // a stream error of its own, is a failed TLS login for the metrics.
        let secure = async {
            secure.await.map_err(|f| match (f.login, f.side) {
                (None, Side::Gateway) => f.with_login(Login::TlsFailure),
                _ => f,
            })
        };
        let (io, header, features) = tokio::time::timeout(settings.tls_timeout, secure)
            .await
            .map_err(|_| {
                Failure::backend(
                    C::RemoteConnectionFailed,
                    format!(
                        "server {target} did not complete TLS and stream opening within {:?}",
                        settings.tls_timeout
                    ),
                )
                .with_login(Login::TlsFailure)
            })??;
        Ok(Opened {
            server: Server { io, reader, target },
            header,
            features,
        })
    }
}
