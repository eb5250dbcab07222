//! Local fan-out: one published (or upstream-delivered) topic message handed to every local
//! subscriber, the same way for the embedded broker, RabbitMQ's shared upstream queues and a
//! STOMP broker's shared subscriptions.
//!
//! An `ack:auto` subscriber is *direct*: its MESSAGE frame (encoded once per subscription id
//! and version, shared by every subscriber using them) goes straight into a lane of the
//! client's outbox, which the transport's writer drains; the subscriber's session task is
//! not woken. A subscriber that needs per-delivery state (ack ids, redelivery flags) gets
//! the delivery in its session's inbox instead. Either way fan-out never waits: a full
//! queue applies the subscription's slow-consumer policy.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};

use bridge_api::{Lane, LanePolicy, Pushed};
use protocol_stomp::Version;

use crate::inbox::{ConflateKey, Delivery, Inbox, Outcome, Policy, SubKey};
use crate::message::SharedMessage;
use crate::metrics::StompMetrics;

/// A direct subscriber's lane and what its frames are encoded for.
pub struct DirectSub {
    pub lane: Lane,
    pub id: Arc<str>,
    pub version: Version,
    policy: Policy,
    /// Told when the lane overflows under `disconnect`, so the session ends with an ERROR.
    inbox: Arc<Inbox>,
    key: SubKey,
}

impl std::fmt::Debug for DirectSub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectSub")
            .field("id", &self.id)
            .field("version", &self.version)
            .field("policy", &self.policy)
            .finish()
    }
}

impl DirectSub {
    pub fn new(
        lane: Lane,
        id: Arc<str>,
        version: Version,
        policy: Policy,
        inbox: Arc<Inbox>,
        key: SubKey,
    ) -> Self {
        DirectSub {
            lane,
            id,
            version,
            policy,
            inbox,
            key,
        }
    }

    /// The lane policy that carries out a subscription's slow-consumer policy.
    pub fn lane_policy(policy: &Policy) -> LanePolicy {
        match policy {
            Policy::Disconnect => LanePolicy::Disconnect,
            Policy::DropOldest => LanePolicy::DropOldest,
            Policy::Conflate(_) => LanePolicy::Conflate,
        }
    }

    fn conflation_key(&self, msg: &SharedMessage) -> Option<u64> {
        let Policy::Conflate(key) = &self.policy else {
            return None;
        };
        let value = match key {
            ConflateKey::Destination => Some(msg.destination.as_str()),
            ConflateKey::Header(h) => msg.header(h),
        }?;
        // 64 bits of SipHash: two live keys of one subscription colliding is not a
        // practical concern, and comparing hashes keeps queued items small.
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        value.hash(&mut hasher);
        Some(hasher.finish())
    }
}

/// Where one local subscriber's deliveries go.
#[derive(Clone)]
pub enum Target {
    Direct(Arc<DirectSub>),
    Session {
        inbox: Arc<Inbox>,
        key: SubKey,
    },
    /// A stream's feed: the stream numbers and keeps the message, then fans it out to the
    /// subscriptions inside it.
    Stream(Arc<crate::stream::Stream>),
}

/// One local subscriber of a topic (an embedded topic-tree entry or a shared upstream's).
#[derive(Clone)]
pub struct LocalSub {
    pub session: u64,
    pub key: SubKey,
    pub target: Target,
}

/// Fan-out of messages to local subscribers, counting whom they reached. Each MESSAGE
/// frame is encoded once per (subscription id, version) by `SharedMessage::shared_frame`
/// and shared by every subscriber using them.
pub struct FanOut {
    metrics: Arc<StompMetrics>,
    delivered: u64,
    /// Of those, the ones queued straight for the client (the session counts the rest as
    /// it hands them over).
    direct: u64,
}

impl FanOut {
    pub fn new(metrics: &Arc<StompMetrics>) -> FanOut {
        FanOut {
            metrics: metrics.clone(),
            delivered: 0,
            direct: 0,
        }
    }

    /// Hand `msg` to `sub`; never waits.
    pub fn deliver(&mut self, msg: &Arc<SharedMessage>, sub: &LocalSub) {
        match &sub.target {
            Target::Direct(d) => {
                let frame = msg.shared_frame(&d.id, d.version);
                match d.lane.push(frame, d.conflation_key(msg)) {
                    Pushed::Queued => {
                        self.delivered += 1;
                        self.direct += 1;
                    }
                    Pushed::Displaced => {
                        self.delivered += 1;
                        self.direct += 1;
                        self.metrics.slow_consumer(d.policy.name());
                    }
                    Pushed::Overflow => {
                        self.metrics.slow_consumer("disconnect");
                        d.inbox.overflow(d.key);
                    }
                    Pushed::Closed => {}
                }
            }
            Target::Stream(stream) => {
                stream.publish(msg);
                self.delivered += 1;
            }
            Target::Session { inbox, key } => {
                let outcome = inbox.deliver(
                    *key,
                    Delivery {
                        message: msg.clone(),
                        ack: None,
                        redelivered: false,
                        frame: None,
                    },
                );
                if matches!(outcome, Outcome::Queued | Outcome::Displaced) {
                    self.delivered += 1;
                }
            }
        }
    }

    /// How many subscribers were reached since the last call.
    pub fn finish(&mut self) -> u64 {
        let direct = std::mem::take(&mut self.direct);
        if direct > 0 {
            self.metrics.delivered(direct);
        }
        std::mem::take(&mut self.delivered)
    }
}

/// The local subscribers of one shared upstream subscription, by (session, key). Fan-out
/// reads them while delivering; joining and leaving take them for writing.
#[derive(Default)]
pub struct Locals {
    subs: RwLock<HashMap<(u64, SubKey), LocalSub>>,
}

impl Locals {
    pub fn join(&self, sub: LocalSub) {
        self.write().insert((sub.session, sub.key), sub);
    }

    /// Remove a subscriber; returns how many are left, or `None` if it was not there.
    pub fn leave(&self, session: u64, key: SubKey) -> Option<usize> {
        let mut subs = self.write();
        subs.remove(&(session, key))?;
        Some(subs.len())
    }

    /// Remove everyone; returns how many there were.
    pub fn clear(&self) -> usize {
        let mut subs = self.write();
        let n = subs.len();
        subs.clear();
        n
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    /// The upstream subscription lost messages: streams it feeds start a new epoch.
    pub fn history_lost(&self) {
        for sub in self.read().values() {
            if let Target::Stream(s) = &sub.target {
                s.history_lost();
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Deliver `msg` to every local subscriber; returns how many it reached.
    pub fn fan_out(&self, msg: &Arc<SharedMessage>, fan: &mut FanOut) -> u64 {
        for sub in self.read().values() {
            fan.deliver(msg, sub);
        }
        fan.finish()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<(u64, SubKey), LocalSub>> {
        self.subs.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<(u64, SubKey), LocalSub>> {
        self.subs.write().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metrics() -> Arc<StompMetrics> {
        StompMetrics::new("test")
    }
    use bridge_api::{Message, Outbox, Outgoing};
    use protocol_stomp::Headers;

    fn msg(dest: &str, symbol: &str, n: u32) -> Arc<SharedMessage> {
        let mut h = Headers::new();
        h.push("symbol", symbol);
        Arc::new(SharedMessage::new(
            dest.into(),
            format!("m{n}"),
            &h,
            bytes::Bytes::from(n.to_string()),
        ))
    }

    fn direct(outbox: &Outbox, inbox: &Arc<Inbox>, cap: usize, policy: Policy) -> LocalSub {
        let lane = outbox.open_lane(cap, DirectSub::lane_policy(&policy));
        lane.resume();
        LocalSub {
            session: 1,
            key: 1,
            target: Target::Direct(Arc::new(DirectSub::new(
                lane,
                "sub-0".into(),
                Version::V1_2,
                policy,
                inbox.clone(),
                1,
            ))),
        }
    }

    fn bodies(rx: &mut bridge_api::OutboxReceiver) -> Vec<String> {
        let mut out = Vec::new();
        rx.try_recv_many(&mut out, 1000);
        out.into_iter()
            .map(|o| match o {
                Outgoing::Message(m) => {
                    let p = m.payload();
                    let s = String::from_utf8_lossy(&p).to_string();
                    // The body sits between the blank line and the NUL.
                    s.split("\n\n")
                        .nth(1)
                        .unwrap()
                        .trim_end_matches('\0')
                        .to_string()
                }
                Outgoing::Close(_) => "close".into(),
            })
            .collect()
    }

    #[test]
    fn direct_delivery_keeps_order_and_shares_the_frame() {
        let (outbox, mut rx) = Outbox::channel(8);
        let (outbox2, mut rx2) = Outbox::channel(8);
        let inbox = Inbox::new(metrics());
        let a = direct(&outbox, &inbox, 100, Policy::DropOldest);
        let b = direct(&outbox2, &inbox, 100, Policy::DropOldest);
        let mut fan = FanOut::new(&metrics());
        for n in 0..50 {
            let m = msg("/topic/p", "X", n);
            fan.deliver(&m, &a);
            fan.deliver(&m, &b);
            assert_eq!(fan.finish(), 2);
        }
        let want: Vec<String> = (0..50).map(|n| n.to_string()).collect();
        assert_eq!(bodies(&mut rx), want);
        assert_eq!(bodies(&mut rx2), want);
        // Nothing went through the session.
        assert!(!inbox.has_pending());
    }

    #[test]
    fn a_full_lane_applies_its_policy() {
        let inbox = Inbox::new(metrics());
        let (outbox, mut rx) = Outbox::channel(8);
        let drop = direct(&outbox, &inbox, 2, Policy::DropOldest);
        let mut fan = FanOut::new(&metrics());
        for n in 0..5 {
            fan.deliver(&msg("/topic/p", "X", n), &drop);
        }
        assert_eq!(bodies(&mut rx), vec!["3", "4"]);

        let (outbox, mut rx) = Outbox::channel(8);
        let conflate = direct(
            &outbox,
            &inbox,
            4,
            Policy::Conflate(ConflateKey::Header("symbol".into())),
        );
        for (n, sym) in ["A", "B", "A", "C", "B"].iter().enumerate() {
            fan.deliver(&msg("/topic/p", sym, n as u32), &conflate);
        }
        assert_eq!(bodies(&mut rx), vec!["2", "4", "3"]);

        let (outbox, _rx) = Outbox::channel(8);
        let strict = direct(&outbox, &inbox, 1, Policy::Disconnect);
        fan.deliver(&msg("/topic/p", "X", 0), &strict);
        assert_eq!(inbox.overflowed(), None);
        fan.deliver(&msg("/topic/p", "X", 1), &strict);
        assert_eq!(inbox.overflowed(), Some(1));
    }

    #[test]
    fn a_paused_lane_holds_its_messages_until_resumed() {
        let inbox = Inbox::new(metrics());
        let (outbox, mut rx) = Outbox::channel(8);
        let lane = outbox.open_lane(10, LanePolicy::DropOldest);
        let sub = LocalSub {
            session: 1,
            key: 1,
            target: Target::Direct(Arc::new(DirectSub::new(
                lane.clone(),
                "s".into(),
                Version::V1_2,
                Policy::DropOldest,
                inbox,
                1,
            ))),
        };
        let mut fan = FanOut::new(&metrics());
        fan.deliver(&msg("/topic/p", "X", 7), &sub);
        outbox.try_send(Message::text("RECEIPT")).unwrap();
        let mut out = Vec::new();
        rx.try_recv_many(&mut out, 10);
        assert_eq!(out.len(), 1, "only the receipt");
        lane.resume();
        assert_eq!(bodies(&mut rx), vec!["7"]);
    }

    #[test]
    fn locals_join_leave_and_fan_out() {
        let inbox = Inbox::new(metrics());
        let locals = Locals::default();
        inbox.add(3, 10, Policy::DropOldest);
        locals.join(LocalSub {
            session: 9,
            key: 3,
            target: Target::Session {
                inbox: inbox.clone(),
                key: 3,
            },
        });
        let mut fan = FanOut::new(&metrics());
        assert_eq!(locals.fan_out(&msg("/topic/p", "X", 1), &mut fan), 1);
        assert!(inbox.has_pending());
        assert_eq!(locals.leave(9, 3), Some(0));
        assert_eq!(locals.leave(9, 3), None);
        assert!(locals.is_empty());
    }
}
