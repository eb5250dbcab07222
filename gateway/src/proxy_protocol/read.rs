//! Reading the PROXY header off a fresh connection: small reads into a buffer bounded by
//! the largest header, parsed after each read; what came after the header is given back.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use super::parse::{parse, HeaderError, Parsed, Version};

/// Enough for any v1 header and a v2 one with its usual TLVs in one read.
const READ_CHUNK: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("connection closed after {0} bytes, inside the PROXY header")]
    Truncated(usize),
    #[error("reading the PROXY header: {0}")]
    Io(#[from] std::io::Error),
}

/// What the header said, and the bytes read past it.
#[derive(Debug)]
pub struct Header {
    pub version: Version,
    pub source: Option<SocketAddr>,
    pub rest: Bytes,
}

/// Read one header from `io`. The caller bounds the time this may take.
pub async fn read_header<IO: AsyncRead + Unpin>(io: &mut IO) -> Result<Header, ReadError> {
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if let Parsed::Header {
            len,
            version,
            source,
        } = parse(&buf)?
        {
            let rest = buf.split_off(len).freeze();
            return Ok(Header {
                version,
                source,
                rest,
            });
        }
        // `parse` refuses anything longer than a header can be, so this stays bounded.
        buf.reserve(READ_CHUNK);
        if io.read_buf(&mut buf).await? == 0 {
            return Err(ReadError::Truncated(buf.len()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn header_split_over_writes_then_client_bytes() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        let writer = tokio::spawn(async move {
            for part in [
                &b"PROXY TCP4 192.0.2."[..],
                b"7 10.0.0.1 5000 80\r",
                b"\nGET",
            ] {
                client.write_all(part).await.unwrap();
                tokio::task::yield_now().await;
            }
            client
        });
        let h = read_header(&mut server).await.unwrap();
        assert_eq!(h.version, Version::V1);
        assert_eq!(h.source, Some("192.0.2.7:5000".parse().unwrap()));
        let _client = writer.await.unwrap();
        // Whatever of "GET" arrived with the header is handed back.
        assert!(b"GET".starts_with(&h.rest), "{:?}", h.rest);
    }

    #[tokio::test]
    async fn truncated_header_is_an_error_not_a_hang() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"\r\n\r\n\0\r\nQUIT\n\x21").await.unwrap();
        drop(client);
        let err = read_header(&mut server).await.unwrap_err();
        assert!(matches!(err, ReadError::Truncated(13)), "{err}");
    }

    #[tokio::test]
    async fn garbage_is_refused_on_the_first_read() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        let err = read_header(&mut server).await.unwrap_err();
        assert!(
            matches!(err, ReadError::Header(HeaderError::NoSignature(_))),
            "{err}"
        );
    }
}
