//! The bounded queue from a bridge to its client's writer.
//!
//! Hand-written rather than a tokio `mpsc` because an idle session must stay cheap: tokio's
//! bounded channel allocates a block of slots up front (about 1.8 KiB here), this one only
//! a small header until messages are actually queued.

mod chan;
mod lane;

use std::pin::pin;
use std::sync::{Arc, Weak};

use crate::outgoing::Outgoing;
use crate::{End, EndKind, Message};
use chan::{Chan, LaneQueue};

pub use chan::{LanePolicy, Pushed};
pub use lane::Lane;

/// Why a message was not queued. The message is handed back so a caller can apply its own
/// slow-consumer policy (drop, conflate, disconnect) without having cloned it.
#[derive(Debug)]
pub enum SendError {
    /// The bounded queue is full: the client reads slower than the bridge writes.
    Full(Message),
    /// The session is over.
    Closed(Message),
}

/// The session is over; nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session closed")]
pub struct SessionClosed;

/// Messages for the client. Bounded: `send` waits for room (backpressure), `try_send`
/// reports a full queue at once, which is what fan-out code wants. Clones share the queue.
pub struct Outbox {
    chan: Arc<Chan>,
}

/// The transport's end of an [`Outbox`].
pub struct OutboxReceiver {
    chan: Arc<Chan>,
}

/// Reads how many messages wait in one session's outbox (its control queue and its lanes)
/// for the operator's view. Taking a reading locks the queue once, so it belongs on the
/// admin path, never on the per-message one. Holds the queue weakly: a probe outliving its
/// session reads 0 and keeps no memory alive.
#[derive(Clone)]
pub struct QueueDepth {
    chan: Weak<Chan>,
}

/// Room for exactly one message, reserved in an [`Outbox`].
pub struct OutboxPermit<'a> {
    chan: &'a Chan,
    used: bool,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("capacity", &self.chan.capacity)
            .finish()
    }
}

impl Clone for Outbox {
    fn clone(&self) -> Self {
        self.chan.lock().senders += 1;
        Outbox {
            chan: self.chan.clone(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let last = {
            let mut st = self.chan.lock();
            st.senders -= 1;
            st.senders == 0
        };
        if last {
            self.chan.item.notify_one();
        }
    }
}

impl Outbox {
    /// A queue holding at most `capacity` messages, and the transport's receiving end.
    pub fn channel(capacity: usize) -> (Outbox, OutboxReceiver) {
        let chan = Arc::new(Chan::new(capacity));
        (Outbox { chan: chan.clone() }, OutboxReceiver { chan })
    }

    /// Queue `item` if there is room (`Ok(None)`), else hand it back.
    fn try_push(&self, item: Outgoing) -> Result<Option<Outgoing>, Outgoing> {
        let mut st = self.chan.lock();
        if st.receiver_closed {
            return Err(item);
        }
        if st.items.len() + st.reserved >= self.chan.capacity {
            return Ok(Some(item));
        }
        st.items.push_back(item);
        drop(st);
        self.chan.item.notify_one();
        Ok(None)
    }

    async fn push(&self, mut item: Outgoing) -> Result<(), Outgoing> {
        loop {
            let mut room = pin!(self.chan.room.notified());
            room.as_mut().enable();
            match self.try_push(item)? {
                None => return Ok(()),
                Some(back) => item = back,
            }
            room.await;
        }
    }

    pub async fn send(&self, msg: Message) -> Result<(), SendError> {
        self.push(Outgoing::Message(msg))
            .await
            .map_err(|e| match e {
                Outgoing::Message(m) => SendError::Closed(m),
                Outgoing::Close(_) => unreachable!("sent a message"),
            })
    }

    pub fn try_send(&self, msg: Message) -> Result<(), SendError> {
        match self.try_push(Outgoing::Message(msg)) {
            Ok(None) => Ok(()),
            Ok(Some(Outgoing::Message(m))) => {
                self.chan.count_full();
                Err(SendError::Full(m))
            }
            Err(Outgoing::Message(m)) => Err(SendError::Closed(m)),
            _ => unreachable!("sent a message"),
        }
    }

    /// Queue as many of `msgs` as fit, from the front, under one lock: the fan-out path
    /// hands over a batch at a time. Returns how many were queued.
    pub fn try_send_many(
        &self,
        msgs: &mut std::collections::VecDeque<Message>,
    ) -> Result<usize, SessionClosed> {
        let queued = {
            let mut st = self.chan.lock();
            if st.receiver_closed {
                return Err(SessionClosed);
            }
            let room = self
                .chan
                .capacity
                .saturating_sub(st.items.len() + st.reserved);
            let n = room.min(msgs.len());
            st.items.extend(msgs.drain(..n).map(Outgoing::Message));
            n
        };
        if queued > 0 {
            self.chan.item.notify_one();
        }
        Ok(queued)
    }

    /// Wait for room for one message. Lets a bridge wait for the client to catch up while
    /// still reacting to other events in a `select!`.
    pub async fn reserve(&self) -> Result<OutboxPermit<'_>, SessionClosed> {
        loop {
            let mut room = pin!(self.chan.room.notified());
            room.as_mut().enable();
            {
                let mut st = self.chan.lock();
                if st.receiver_closed {
                    return Err(SessionClosed);
                }
                if st.items.len() + st.reserved < self.chan.capacity {
                    st.reserved += 1;
                    return Ok(OutboxPermit {
                        chan: &self.chan,
                        used: false,
                    });
                }
            }
            room.await;
        }
    }

    /// Ask the transport to end the session after what is already queued. Returns false
    /// if the session is already over.
    pub async fn end(&self, kind: EndKind, reason: impl Into<String>) -> bool {
        self.push(Outgoing::Close(End::new(kind, reason)))
            .await
            .is_ok()
    }

    /// A lane for one fan-out subscription: at most `capacity` messages, `policy` when
    /// full. It opens paused: call [`Lane::resume`] once the client may see its messages.
    pub fn open_lane(&self, capacity: usize, policy: LanePolicy) -> Lane {
        let mut st = self.chan.lock();
        let id = st.next_lane;
        st.next_lane = st.next_lane.wrapping_add(1).max(1);
        if !st.receiver_closed {
            // Most sessions hold one or two subscriptions: grow one slot at a time.
            st.lanes.reserve_exact(1);
            st.lanes.push(LaneQueue::new(id, capacity, policy));
        }
        Lane {
            chan: self.chan.clone(),
            id,
        }
    }

    /// How many messages the transport has taken from this outbox and its lanes so far:
    /// a bridge that sends heart-beats only when the link is quiet compares two readings.
    pub fn taken(&self) -> u64 {
        self.chan.lock().taken
    }

    pub fn is_closed(&self) -> bool {
        self.chan.lock().receiver_closed
    }

    /// Free slots right now.
    pub fn room(&self) -> usize {
        let st = self.chan.lock();
        self.chan
            .capacity
            .saturating_sub(st.items.len() + st.reserved)
    }
}

impl QueueDepth {
    /// A probe that always reads 0 (a session without a queue, tests).
    pub fn none() -> Self {
        QueueDepth { chan: Weak::new() }
    }

    /// Messages queued and not yet taken by the transport.
    pub fn get(&self) -> usize {
        self.chan.upgrade().map_or(0, |chan| chan.lock().queued())
    }
}

impl std::fmt::Debug for QueueDepth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("QueueDepth").field(&self.get()).finish()
    }
}

impl OutboxPermit<'_> {
    pub fn send(mut self, msg: Message) {
        self.used = true;
        let mut st = self.chan.lock();
        st.reserved -= 1;
        if !st.receiver_closed {
            st.items.push_back(Outgoing::Message(msg));
        }
        drop(st);
        self.chan.item.notify_one();
    }
}

impl Drop for OutboxPermit<'_> {
    fn drop(&mut self) {
        if !self.used {
            self.chan.lock().reserved -= 1;
            self.chan.room.notify_waiters();
        }
    }
}

impl OutboxReceiver {
    /// The next queued item; `None` once every sender is gone and the queue is empty.
    pub async fn recv(&mut self) -> Option<Outgoing> {
        loop {
            let mut item = pin!(self.chan.item.notified());
            item.as_mut().enable();
            {
                let mut st = self.chan.lock();
                let from_items = !st.items.is_empty();
                if let Some(x) = st.pop() {
                    st.taken += 1;
                    drop(st);
                    if from_items {
                        self.chan.room.notify_waiters();
                    }
                    return Some(x);
                }
                if st.senders == 0 {
                    return None;
                }
            }
            item.await;
        }
    }

    pub fn try_recv(&mut self) -> Option<Outgoing> {
        let (x, from_items) = {
            let mut st = self.chan.lock();
            let from_items = !st.items.is_empty();
            let x = st.pop();
            if x.is_some() {
                st.taken += 1;
            }
            (x, from_items)
        };
        if x.is_some() && from_items {
            self.chan.room.notify_waiters();
        }
        x
    }

    /// Up to `max` queued items at once, under one lock: the control queue first, then
    /// the lanes round-robin (up to `max / 4` from one lane per turn, at least 1).
    pub fn try_recv_many(&mut self, out: &mut Vec<Outgoing>, max: usize) {
        let from_items = {
            let mut st = self.chan.lock();
            let n = max.min(st.items.len());
            out.extend(st.items.drain(..n));
            if st.items.is_empty() && st.items.capacity() > 64 {
                // A burst is over: do not keep its memory on an idle session.
                st.items.shrink_to(16);
            }
            let from_lanes = if n < max && !st.lanes.is_empty() {
                st.take_lanes(out, max - n, (max / 4).max(1))
            } else {
                0
            };
            st.taken += (n + from_lanes) as u64;
            n
        };
        if from_items > 0 {
            self.chan.room.notify_waiters();
        }
    }

    /// How many `try_send` calls found the queue full since the last call: the transport
    /// counts them as limit trips, so the seam itself records no metrics.
    pub fn take_full(&self) -> u64 {
        self.chan.take_full()
    }

    /// Whether anything is queued for the writer right now.
    pub fn has_queued(&self) -> bool {
        let st = self.chan.lock();
        !st.items.is_empty() || st.lanes_ready()
    }

    /// A probe of this queue's depth, for the gateway's session registry.
    pub fn depth(&self) -> QueueDepth {
        QueueDepth {
            chan: Arc::downgrade(&self.chan),
        }
    }

    /// Refuse further messages; waiting senders see the session closed.
    pub fn close(&mut self) {
        {
            let mut st = self.chan.lock();
            st.receiver_closed = true;
            st.items.clear();
            // Free memory held by a burst that will never be written now.
            st.items.shrink_to_fit();
            st.lanes = Vec::new();
        }
        self.chan.room.notify_waiters();
    }
}

impl Drop for OutboxReceiver {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn text(s: &str) -> Message {
        Message::text(s.to_string())
    }

    #[tokio::test]
    async fn bounded_with_try_send_and_waiting_send() {
        let (tx, mut rx) = Outbox::channel(2);
        tx.try_send(text("a")).unwrap();
        tx.try_send(text("b")).unwrap();
        assert!(matches!(tx.try_send(text("c")), Err(SendError::Full(_))));
        assert_eq!(rx.take_full(), 1);
        assert_eq!(rx.take_full(), 0);
        let tx2 = tx.clone();
        let waiting = tokio::spawn(async move { tx2.send(text("c")).await.is_ok() });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished());
        assert!(matches!(rx.recv().await, Some(Outgoing::Message(_))));
        assert!(waiting.await.unwrap());
        assert_eq!(tx.room(), 0);
    }

    #[tokio::test]
    async fn recv_ends_when_all_senders_leave() {
        let (tx, mut rx) = Outbox::channel(4);
        tx.try_send(text("last")).unwrap();
        drop(tx);
        assert!(rx.recv().await.is_some());
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test]
    async fn closed_receiver_fails_senders_and_wakes_waiters() {
        let (tx, mut rx) = Outbox::channel(1);
        tx.try_send(text("x")).unwrap();
        let tx2 = tx.clone();
        let waiting = tokio::spawn(async move { tx2.send(text("y")).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        rx.close();
        assert!(matches!(waiting.await.unwrap(), Err(SendError::Closed(_))));
        assert!(tx.is_closed());
        assert!(matches!(tx.try_send(text("z")), Err(SendError::Closed(_))));
    }

    #[tokio::test]
    async fn permits_hold_room_until_used_or_dropped() {
        let (tx, mut rx) = Outbox::channel(1);
        let permit = tx.reserve().await.unwrap();
        assert!(matches!(tx.try_send(text("a")), Err(SendError::Full(_))));
        drop(permit);
        let permit = tx.reserve().await.unwrap();
        permit.send(text("b"));
        match rx.recv().await {
            Some(Outgoing::Message(m)) => assert_eq!(m, text("b")),
            _ => panic!("expected the permitted message"),
        }
    }

    #[tokio::test]
    async fn batches_in_and_out() {
        let (tx, mut rx) = Outbox::channel(3);
        let mut msgs: std::collections::VecDeque<Message> =
            ["a", "b", "c", "d"].iter().map(|s| text(s)).collect();
        assert_eq!(tx.try_send_many(&mut msgs).unwrap(), 3);
        assert_eq!(msgs.len(), 1);
        let mut out = Vec::new();
        rx.try_recv_many(&mut out, 2);
        assert_eq!(out.len(), 2);
        assert_eq!(tx.try_send_many(&mut msgs).unwrap(), 1);
        rx.try_recv_many(&mut out, 10);
        assert_eq!(out.len(), 4);
    }

    #[tokio::test]
    async fn depth_counts_queue_and_lanes_until_the_session_is_gone() {
        let (tx, mut rx) = Outbox::channel(4);
        let depth = rx.depth();
        assert_eq!(depth.get(), 0);
        tx.try_send(text("a")).unwrap();
        tx.try_send(text("b")).unwrap();
        let lane = tx.open_lane(8, LanePolicy::DropOldest);
        lane.push(text("c"), None);
        lane.resume();
        assert_eq!(depth.get(), 3);
        assert!(rx.try_recv().is_some());
        assert_eq!(depth.get(), 2);
        drop((tx, lane, rx));
        assert_eq!(depth.get(), 0);
        assert_eq!(QueueDepth::none().get(), 0);
    }

    #[tokio::test]
    async fn close_request_is_queued_in_order() {
        let (tx, mut rx) = Outbox::channel(4);
        tx.try_send(text("a")).unwrap();
        assert!(tx.end(EndKind::Normal, "bye").await);
        assert!(matches!(rx.try_recv(), Some(Outgoing::Message(_))));
        match rx.try_recv() {
            Some(Outgoing::Close(end)) => assert_eq!(end, End::new(EndKind::Normal, "bye")),
            other => panic!("expected the end, got {other:?}"),
        }
        assert!(rx.try_recv().is_none());
    }
}
