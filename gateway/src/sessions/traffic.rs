//! One session's own traffic counts, for the operator's view of it (the Prometheus series
//! are per service; these are per session and die with it).

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct SessionTraffic {
    pub messages_in: AtomicU64,
    pub bytes_in: AtomicU64,
    pub messages_out: AtomicU64,
    pub bytes_out: AtomicU64,
}

impl SessionTraffic {
    pub fn received(&self, bytes: usize) {
        self.messages_in.fetch_add(1, Ordering::Relaxed);
        self.bytes_in.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, messages: u64, bytes: u64) {
        self.messages_out.fetch_add(messages, Ordering::Relaxed);
        self.bytes_out.fetch_add(bytes, Ordering::Relaxed);
    }
}
