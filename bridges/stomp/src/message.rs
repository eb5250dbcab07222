//! A published message as the broker holds it, and its MESSAGE frame encoded once per
//! subscription id so thousands of subscribers share the same bytes.

use std::sync::{Arc, Mutex};

use bridge_api::Message;
use bytes::Bytes;
use protocol_stomp::{encode_to_bytes, Command, Frame, Headers, Version};

/// Headers the bridge sets itself on MESSAGE frames; client values for them are not copied.
const RESERVED: &[&str] = &[
    "destination",
    "subscription",
    "message-id",
    "ack",
    "content-length",
    "receipt",
    "transaction",
    "redelivered",
    // Stream positions and marks are the gateway's (see `crate::stream`).
    "position",
    "snapshot",
    "resumed",
];

pub struct SharedMessage {
    pub destination: String,
    pub message_id: String,
    /// User headers (content-type, custom ones) in the order the publisher sent them.
    pub headers: Headers,
    pub body: Bytes,
    /// Encoded frames by (subscription id, whether 1.1+ escaping applies).
    encoded: Mutex<Vec<(Arc<str>, bool, Message)>>,
}

impl SharedMessage {
    pub fn new(destination: String, message_id: String, sent: &Headers, body: Bytes) -> Self {
        let mut headers = Headers::new();
        for (k, v) in sent.iter() {
            if !RESERVED.contains(&k) {
                headers.push(k, v);
            }
        }
        SharedMessage {
            destination,
            message_id,
            headers,
            body,
            encoded: Mutex::new(Vec::new()),
        }
    }

    /// This message with one more header of the gateway's own (a stream position, a
    /// snapshot mark), or that header replaced; the body is shared, not copied.
    pub fn with_header(&self, name: &str, value: &str) -> SharedMessage {
        let mut headers = Headers::new();
        for (k, v) in self.headers.iter() {
            if k != name {
                headers.push(k, v);
            }
        }
        headers.push(name, value);
        SharedMessage {
            destination: self.destination.clone(),
            message_id: self.message_id.clone(),
            headers,
            body: self.body.clone(),
            encoded: Mutex::new(Vec::new()),
        }
    }

    /// Bytes this message holds, roughly, for the memory a stream reports.
    pub fn retained_bytes(&self) -> usize {
        let headers: usize = self
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.len() + 16)
            .sum();
        std::mem::size_of::<SharedMessage>()
            + self.destination.len()
            + self.message_id.len()
            + headers
            + self.body.len()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name)
    }

    fn frame(&self, subscription: &str, ack: Option<&str>, redelivered: bool) -> Frame {
        let mut frame = Frame::new(Command::Message)
            .header("subscription", subscription)
            .header("message-id", self.message_id.as_str())
            .header("destination", self.destination.as_str());
        if let Some(ack) = ack {
            frame = frame.header("ack", ack);
        }
        if redelivered {
            frame = frame.header("redelivered", "true");
        }
        for (k, v) in self.headers.iter() {
            frame = frame.header(k, v);
        }
        frame.with_body(self.body.clone())
    }

    /// The MESSAGE for a subscription without per-delivery headers: encoded on first use,
    /// then shared.
    pub fn shared_frame(&self, subscription: &Arc<str>, version: Version) -> Message {
        let escaped = version > Version::V1_0;
        let mut cache = self.encoded.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, m)) = cache
            .iter()
            .find(|(s, e, _)| *e == escaped && **s == **subscription)
        {
            return m.clone();
        }
        let msg = Message::text_or_binary(encode_to_bytes(
            &self.frame(subscription, None, false),
            version,
        ));
        // Subscription ids are chosen by clients; most libraries use a handful ("sub-0"),
        // so a short list is enough and stays small.
        if cache.len() < 8 {
            cache.push((subscription.clone(), escaped, msg.clone()));
        }
        msg
    }

    /// A MESSAGE carrying a per-delivery `ack` id or a redelivery flag.
    pub fn own_frame(
        &self,
        subscription: &str,
        ack: Option<&str>,
        redelivered: bool,
        version: Version,
    ) -> Message {
        Message::text_or_binary(encode_to_bytes(
            &self.frame(subscription, ack, redelivered),
            version,
        ))
    }
}
