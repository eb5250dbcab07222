//! A session's inbox: one bounded queue per subscription, filled by the broker's fan-out
//! (never blocking it) and drained by the session as its client keeps up. The slow-consumer
//! policy of each subscription decides what happens when its queue is full.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::message::SharedMessage;
use crate::metrics::StompMetrics;

pub type SubKey = u32;

/// What a full subscription queue does with one more message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Policy {
    /// End the session with an ERROR: the client cannot keep up.
    Disconnect,
    /// Drop the oldest queued message to make room.
    DropOldest,
    /// Keep only the newest message per key; a new one replaces the queued one in place.
    Conflate(ConflateKey),
}

impl Policy {
    pub fn name(&self) -> &'static str {
        match self {
            Policy::Disconnect => "disconnect",
            Policy::DropOldest => "drop-oldest",
            Policy::Conflate(_) => "conflate",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConflateKey {
    Destination,
    Header(String),
}

/// Identifies a delivery the broker expects to hear back about (ACK/NACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckToken(pub u64);

pub struct Delivery {
    pub message: Arc<SharedMessage>,
    pub ack: Option<AckToken>,
    pub redelivered: bool,
    /// The MESSAGE frame, when the broker's fan-out already encoded it for this
    /// subscription (shared with every subscriber using the same id and version).
    pub frame: Option<bridge_api::Message>,
}

impl Delivery {
    fn conflation_key<'a>(&'a self, key: &ConflateKey) -> Option<&'a str> {
        match key {
            ConflateKey::Destination => Some(&self.message.destination),
            ConflateKey::Header(h) => self.message.header(h),
        }
    }
}

/// What happened to a delivery offered to a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Queued,
    /// Queued, and an older message was dropped or replaced for it.
    Displaced,
    /// The subscription overflowed under the `disconnect` policy.
    Overflow,
    /// The subscription is gone.
    Gone,
}

struct SubQueue {
    items: VecDeque<Delivery>,
    capacity: usize,
    policy: Policy,
    ready: bool,
}

#[derive(Default)]
struct State {
    subs: HashMap<SubKey, SubQueue>,
    /// Subscriptions with queued deliveries, in the order they became non-empty.
    ready: VecDeque<SubKey>,
    overflowed: Option<SubKey>,
    /// Set by a backend that lost what the session depends on.
    failure: Option<String>,
}

pub struct Inbox {
    state: Mutex<State>,
    notify: Notify,
    metrics: Arc<StompMetrics>,
}

impl Inbox {
    pub fn new(metrics: Arc<StompMetrics>) -> Arc<Inbox> {
        Arc::new(Inbox {
            state: Mutex::default(),
            notify: Notify::new(),
            metrics,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn add(&self, key: SubKey, capacity: usize, policy: Policy) {
        self.lock().subs.insert(
            key,
            SubQueue {
                items: VecDeque::new(),
                capacity: capacity.max(1),
                policy,
                ready: false,
            },
        );
    }

    /// Remove a subscription, handing back what it had not yet delivered.
    pub fn remove(&self, key: SubKey) -> Vec<Delivery> {
        let mut st = self.lock();
        st.ready.retain(|k| *k != key);
        st.subs
            .remove(&key)
            .map(|q| q.items.into_iter().collect())
            .unwrap_or_default()
    }

    /// Fan-out delivery: never waits; a full queue applies the subscription's policy.
    pub fn deliver(&self, key: SubKey, delivery: Delivery) -> Outcome {
        let outcome = {
            let mut st = self.lock();
            let Some(q) = st.subs.get_mut(&key) else {
                return Outcome::Gone;
            };
            let mut outcome = Outcome::Queued;
            if let Policy::Conflate(ck) = &q.policy {
                // At most one queued message per key, always: a newer one takes the older
                // one's place, so a key's updates never arrive out of order.
                let pos = delivery.conflation_key(ck).and_then(|nk| {
                    q.items
                        .iter()
                        .position(|d| d.conflation_key(ck) == Some(nk))
                });
                if let Some(i) = pos {
                    self.metrics.slow_consumer("conflate");
                    q.items[i] = delivery;
                    return Outcome::Displaced;
                }
            }
            if q.items.len() >= q.capacity {
                match &q.policy {
                    Policy::Disconnect => {
                        self.metrics.slow_consumer("disconnect");
                        st.overflowed.get_or_insert(key);
                        drop(st);
                        self.notify.notify_one();
                        return Outcome::Overflow;
                    }
                    // Conflate with no queued message of the same key: room is made the
                    // same way as for drop-oldest.
                    Policy::DropOldest | Policy::Conflate(_) => {
                        self.metrics.slow_consumer(q.policy.name());
                        q.items.pop_front();
                        outcome = Outcome::Displaced;
                    }
                }
            }
            q.items.push_back(delivery);
            if !q.ready {
                q.ready = true;
                st.ready.push_back(key);
            }
            outcome
        };
        self.notify.notify_one();
        outcome
    }

    /// Queue delivery (competing consumers): only if there is room, else hand it back so the
    /// broker keeps it for another consumer or later.
    pub fn offer(&self, key: SubKey, delivery: Delivery) -> Result<(), Delivery> {
        {
            let mut st = self.lock();
            let Some(q) = st.subs.get_mut(&key) else {
                return Err(delivery);
            };
            if q.items.len() >= q.capacity {
                return Err(delivery);
            }
            q.items.push_back(delivery);
            if !q.ready {
                q.ready = true;
                st.ready.push_back(key);
            }
        }
        self.notify.notify_one();
        Ok(())
    }

    /// Up to `max` deliveries, taking one subscription's queue at a time in ready order.
    pub fn take(&self, max: usize, out: &mut Vec<(SubKey, Delivery)>) {
        let mut st = self.lock();
        let st = &mut *st;
        while out.len() < max {
            let Some(key) = st.ready.pop_front() else {
                break;
            };
            let Some(q) = st.subs.get_mut(&key) else {
                continue;
            };
            while out.len() < max {
                match q.items.pop_front() {
                    Some(d) => out.push((key, d)),
                    None => break,
                }
            }
            if q.items.is_empty() {
                q.ready = false;
                if q.items.capacity() > 64 {
                    // A burst is over: an idle subscription keeps little memory.
                    q.items.shrink_to(16);
                }
            } else {
                st.ready.push_front(key);
            }
        }
    }

    pub fn has_pending(&self) -> bool {
        !self.lock().ready.is_empty()
    }

    /// End the session with an ERROR naming `reason` (e.g. a broker outage that lost its
    /// unacknowledged messages). The first failure wins.
    pub fn fail(&self, reason: String) {
        self.lock().failure.get_or_insert(reason);
        self.notify.notify_one();
    }

    pub fn failure(&self) -> Option<String> {
        self.lock().failure.clone()
    }

    /// A direct subscription's lane overflowed under `disconnect`: the session ends with an
    /// ERROR naming it.
    pub fn overflow(&self, key: SubKey) {
        self.lock().overflowed.get_or_insert(key);
        self.notify.notify_one();
    }

    /// The subscription that overflowed under `disconnect`, if any.
    pub fn overflowed(&self) -> Option<SubKey> {
        self.lock().overflowed
    }

    pub async fn notified(&self) {
        self.notify.notified().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol_stomp::Headers;

    fn msg(dest: &str, symbol: &str, n: u32) -> Delivery {
        let mut h = Headers::new();
        h.push("symbol", symbol);
        Delivery {
            message: Arc::new(SharedMessage::new(
                dest.into(),
                format!("m{n}"),
                &h,
                bytes::Bytes::from(n.to_string()),
            )),
            ack: None,
            redelivered: false,
            frame: None,
        }
    }

    fn ids(inbox: &Inbox) -> Vec<String> {
        let mut out = Vec::new();
        inbox.take(100, &mut out);
        out.into_iter()
            .map(|(_, d)| d.message.message_id.clone())
            .collect()
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let inbox = Inbox::new(StompMetrics::new("test"));
        inbox.add(1, 2, Policy::DropOldest);
        for n in 0..4 {
            inbox.deliver(1, msg("/topic/a", "X", n));
        }
        assert_eq!(ids(&inbox), vec!["m2", "m3"]);
    }

    #[test]
    fn conflate_replaces_in_place_by_key() {
        let inbox = Inbox::new(StompMetrics::new("test"));
        inbox.add(1, 2, Policy::Conflate(ConflateKey::Header("symbol".into())));
        inbox.deliver(1, msg("/topic/p", "A", 0));
        inbox.deliver(1, msg("/topic/p", "B", 1));
        assert_eq!(
            inbox.deliver(1, msg("/topic/p", "A", 2)),
            Outcome::Displaced
        );
        assert_eq!(
            inbox.deliver(1, msg("/topic/p", "B", 3)),
            Outcome::Displaced
        );
        assert_eq!(ids(&inbox), vec!["m2", "m3"]);
    }

    #[test]
    fn conflate_never_reorders_a_key() {
        let inbox = Inbox::new(StompMetrics::new("test"));
        inbox.add(1, 4, Policy::Conflate(ConflateKey::Header("symbol".into())));
        // Queue not full: still one message per key.
        inbox.deliver(1, msg("/topic/p", "A", 0));
        inbox.deliver(1, msg("/topic/p", "A", 1));
        inbox.deliver(1, msg("/topic/p", "B", 2));
        inbox.deliver(1, msg("/topic/p", "A", 3));
        assert_eq!(ids(&inbox), vec!["m3", "m2"]);
    }

    #[test]
    fn disconnect_reports_overflow() {
        let inbox = Inbox::new(StompMetrics::new("test"));
        inbox.add(7, 1, Policy::Disconnect);
        assert_eq!(inbox.deliver(7, msg("/topic/a", "X", 0)), Outcome::Queued);
        assert_eq!(inbox.deliver(7, msg("/topic/a", "X", 1)), Outcome::Overflow);
        assert_eq!(inbox.overflowed(), Some(7));
    }

    #[test]
    fn offer_refuses_when_full_and_remove_returns_the_rest() {
        let inbox = Inbox::new(StompMetrics::new("test"));
        inbox.add(1, 1, Policy::Disconnect);
        assert!(inbox.offer(1, msg("/queue/q", "X", 0)).is_ok());
        assert!(inbox.offer(1, msg("/queue/q", "X", 1)).is_err());
        assert_eq!(inbox.remove(1).len(), 1);
        assert!(!inbox.has_pending());
        assert_eq!(inbox.deliver(1, msg("/queue/q", "X", 2)), Outcome::Gone);
    }

    #[test]
    fn take_interleaves_subscriptions_fairly_in_ready_order() {
        let inbox = Inbox::new(StompMetrics::new("test"));
        inbox.add(1, 10, Policy::DropOldest);
        inbox.add(2, 10, Policy::DropOldest);
        inbox.deliver(1, msg("/topic/a", "X", 0));
        inbox.deliver(2, msg("/topic/b", "X", 1));
        inbox.deliver(1, msg("/topic/a", "X", 2));
        let mut out = Vec::new();
        inbox.take(2, &mut out);
        assert_eq!(out.len(), 2);
        assert!(inbox.has_pending());
    }
}
