//! Exclusive and server-named queues belong to the client session that declared them, not
//! to the pooled broker connection they were declared on (which other clients share): the
//! gateway keeps their owners, refuses them to everyone else with 405 RESOURCE_LOCKED as
//! RabbitMQ does across connections, and deletes them when their session ends.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct Owners {
    queues: Mutex<HashMap<String, u64>>,
}

impl Owners {
    /// Record `queue` as `session`'s; false if another session owns it.
    pub fn claim(&self, queue: &str, session: u64) -> bool {
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        *q.entry(queue.to_string()).or_insert(session) == session
    }

    /// Whether `session` may use `queue`: it is nobody's or its own.
    pub fn usable_by(&self, queue: &str, session: u64) -> bool {
        let q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        q.get(queue).is_none_or(|&owner| owner == session)
    }

    pub fn release(&self, queue: &str, session: u64) {
        let mut q = self.queues.lock().unwrap_or_else(|p| p.into_inner());
        if q.get(queue) == Some(&session) {
            q.remove(queue);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_is_its_owners_until_released() {
        let o = Owners::default();
        assert!(o.claim("q", 1));
        assert!(o.claim("q", 1));
        assert!(!o.claim("q", 2));
        assert!(!o.usable_by("q", 2) && o.usable_by("q", 1) && o.usable_by("other", 2));
        o.release("q", 2);
        assert!(!o.usable_by("q", 2));
        o.release("q", 1);
        assert!(o.usable_by("q", 2));
    }
}
