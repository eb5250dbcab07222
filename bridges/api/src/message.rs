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

    /// Text when `bytes` are UTF-8 (what browsers expect of a text protocol), else binary.
    pub fn text_or_binary(bytes: Bytes) -> Self {
        match Text::try_from(bytes.clone()) {
            Ok(text) => Message::Text(text),
            Err(_) => Message::Binary(bytes),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_when_utf8_else_binary() {
        assert_eq!(
            Message::text_or_binary(Bytes::from_static("é\n".as_bytes())),
            Message::text("é\n")
        );
        let raw = Bytes::from_static(&[0xff, 0]);
        assert_eq!(Message::text_or_binary(raw.clone()), Message::Binary(raw));
    }
}
