//! The down replay buffer of one session: every event handed to the client, as its encoded
//! bytes, until the client acknowledges it (a later `Last-Event-ID`, or `ack` in a POST).
//!
//! Bounded by bytes. Events a stream has already taken are evicted oldest first when room
//! is needed (a resume from before them then fails: "events lost"); events no stream has
//! taken yet are never evicted: more of them than the bound makes the buffer `is_full`, and
//! the session stops taking from its outbox (backpressure, as a full socket is for
//! WebSocket) until a stream takes them. One event always fits, however large.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Why a stream cannot resume where the client says it is.
#[derive(Debug, PartialEq, Eq)]
pub enum ResumeError {
    /// Events after the client's last id were evicted.
    Lost,
    /// The client names an id this session never sent.
    Ahead,
}

struct Entry {
    id: u64,
    bytes: Bytes,
}

pub struct ReplayBuffer {
    /// Consecutive ids, oldest first.
    entries: VecDeque<Entry>,
    bytes: usize,
    /// Bytes of the events after `sent`.
    unsent: usize,
    limit: usize,
    next_id: u64,
    /// The highest id a stream has taken.
    sent: u64,
    /// The newest batch as one chunk (its events are slices of it), so a stream that takes
    /// exactly that batch writes it without copying.
    last_batch: Option<(u64, Bytes)>,
}

impl ReplayBuffer {
    pub fn new(limit: usize) -> Self {
        ReplayBuffer {
            entries: VecDeque::new(),
            bytes: 0,
            unsent: 0,
            limit,
            next_id: 1,
            sent: 0,
            last_batch: None,
        }
    }

    /// The id the next event gets (the first is 1).
    #[cfg(test)]
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// The newest id given out so far (0: none).
    fn newest(&self) -> u64 {
        self.next_id - 1
    }

    fn oldest_kept(&self) -> u64 {
        self.entries.front().map_or(self.next_id, |e| e.id)
    }

    /// Bytes held (for tests and memory accounting).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.bytes
    }

    /// More untaken events than the bound: take no more until a stream takes these.
    pub fn is_full(&self) -> bool {
        self.unsent > self.limit && self.newest() - self.sent > 1
    }

    /// Whether a stream has events to take.
    pub fn has_pending(&self) -> bool {
        self.sent < self.newest()
    }

    /// Appends one encoded batch: `chunk` holds events `next_id..`, the n-th ending at
    /// `ends[n]`.
    pub fn push_batch(&mut self, chunk: Bytes, ends: &[usize]) {
        if ends.is_empty() {
            return;
        }
        let first = self.next_id;
        let mut start = 0;
        for &end in ends {
            self.entries.push_back(Entry {
                id: self.next_id,
                bytes: chunk.slice(start..end),
            });
            self.next_id += 1;
            start = end;
        }
        self.bytes += chunk.len();
        self.unsent += chunk.len();
        self.last_batch = Some((first, chunk));
        while self.bytes > self.limit {
            match self.entries.front() {
                Some(e) if e.id <= self.sent => self.pop_front(),
                _ => break,
            }
        }
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.bytes.len();
            if self
                .last_batch
                .as_ref()
                .is_some_and(|(first, _)| *first <= e.id)
            {
                self.last_batch = None;
            }
        }
        if self.entries.is_empty() && self.entries.capacity() > 64 {
            // A burst is over: an idle session keeps no memory for it.
            self.entries.shrink_to(8);
        }
    }

    /// What no stream has taken yet, as one chunk of at most `budget` bytes (but at least
    /// one event); the stream now has it.
    pub fn take_pending(&mut self, budget: usize) -> Option<Bytes> {
        if !self.has_pending() {
            return None;
        }
        let from = self.sent + 1;
        let newest = self.newest();
        if let Some((first, chunk)) = self.last_batch.take() {
            if first == from && chunk.len() <= budget {
                self.sent = newest;
                self.unsent = 0;
                return Some(chunk);
            }
        }
        let skip = (from - self.oldest_kept()) as usize;
        let mut len = 0;
        let mut count = 0;
        for e in self.entries.range(skip..) {
            if count > 0 && len + e.bytes.len() > budget {
                break;
            }
            len += e.bytes.len();
            count += 1;
        }
        let mut out = BytesMut::with_capacity(len);
        for e in self.entries.range(skip..skip + count) {
            out.extend_from_slice(&e.bytes);
        }
        self.sent += count as u64;
        self.unsent -= len;
        Some(out.freeze())
    }

    /// The client has every event up to `id`: they need not be kept.
    pub fn ack(&mut self, id: u64) {
        let id = id.min(self.sent);
        while self.entries.front().is_some_and(|e| e.id <= id) {
            self.pop_front();
        }
    }

    /// A new stream starts after `last` (the client's `Last-Event-ID`; `None`: everything
    /// still kept). What follows is sent again; what precedes is acknowledged.
    pub fn resume(&mut self, last: Option<u64>) -> Result<(), ResumeError> {
        let last = last.unwrap_or(self.oldest_kept() - 1);
        if last > self.newest() {
            return Err(ResumeError::Ahead);
        }
        if last + 1 < self.oldest_kept() {
            return Err(ResumeError::Lost);
        }
        self.sent = last;
        self.last_batch = None;
        self.ack(last);
        self.unsent = self.bytes;
        Ok(())
    }

    /// Nothing kept is sent again (the stream that asked gets only the session's end).
    pub fn skip_all(&mut self) {
        self.sent = self.newest();
        self.unsent = 0;
        self.last_batch = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of events `"<id>;"` for the next `n` ids.
    fn batch(b: &mut ReplayBuffer, n: u64) {
        let mut chunk = BytesMut::new();
        let mut ends = Vec::new();
        for id in b.next_id()..b.next_id() + n {
            chunk.extend_from_slice(format!("{id:03};").as_bytes());
            ends.push(chunk.len());
        }
        b.push_batch(chunk.freeze(), &ends);
    }

    fn take(b: &mut ReplayBuffer) -> String {
        String::from_utf8(
            b.take_pending(usize::MAX)
                .map(|c| c.to_vec())
                .unwrap_or_default(),
        )
        .unwrap()
    }

    #[test]
    fn a_stream_takes_each_event_once_and_a_whole_batch_without_copying() {
        let mut b = ReplayBuffer::new(1000);
        batch(&mut b, 3);
        let chunk = b.last_batch.as_ref().unwrap().1.clone();
        let taken = b.take_pending(usize::MAX).unwrap();
        assert_eq!(
            taken.as_ptr(),
            chunk.as_ptr(),
            "the batch went out as it was"
        );
        assert_eq!(&taken[..], b"001;002;003;");
        assert!(b.take_pending(usize::MAX).is_none());
        batch(&mut b, 1);
        batch(&mut b, 2);
        assert_eq!(take(&mut b), "004;005;006;");
    }

    #[test]
    fn resume_sends_again_what_followed_and_acks_what_preceded() {
        let mut b = ReplayBuffer::new(1000);
        batch(&mut b, 5);
        take(&mut b);
        b.resume(Some(2)).unwrap();
        assert_eq!(take(&mut b), "003;004;005;");
        assert_eq!(b.held(), 12, "1 and 2 were acknowledged");
        b.resume(None).unwrap();
        assert_eq!(take(&mut b), "003;004;005;", "no id: everything kept");
        assert_eq!(b.resume(Some(9)), Err(ResumeError::Ahead));
        assert_eq!(b.resume(Some(1)), Err(ResumeError::Lost));
        b.resume(Some(5)).unwrap();
        assert_eq!(b.held(), 0);
        assert!(b.take_pending(usize::MAX).is_none());
    }

    #[test]
    fn acks_trim_only_what_was_sent() {
        let mut b = ReplayBuffer::new(1000);
        batch(&mut b, 4);
        b.ack(3);
        assert_eq!(b.held(), 16, "nothing sent yet, nothing trimmed");
        take(&mut b);
        b.ack(3);
        assert_eq!(b.held(), 4);
        b.ack(100);
        assert_eq!(b.held(), 0);
    }

    #[test]
    fn sent_events_are_evicted_for_room_and_resuming_before_them_is_lost() {
        let mut b = ReplayBuffer::new(20); // five events of four bytes
        batch(&mut b, 5);
        take(&mut b);
        batch(&mut b, 3); // evicts 1..3
        assert_eq!(b.held(), 20);
        assert_eq!(b.resume(Some(1)), Err(ResumeError::Lost));
        b.resume(Some(3)).unwrap();
        assert_eq!(take(&mut b), "004;005;006;007;008;");
    }

    #[test]
    fn untaken_events_beyond_the_bound_fill_it_but_one_always_fits() {
        let mut b = ReplayBuffer::new(20);
        batch(&mut b, 5);
        assert!(!b.is_full());
        batch(&mut b, 1);
        assert!(b.is_full(), "untaken events are never evicted");
        assert_eq!(b.held(), 24);
        take(&mut b);
        assert!(!b.is_full());
        batch(&mut b, 1);
        assert_eq!(b.held(), 20, "taken ones make room");
        assert_eq!(b.resume(Some(1)), Err(ResumeError::Lost));
        b.resume(Some(2)).unwrap();
        assert!(!b.is_full(), "20 bytes to send again fit");
        let mut big = ReplayBuffer::new(20);
        big.push_batch(Bytes::from(vec![b'x'; 100]), &[100]);
        assert!(!big.is_full());
        assert_eq!(take(&mut big).len(), 100);
    }

    #[test]
    fn a_budget_limits_what_one_take_writes() {
        let mut b = ReplayBuffer::new(1000);
        batch(&mut b, 5);
        assert_eq!(
            String::from_utf8(b.take_pending(9).unwrap().to_vec()).unwrap(),
            "001;002;"
        );
        assert_eq!(
            String::from_utf8(b.take_pending(1).unwrap().to_vec()).unwrap(),
            "003;",
            "at least one event"
        );
        assert_eq!(take(&mut b), "004;005;");
    }

    #[test]
    fn skip_all_leaves_nothing_pending() {
        let mut b = ReplayBuffer::new(100);
        batch(&mut b, 2);
        b.skip_all();
        assert!(b.take_pending(usize::MAX).is_none());
    }
}
