//! Lanes: bounded per-subscription queues inside a session's [`Outbox`](crate::Outbox)
//! that a broker's fan-out fills and the transport's writer drains directly, so a delivery
//! never wakes the bridge's own task. Each lane applies its slow-consumer policy when it is
//! full; the control queue (everything a bridge `send`s) is written first on every pass,
//! and lanes are taken round-robin after it.

use std::sync::Arc;

use super::chan::{Chan, Pushed};
use crate::Message;

/// A fan-out's handle on one lane of a session's outbox. Clones name the same lane; the
/// lane lives until [`Lane::close`] or the end of the session.
#[derive(Clone)]
pub struct Lane {
    pub(super) chan: Arc<Chan>,
    pub(super) id: u32,
}

impl std::fmt::Debug for Lane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lane").field("id", &self.id).finish()
    }
}

impl Lane {
    /// Queue `msg` without waiting; a full lane applies its policy. `key` is the message's
    /// conflation key (only `Conflate` lanes look at it).
    pub fn push(&self, msg: Message, key: Option<u64>) -> Pushed {
        let wake = {
            let mut st = self.chan.lock();
            if st.receiver_closed {
                return Pushed::Closed;
            }
            let Some(lane) = st.lanes.iter_mut().find(|l| l.id == self.id) else {
                return Pushed::Closed;
            };
            let outcome = lane.push(msg, key);
            (outcome, !lane.paused && outcome != Pushed::Overflow)
        };
        if wake.1 {
            self.chan.item.notify_one();
        }
        wake.0
    }

    /// Identifies the lane within its outbox.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Let the writer take this lane's messages (lanes open paused).
    pub fn resume(&self) {
        let wake = {
            let mut st = self.chan.lock();
            let Some(lane) = st.lanes.iter_mut().find(|l| l.id == self.id) else {
                return;
            };
            lane.paused = false;
            !lane.items.is_empty()
        };
        if wake {
            self.chan.item.notify_one();
        }
    }

    /// Remove the lane; what it still holds is dropped.
    pub fn close(&self) {
        let mut st = self.chan.lock();
        st.lanes.retain(|l| l.id != self.id);
        if st.lanes.is_empty() {
            st.lanes = Vec::new();
        }
    }

    /// Messages waiting in this lane.
    pub fn len(&self) -> usize {
        let st = self.chan.lock();
        st.lanes
            .iter()
            .find(|l| l.id == self.id)
            .map_or(0, |l| l.items.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LanePolicy, Outbox, Outgoing};

    fn text(s: &str) -> Message {
        Message::text(s.to_string())
    }

    fn drain(rx: &mut crate::OutboxReceiver, max: usize) -> Vec<String> {
        let mut out = Vec::new();
        rx.try_recv_many(&mut out, max);
        out.into_iter()
            .map(|o| match o {
                Outgoing::Message(m) => String::from_utf8_lossy(&m.payload()).into_owned(),
                Outgoing::Close(_) => "close".into(),
            })
            .collect()
    }

    #[test]
    fn control_queue_first_then_lanes_in_turn() {
        let (outbox, mut rx) = Outbox::channel(8);
        let a = outbox.open_lane(100, LanePolicy::DropOldest);
        let b = outbox.open_lane(100, LanePolicy::DropOldest);
        a.resume();
        b.resume();
        for i in 0..8 {
            a.push(text(&format!("a{i}")), None);
        }
        b.push(text("b0"), None);
        outbox.try_send(text("ctl")).unwrap();
        // max 8: the control message, then up to 8/4 = 2 from a lane per turn.
        assert_eq!(
            drain(&mut rx, 8),
            vec!["ctl", "a0", "a1", "b0", "a2", "a3", "a4", "a5"]
        );
        assert_eq!(drain(&mut rx, 8), vec!["a6", "a7"]);
        assert_eq!(outbox.taken(), 10);
    }

    #[tokio::test]
    async fn a_lane_push_wakes_the_receiver() {
        let (outbox, mut rx) = Outbox::channel(8);
        let lane = outbox.open_lane(4, LanePolicy::DropOldest);
        lane.resume();
        let reader = tokio::spawn(async move { rx.recv().await.is_some() });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(lane.push(text("x"), None), Pushed::Queued);
        assert!(reader.await.unwrap());
    }

    #[test]
    fn policies_when_full() {
        let (outbox, mut rx) = Outbox::channel(8);
        let strict = outbox.open_lane(1, LanePolicy::Disconnect);
        strict.resume();
        assert_eq!(strict.push(text("1"), None), Pushed::Queued);
        assert_eq!(strict.push(text("2"), None), Pushed::Overflow);
        assert_eq!(drain(&mut rx, 8), vec!["1"]);

        let latest = outbox.open_lane(2, LanePolicy::Conflate);
        latest.resume();
        assert_eq!(latest.push(text("A1"), Some(1)), Pushed::Queued);
        assert_eq!(latest.push(text("B1"), Some(2)), Pushed::Queued);
        assert_eq!(latest.push(text("A2"), Some(1)), Pushed::Displaced);
        // Full, and a new key: room is made by dropping the oldest.
        assert_eq!(latest.push(text("C1"), Some(3)), Pushed::Displaced);
        assert_eq!(drain(&mut rx, 8), vec!["B1", "C1"]);
    }

    #[test]
    fn closed_lanes_and_sessions_refuse() {
        let (outbox, mut rx) = Outbox::channel(8);
        let lane = outbox.open_lane(4, LanePolicy::DropOldest);
        lane.push(text("held"), None);
        assert_eq!(lane.len(), 1);
        lane.close();
        assert_eq!(lane.push(text("x"), None), Pushed::Closed);
        let other = outbox.open_lane(4, LanePolicy::DropOldest);
        rx.close();
        assert_eq!(other.push(text("x"), None), Pushed::Closed);
        assert!(!rx.has_queued());
    }
}
