//! Queues with competing consumers: round-robin delivery, per-consumer prefetch, and
//! redelivery of whatever a consumer NACKs or leaves behind unacknowledged.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use crate::backend::{AckMode, BackendError};
use crate::inbox::{AckToken, Delivery, Inbox, SubKey};
use crate::message::SharedMessage;

pub struct Consumer {
    pub session: u64,
    pub key: SubKey,
    pub inbox: Arc<Inbox>,
    pub ack: AckMode,
    /// Most unacknowledged deliveries at once; 0 = bounded only by the inbox.
    pub prefetch: usize,
    pub outstanding: usize,
}

#[derive(Clone)]
struct Stored {
    msg: Arc<SharedMessage>,
    redelivered: bool,
}

#[derive(Default)]
struct Queue {
    messages: VecDeque<Stored>,
    consumers: Vec<Consumer>,
    next: usize,
}

struct Unacked {
    queue: String,
    stored: Stored,
    session: u64,
    key: SubKey,
}

#[derive(Default)]
pub struct Queues {
    queues: HashMap<String, Queue>,
    unacked: HashMap<AckToken, Unacked>,
}

type NextId<'a> = &'a dyn Fn() -> u64;

impl Queues {
    pub fn publish(
        &mut self,
        name: &str,
        msg: Arc<SharedMessage>,
        max_depth: usize,
        next_id: NextId,
    ) -> Result<(), BackendError> {
        let q = self.queues.entry(name.to_string()).or_default();
        if q.messages.len() >= max_depth {
            return Err(BackendError::refused(format!(
                "queue {name} is full ({max_depth} messages waiting)"
            )));
        }
        q.messages.push_back(Stored {
            msg,
            redelivered: false,
        });
        self.dispatch(name, next_id);
        Ok(())
    }

    pub fn add_consumer(&mut self, name: &str, consumer: Consumer, next_id: NextId) {
        self.queues
            .entry(name.to_string())
            .or_default()
            .consumers
            .push(consumer);
        self.dispatch(name, next_id);
    }

    /// Drop a consumer. What it never got (`undelivered`, taken from its inbox) goes back
    /// unflagged; what it got but did not acknowledge goes back flagged `redelivered`.
    pub fn remove_consumer(
        &mut self,
        name: &str,
        session: u64,
        key: SubKey,
        undelivered: Vec<Delivery>,
        next_id: NextId,
    ) {
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        q.consumers
            .retain(|c| !(c.session == session && c.key == key));
        let never_sent: Vec<AckToken> = undelivered.iter().filter_map(|d| d.ack).collect();
        let mut returned: Vec<(AckToken, Stored, bool)> = Vec::new();
        self.unacked.retain(|token, u| {
            if u.session == session && u.key == key {
                returned.push((*token, u.stored.clone(), !never_sent.contains(token)));
                false
            } else {
                true
            }
        });
        // Tokens grow with delivery order: put the earliest back at the front last.
        returned.sort_by_key(|(t, _, _)| std::cmp::Reverse(t.0));
        let q = self.queues.entry(name.to_string()).or_default();
        for (_, mut stored, was_sent) in returned {
            stored.redelivered |= was_sent;
            q.messages.push_front(stored);
        }
        // Auto-ack deliveries still in the inbox were never sent: back they go, in order.
        for d in undelivered.into_iter().rev().filter(|d| d.ack.is_none()) {
            q.messages.push_front(Stored {
                msg: d.message,
                redelivered: d.redelivered,
            });
        }
        self.dispatch(name, next_id);
    }

    /// ACK (`requeue` false) or NACK (`requeue` true) one delivery.
    pub fn settle(&mut self, token: AckToken, requeue: bool, next_id: NextId) {
        let Some(u) = self.unacked.remove(&token) else {
            return;
        };
        let Some(q) = self.queues.get_mut(&u.queue) else {
            return;
        };
        if let Some(c) = q
            .consumers
            .iter_mut()
            .find(|c| c.session == u.session && c.key == u.key)
        {
            c.outstanding = c.outstanding.saturating_sub(1);
        }
        if requeue {
            let mut stored = u.stored;
            stored.redelivered = true;
            q.messages.push_front(stored);
        }
        let name = u.queue;
        self.dispatch(&name, next_id);
    }

    /// Hand waiting messages to consumers with room, round-robin.
    pub fn dispatch(&mut self, name: &str, next_id: NextId) {
        let Some(q) = self.queues.get_mut(name) else {
            return;
        };
        while let Some(front) = q.messages.front().cloned() {
            let n = q.consumers.len();
            let mut taken = false;
            for i in 0..n {
                let idx = (q.next + i) % n;
                let c = &mut q.consumers[idx];
                let acked = c.ack != AckMode::Auto;
                if acked && c.prefetch > 0 && c.outstanding >= c.prefetch {
                    continue;
                }
                let token = acked.then(|| AckToken(next_id()));
                let delivery = Delivery {
                    message: front.msg.clone(),
                    ack: token,
                    redelivered: front.redelivered,
                    frame: None,
                };
                if c.inbox.offer(c.key, delivery).is_err() {
                    continue;
                }
                if let Some(token) = token {
                    c.outstanding += 1;
                    self.unacked.insert(
                        token,
                        Unacked {
                            queue: name.to_string(),
                            stored: front.clone(),
                            session: c.session,
                            key: c.key,
                        },
                    );
                }
                q.next = (idx + 1) % n;
                q.messages.pop_front();
                taken = true;
                break;
            }
            if !taken {
                break;
            }
        }
    }

    pub fn delete(&mut self, name: &str) {
        self.queues.remove(name);
        self.unacked.retain(|_, u| u.queue != name);
    }

    /// Messages waiting in all queues (a gauge).
    pub fn depth(&self) -> usize {
        self.queues.values().map(|q| q.messages.len()).sum()
    }

    pub fn count(&self) -> usize {
        self.queues.len()
    }
}
