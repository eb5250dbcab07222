//! The last messages of a stream, in order, bounded by count and age: what a client that
//! reconnects within the window is given to catch up.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::message::SharedMessage;

pub struct Entry {
    pub seq: u64,
    pub at: Instant,
    pub message: Arc<SharedMessage>,
    /// The message marked `resumed:true`, made once for every client that catches up.
    resumed: OnceLock<Arc<SharedMessage>>,
}

impl Entry {
    pub fn resumed(&self) -> &Arc<SharedMessage> {
        self.resumed
            .get_or_init(|| Arc::new(self.message.with_header("resumed", "true")))
    }
}

/// Why a position cannot be resumed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    OtherEpoch,
    Ahead,
    TooOld,
}

impl Gap {
    pub fn reason(self) -> &'static str {
        match self {
            Gap::OtherEpoch => "the stream's history was lost since (new epoch)",
            Gap::Ahead => "the position is ahead of the stream",
            Gap::TooOld => "the position is older than the history kept",
        }
    }
}

pub struct History {
    entries: VecDeque<Entry>,
    max_len: usize,
    max_age: Duration,
    bytes: usize,
}

impl History {
    pub fn new(max_len: usize, max_age: Duration) -> History {
        History {
            entries: VecDeque::new(),
            max_len,
            max_age,
            bytes: 0,
        }
    }

    pub fn push(&mut self, seq: u64, at: Instant, message: Arc<SharedMessage>) {
        if self.max_len == 0 {
            return;
        }
        self.bytes += message.retained_bytes();
        self.entries.push_back(Entry {
            seq,
            at,
            message,
            resumed: OnceLock::new(),
        });
        while self.entries.len() > self.max_len {
            self.pop();
        }
        self.expire(at);
    }

    fn pop(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.message.retained_bytes();
        }
    }

    /// Drop what is older than the age bound.
    pub fn expire(&mut self, now: Instant) {
        while self
            .entries
            .front()
            .is_some_and(|e| now.saturating_duration_since(e.at) > self.max_age)
        {
            self.pop();
        }
        if self.entries.is_empty() && self.entries.capacity() > 64 {
            self.entries = VecDeque::new();
        }
    }

    pub fn clear(&mut self) {
        self.entries = VecDeque::new();
        self.bytes = 0;
    }

    /// The entries after `seq` (the stream is at `head` in the same epoch), or why the
    /// client cannot catch up from there.
    pub fn after(&self, seq: u64, head: u64) -> Result<impl Iterator<Item = &Entry>, Gap> {
        if seq > head {
            return Err(Gap::Ahead);
        }
        if seq < head {
            // Every message after `seq` must still be here.
            match self.entries.front() {
                Some(first) if first.seq <= seq + 1 => {}
                _ => return Err(Gap::TooOld),
            }
        }
        let start = self.entries.partition_point(|e| e.seq <= seq);
        Ok(self.entries.range(start..))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol_stomp::Headers;

    fn msg(n: u64) -> Arc<SharedMessage> {
        Arc::new(SharedMessage::new(
            "/topic/p.X".into(),
            format!("m{n}"),
            &Headers::new(),
            bytes::Bytes::from(n.to_string()),
        ))
    }

    fn seqs(h: &History, after: u64, head: u64) -> Result<Vec<u64>, Gap> {
        h.after(after, head).map(|it| it.map(|e| e.seq).collect())
    }

    #[test]
    fn catches_up_within_the_window_only() {
        let t0 = Instant::now();
        let mut h = History::new(3, Duration::from_secs(60));
        for n in 1..=5 {
            h.push(n, t0, msg(n));
        }
        assert_eq!(h.len(), 3);
        assert_eq!(seqs(&h, 2, 5), Ok(vec![3, 4, 5]));
        assert_eq!(seqs(&h, 4, 5), Ok(vec![5]));
        assert_eq!(seqs(&h, 5, 5), Ok(vec![]));
        assert_eq!(seqs(&h, 1, 5), Err(Gap::TooOld));
        assert_eq!(seqs(&h, 6, 5), Err(Gap::Ahead));
    }

    #[test]
    fn age_bound_expires_and_bytes_follow() {
        let t0 = Instant::now();
        let mut h = History::new(100, Duration::from_secs(10));
        h.push(1, t0, msg(1));
        let one = h.bytes();
        assert!(one > 0);
        h.push(2, t0 + Duration::from_secs(5), msg(2));
        h.push(3, t0 + Duration::from_secs(12), msg(3));
        assert_eq!(h.len(), 2);
        assert_eq!(h.bytes(), 2 * one);
        assert_eq!(seqs(&h, 0, 3), Err(Gap::TooOld));
        assert_eq!(seqs(&h, 1, 3), Ok(vec![2, 3]));
        h.clear();
        assert_eq!(h.bytes(), 0);
        // Caught up already with nothing kept is fine; behind is not.
        assert_eq!(seqs(&h, 3, 3), Ok(vec![]));
        assert_eq!(seqs(&h, 2, 3), Err(Gap::TooOld));
    }

    #[test]
    fn resumed_copies_are_made_once() {
        let mut h = History::new(4, Duration::from_secs(60));
        h.push(1, Instant::now(), msg(1));
        let e = h.after(0, 1).unwrap().next().unwrap();
        let a = e.resumed().clone();
        assert!(Arc::ptr_eq(&a, e.resumed()));
        assert_eq!(a.header("resumed"), Some("true"));
    }
}
