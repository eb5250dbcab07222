//! The state an [`Outbox`](super::Outbox), its receiver and its lanes share: one mutex
//! over the control queue and the lanes, so the writer takes from both under one lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

use crate::{Message, Outgoing};

pub(super) struct State {
    pub(super) items: VecDeque<Outgoing>,
    /// Slots promised to outstanding permits.
    pub(super) reserved: usize,
    pub(super) senders: usize,
    pub(super) receiver_closed: bool,
    /// Fan-out lanes, written after `items` on every pass (a `Vec`: sessions have few
    /// subscriptions, and an empty one allocates nothing).
    pub(super) lanes: Vec<LaneQueue>,
    pub(super) next_lane: u32,
    /// Where the next round-robin pass over the lanes starts.
    next_rr: usize,
    /// Messages the transport has taken so far (a bridge's heart-beat check reads it).
    pub(super) taken: u64,
}

impl State {
    /// Up to `max` lane messages, round-robin from where the last pass stopped, each lane
    /// giving up to `per_lane` so one busy subscription cannot starve the others.
    pub(super) fn take_lanes(
        &mut self,
        out: &mut Vec<Outgoing>,
        max: usize,
        per_lane: usize,
    ) -> usize {
        let n = self.lanes.len();
        let mut taken = 0;
        let mut idle_in_a_row = 0;
        let mut i = self.next_rr % n.max(1);
        while taken < max && idle_in_a_row < n {
            let lane = &mut self.lanes[i];
            let got = if lane.paused {
                0
            } else {
                lane.take(per_lane.min(max - taken), out)
            };
            taken += got;
            idle_in_a_row = if got == 0 { idle_in_a_row + 1 } else { 0 };
            i = (i + 1) % n;
        }
        self.next_rr = i;
        taken
    }

    /// Everything waiting for the writer: the control queue and every lane, paused or not.
    pub(super) fn queued(&self) -> usize {
        self.items.len() + self.lanes.iter().map(|l| l.items.len()).sum::<usize>()
    }

    pub(super) fn lanes_ready(&self) -> bool {
        self.lanes.iter().any(|l| !l.paused && !l.items.is_empty())
    }

    pub(super) fn pop(&mut self) -> Option<Outgoing> {
        if let Some(x) = self.items.pop_front() {
            return Some(x);
        }
        let n = self.lanes.len();
        for step in 0..n {
            let i = (self.next_rr + step) % n;
            let lane = &mut self.lanes[i];
            if lane.paused {
                continue;
            }
            if let Some((m, _)) = lane.items.pop_front() {
                self.next_rr = i + 1;
                return Some(Outgoing::Message(m));
            }
        }
        None
    }
}

pub(super) struct Chan {
    state: Mutex<State>,
    pub(super) capacity: usize,
    /// Signalled when an item is queued or the last sender leaves.
    pub(super) item: Notify,
    /// Signalled when room frees up or the receiver leaves.
    pub(super) room: Notify,
    /// `try_send` calls refused for a full queue and not yet collected by the transport.
    /// Outside the lock: the writer reads it after every batch.
    full: AtomicU64,
}

impl Chan {
    /// Counts one sender: the `Outbox` it is made for.
    pub(super) fn new(capacity: usize) -> Self {
        Chan {
            state: Mutex::new(State {
                items: VecDeque::new(),
                reserved: 0,
                senders: 1,
                receiver_closed: false,
                lanes: Vec::new(),
                next_lane: 1,
                next_rr: 0,
                taken: 0,
            }),
            capacity: capacity.max(1),
            item: Notify::new(),
            room: Notify::new(),
            full: AtomicU64::new(0),
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(super) fn count_full(&self) {
        self.full.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn take_full(&self) -> u64 {
        // Almost always zero: a plain load leaves the cache line shared with the senders.
        if self.full.load(Ordering::Relaxed) == 0 {
            return 0;
        }
        self.full.swap(0, Ordering::Relaxed)
    }
}

/// What a full lane does with one more message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LanePolicy {
    /// Refuse it and report [`Pushed::Overflow`]: the bridge ends the session.
    Disconnect,
    /// Drop the oldest queued message to make room.
    DropOldest,
    /// At most one queued message per conflation key: a newer one takes the older one's
    /// place (so a key's updates never reorder); a message without a key, or with a key
    /// not queued yet, makes room as `DropOldest` does.
    Conflate,
}

/// What happened to a message pushed into a lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued, and an older message was dropped or replaced for it.
    Displaced,
    /// The lane is full and its policy is `Disconnect`: the message was not queued.
    Overflow,
    /// The lane or the session is gone.
    Closed,
}

pub(super) struct LaneQueue {
    pub(super) id: u32,
    /// Messages with their conflation keys.
    pub(super) items: VecDeque<(Message, Option<u64>)>,
    capacity: usize,
    policy: LanePolicy,
    /// A paused lane queues but is not written (a bridge opens a lane before it has told
    /// its client about the subscription, and resumes it after).
    pub(super) paused: bool,
}

impl LaneQueue {
    pub(super) fn new(id: u32, capacity: usize, policy: LanePolicy) -> Self {
        LaneQueue {
            id,
            items: VecDeque::new(),
            capacity: capacity.max(1),
            policy,
            paused: true,
        }
    }

    pub(super) fn push(&mut self, msg: Message, key: Option<u64>) -> Pushed {
        if self.policy == LanePolicy::Conflate {
            if let Some(k) = key {
                if let Some(slot) = self.items.iter_mut().find(|(_, qk)| *qk == Some(k)) {
                    slot.0 = msg;
                    return Pushed::Displaced;
                }
            }
        }
        let mut outcome = Pushed::Queued;
        if self.items.len() >= self.capacity {
            if self.policy == LanePolicy::Disconnect {
                return Pushed::Overflow;
            }
            self.items.pop_front();
            outcome = Pushed::Displaced;
        }
        self.items.push_back((msg, key));
        outcome
    }

    /// Move up to `max` messages into `out`; frees a burst's memory once drained.
    fn take(&mut self, max: usize, out: &mut Vec<Outgoing>) -> usize {
        let n = max.min(self.items.len());
        out.extend(self.items.drain(..n).map(|(m, _)| Outgoing::Message(m)));
        if self.items.is_empty() && self.items.capacity() > 64 {
            self.items.shrink_to(16);
        }
        n
    }
}
