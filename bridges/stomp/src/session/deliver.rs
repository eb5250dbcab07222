//! Moving deliveries from the inbox to the client, as many per wake-up as the outbox has
//! room for, so a busy subscriber costs one wake-up per batch rather than per message.

use bridge_api::{OutboxPermit, SendError};
use protocol_stomp::Version;
use tokio::time::Instant;

use super::{PendingAck, StompSession};
use crate::backend::AckMode;
use crate::destination::Destination;

const MAX_BATCH: usize = 64;

impl StompSession<'_> {
    pub(super) async fn deliver(&mut self, permit: OutboxPermit<'_>) {
        let room = (self.outbox.room() + 1).min(MAX_BATCH);
        let mut batch = Vec::with_capacity(room);
        self.inbox.take(room, &mut batch);
        let mut permit = Some(permit);
        let mut drained: Vec<u32> = Vec::new();
        let mut out = std::mem::take(&mut self.out_scratch);
        for (key, delivery) in batch {
            let Some(sub_id) = self.by_key.get(&key) else {
                continue;
            };
            let Some(sub) = self.subs.get_mut(sub_id) else {
                continue;
            };
            let needs_ack = sub.ack != AckMode::Auto;
            let msg = if let Some(frame) = delivery.frame {
                frame
            } else if !needs_ack && !delivery.redelivered {
                delivery.message.shared_frame(&sub.id, self.version)
            } else {
                let ack_id = if self.version == Version::V1_2 {
                    self.next_ack += 1;
                    format!("{}-{}", self.info.id, self.next_ack)
                } else {
                    delivery.message.message_id.clone()
                };
                if needs_ack {
                    sub.outstanding.push_back(ack_id.clone());
                    self.acks.insert(
                        ack_id.clone(),
                        PendingAck {
                            key,
                            token: delivery.ack,
                        },
                    );
                }
                let ack_header =
                    (needs_ack && self.version == Version::V1_2).then_some(ack_id.as_str());
                delivery
                    .message
                    .own_frame(&sub.id, ack_header, delivery.redelivered, self.version)
            };
            if matches!(
                sub.destination,
                Destination::Queue(_) | Destination::TempQueue(_) | Destination::AmqQueue(_)
            ) && !drained.contains(&key)
            {
                drained.push(key);
            }
            match permit.take() {
                Some(p) => p.send(msg),
                None => out.push_back(msg),
            }
        }
        let sent = (out.len() + usize::from(permit.is_none())) as u64;
        drop(permit);
        // One lock for the whole batch; whatever did not fit waits for room (the client
        // reads slower than its subscriptions produce).
        while !out.is_empty() {
            match self.outbox.try_send_many(&mut out) {
                Err(_) => {
                    out.clear();
                    break;
                }
                Ok(_) if out.is_empty() => break,
                Ok(_) => {
                    let Some(msg) = out.pop_front() else { break };
                    if let Err(SendError::Closed(_)) = self.outbox.send(msg).await {
                        out.clear();
                        break;
                    }
                }
            }
        }
        self.out_scratch = out;
        if sent > 0 {
            self.last_sent = Instant::now();
            self.bridge.metrics.delivered(sent);
        }
        if let Some(backend) = self.backend.as_deref_mut() {
            for key in drained {
                backend.drained(key);
            }
        }
    }
}
