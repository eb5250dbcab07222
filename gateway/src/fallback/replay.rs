//! The down replay buffer of one session: every event handed to the client, as its encoded
//! bytes, until the client acknowledges it (a later `Last-Event-ID`, or `ack` in a POST).
//!
//! Bounded by bytes. Events a stream has already taken are evicted oldest first when room
//! is needed (a resume from before them then fails: "events lost"); events no stream has
//! taken yet are never evicted, and more of them than the bound means the client is not
//! reading (`Overflow`). One event always fits, however large, so a message the bridge may
//! send is never an overflow on its own.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// The events no stream has taken exceed the bound.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

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

    /// Whether a stream has events to take.
    pub fn has_pending(&self) -> bool {
        self.sent < self.newest()
    }

    /// Appends one encoded batch: `chunk` holds events `next_id..`, the n-th ending at
    /// `ends[n]`.
    pub fn push_batch(&mut self, chunk: Bytes, ends: &[usize]) -> Result<(), Overflow> {
        if ends.is_empty() {
            return Ok(());
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
        self.last_batch = Some((first, chunk));
        while self.bytes > self.limit {
            match self.entries.front() {
                Some(e) if e.id <= self.sent => self.pop_front(),
                _ => break,
            }
        }
        if self.bytes > self.limit && self.entries.len() > 1 {
            return Err(Overflow);
        }
        Ok(())
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

    /// Everything no stream has taken yet, as one chunk; the stream now has it.
    pub fn take_pending(&mut self) -> Option<Bytes> {
        if !self.has_pending() {
            return None;
        }
        let from = self.sent + 1;
        let newest = self.newest();
        let last_batch = self.last_batch.take();
        self.sent = newest;
        if let Some((first, chunk)) = last_batch {
            if first == from {
                return Some(chunk);
            }
        }
        let skip = (from - self.oldest_kept()) as usize;
        let pending = self.entries.range(skip..);
        let len = pending.clone().map(|e| e.bytes.len()).sum();
        let mut out = BytesMut::with_capacity(len);
        for e in pending {
            out.extend_from_slice(&e.bytes);
        }
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
        Ok(())
    }

    /// Nothing kept is sent again (the stream that asked gets only the session's end).
    pub fn skip_all(&mut self) {
        self.sent = self.newest();
        self.last_batch = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A batch of events `"<id>;"` for the next `n` ids.
    fn batch(b: &mut ReplayBuffer, n: u64) -> Result<(), Overflow> {
        let mut chunk = BytesMut::new();
        let mut ends = Vec::new();
        for id in b.next_id()..b.next_id() + n {
            chunk.extend_from_slice(format!("{id:03};").as_bytes());
            ends.push(chunk.len());
        }
        b.push_batch(chunk.freeze(), &ends)
    }

    fn take(b: &mut ReplayBuffer) -> String {
        String::from_utf8(b.take_pending().map(|c| c.to_vec()).unwrap_or_default()).unwrap()
    }

    #[test]
    fn a_stream_takes_each_event_once_and_a_whole_batch_without_copying() {
        let mut b = ReplayBuffer::new(1000);
        batch(&mut b, 3).unwrap();
        let chunk = b.last_batch.as_ref().unwrap().1.clone();
        let taken = b.take_pending().unwrap();
        assert_eq!(
            taken.as_ptr(),
            chunk.as_ptr(),
            "the batch went out as it was"
        );
        assert_eq!(&taken[..], b"001;002;003;");
        assert!(b.take_pending().is_none());
        batch(&mut b, 1).unwrap();
        batch(&mut b, 2).unwrap();
        assert_eq!(take(&mut b), "004;005;006;");
    }

    #[test]
    fn resume_sends_again_what_followed_and_acks_what_preceded() {
        let mut b = ReplayBuffer::new(1000);
        batch(&mut b, 5).unwrap();
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
        assert!(b.take_pending().is_none());
    }

    #[test]
    fn acks_trim_only_what_was_sent() {
        let mut b = ReplayBuffer::new(1000);
        batch(&mut b, 4).unwrap();
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
        batch(&mut b, 5).unwrap();
        take(&mut b);
        batch(&mut b, 3).unwrap(); // evicts 1..3
        assert_eq!(b.held(), 20);
        assert_eq!(b.resume(Some(1)), Err(ResumeError::Lost));
        b.resume(Some(3)).unwrap();
        assert_eq!(take(&mut b), "004;005;006;007;008;");
    }

    #[test]
    fn unsent_events_beyond_the_bound_overflow_but_one_always_fits() {
        let mut b = ReplayBuffer::new(20);
        batch(&mut b, 5).unwrap();
        assert_eq!(batch(&mut b, 1), Err(Overflow));
        let mut big = ReplayBuffer::new(20);
        let chunk = Bytes::from(vec![b'x'; 100]);
        assert_eq!(big.push_batch(chunk, &[100]), Ok(()));
        assert_eq!(take(&mut big).len(), 100);
    }

    #[test]
    fn skip_all_leaves_nothing_pending() {
        let mut b = ReplayBuffer::new(100);
        batch(&mut b, 2).unwrap();
        b.skip_all();
        assert!(b.take_pending().is_none());
    }
}
