//! The up direction: `POST .../messages` bodies parsed and checked, and the bridge's
//! `Incoming` fed from them.
//!
//! `{"seq": <up seq of the first message>, "ack": <last event id received>,
//!   "messages": [{"text": "..."}, {"binary": "<base64>"}]}`

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bridge_api::Message;
use futures::Stream;
use serde::Deserialize;

use super::session::Shared;

#[derive(Deserialize)]
struct PostBody {
    seq: Option<u64>,
    ack: Option<u64>,
    #[serde(default)]
    messages: Vec<UpMessage>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpMessage {
    text: Option<String>,
    binary: Option<String>,
}

/// A POST body, checked: every message decoded, none over the size limit.
#[derive(Debug, PartialEq, Eq)]
pub struct Post {
    /// The up seq of the first message (meaningless when there are none).
    pub seq: u64,
    pub ack: Option<u64>,
    pub messages: Vec<Message>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum PostError {
    /// Not the JSON above (400).
    Bad(String),
    /// A message over `limits.max_message_size`: the session ends (1009).
    TooBig(String),
}

pub fn parse(body: &[u8], max_message_size: usize) -> Result<Post, PostError> {
    // serde would also take a struct from an array.
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(PostError::Bad("the body must be a JSON object".into()));
    }
    let body: PostBody =
        serde_json::from_slice(body).map_err(|e| PostError::Bad(format!("bad JSON: {e}")))?;
    let seq = match (body.seq, body.messages.is_empty()) {
        (Some(0), false) => return Err(PostError::Bad("seq starts at 1".into())),
        (Some(seq), _) => seq,
        (None, true) => 0,
        (None, false) => return Err(PostError::Bad("seq is required with messages".into())),
    };
    let mut messages = Vec::with_capacity(body.messages.len());
    for (i, m) in body.messages.into_iter().enumerate() {
        let msg = match (m.text, m.binary) {
            (Some(text), None) => Message::text(text),
            (None, Some(b64)) => {
                Message::binary(STANDARD.decode(b64.as_bytes()).map_err(|e| {
                    PostError::Bad(format!("messages[{i}].binary is not base64: {e}"))
                })?)
            }
            _ => {
                return Err(PostError::Bad(format!(
                    "messages[{i}] needs exactly one of text, binary"
                )))
            }
        };
        if msg.len() > max_message_size {
            return Err(PostError::TooBig(format!(
                "message of {} bytes over the limit of {max_message_size}",
                msg.len()
            )));
        }
        messages.push(msg);
    }
    Ok(Post {
        seq,
        ack: body.ack,
        messages,
    })
}

/// The bridge's `Incoming` for a fallback session: what POSTs queued, in up seq order;
/// ends with the session.
pub struct UpStream {
    shared: Arc<Shared>,
}

impl UpStream {
    pub(super) fn new(shared: Arc<Shared>) -> Self {
        UpStream { shared }
    }
}

impl Stream for UpStream {
    type Item = Message;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Message>> {
        self.shared.poll_up(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Post {
        parse(body.as_bytes(), 100).unwrap()
    }

    fn bad(body: &str) -> PostError {
        parse(body.as_bytes(), 100).unwrap_err()
    }

    #[test]
    fn text_and_binary_in_order() {
        let p = ok(
            r#"{"seq": 3, "ack": 9, "messages": [{"text": "a\u0000\r\n"}, {"binary": "AAH/"}]}"#,
        );
        assert_eq!(p.seq, 3);
        assert_eq!(p.ack, Some(9));
        assert_eq!(
            p.messages,
            vec![Message::text("a\0\r\n"), Message::binary(vec![0u8, 1, 255])]
        );
    }

    #[test]
    fn ack_only() {
        let p = ok(r#"{"ack": 4}"#);
        assert!(p.messages.is_empty());
        assert_eq!(p.ack, Some(4));
        assert_eq!(ok(r#"{"seq": 5, "messages": []}"#).messages, vec![]);
    }

    #[test]
    fn bad_inputs() {
        assert!(matches!(bad("{"), PostError::Bad(_)));
        assert!(matches!(bad("[1, 2]"), PostError::Bad(_)));
        assert!(matches!(bad(r#"{"seq": "1"}"#), PostError::Bad(_)));
        assert!(matches!(
            bad(r#"{"messages": [{"text": "x"}]}"#),
            PostError::Bad(_)
        ));
        assert!(matches!(
            bad(r#"{"seq": 0, "messages": [{"text": "x"}]}"#),
            PostError::Bad(_)
        ));
        assert!(matches!(
            bad(r#"{"seq": 1, "messages": [{"text": "x", "binary": ""}]}"#),
            PostError::Bad(_)
        ));
        assert!(matches!(
            bad(r#"{"seq": 1, "messages": [{}]}"#),
            PostError::Bad(_)
        ));
        assert!(matches!(
            bad(r#"{"seq": 1, "messages": [{"binary": "***"}]}"#),
            PostError::Bad(_)
        ));
        assert!(matches!(
            bad(r#"{"seq": 1, "messages": [{"texts": "x"}]}"#),
            PostError::Bad(_)
        ));
    }

    #[test]
    fn a_message_over_the_limit_is_too_big() {
        let long = "x".repeat(101);
        let body = format!(r#"{{"seq": 1, "messages": [{{"text": "{long}"}}]}}"#);
        assert!(matches!(
            parse(body.as_bytes(), 100),
            Err(PostError::TooBig(_))
        ));
        let body = format!(
            r#"{{"seq": 1, "messages": [{{"text": "{}"}}]}}"#,
            "x".repeat(100)
        );
        assert!(parse(body.as_bytes(), 100).is_ok());
    }
}
