use bytes::Bytes;
use bytestring::ByteString;

/// UTF-8 text backed by shared bytes: cloning it never copies the payload.
pub type Text = ByteString;

/// One application message in either direction. Control traffic (pings, close handshakes)
/// never reaches a bridge: the transport owns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Text(Text),
    Binary(Bytes),
}

impl Message {
    pub fn text(s: impl Into<Text>) -> Self {
        Message::Text(s.into())
    }

    pub fn binary(b: impl Into<Bytes>) -> Self {
        Message::Binary(b.into())
    }

    /// The payload bytes, whatever the kind (cheap: a reference-count bump).
    pub fn payload(&self) -> Bytes {
        match self {
            Message::Text(t) => t.as_bytes().clone(),
            Message::Binary(b) => b.clone(),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            Message::Text(t) => t.len(),
            Message::Binary(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
