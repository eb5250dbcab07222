//! Acknowledging upstream what the client has been handed. A backend keeps each delivery
//! it put in a session's inbox in an in-flight queue, oldest first; the inbox's copy holds
//! a second reference until the session writes it out. The inbox is first-in first-out,
//! so the delivered messages are a prefix of the queue, found without any bookkeeping.

use std::collections::VecDeque;
use std::sync::Arc;

/// Pop every delivery at the front that only the backend still holds (`held` names its
/// shared part); the newest of them, which a cumulative ACK covers, is returned.
pub(crate) fn pop_handed_over<E, T>(
    in_flight: &mut VecDeque<E>,
    held: impl Fn(&E) -> &Arc<T>,
) -> Option<E> {
    let mut newest = None;
    while let Some(e) = in_flight.front() {
        if Arc::strong_count(held(e)) > 1 {
            break;
        }
        newest = in_flight.pop_front();
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_the_first_one_still_in_the_inbox() {
        let (a, b, c) = (Arc::new(1), Arc::new(2), Arc::new(3));
        let inbox_copy = b.clone();
        let mut q: VecDeque<_> = [(10, a), (11, b), (12, c)].into();
        assert_eq!(pop_handed_over(&mut q, |e| &e.1).map(|e| e.0), Some(10));
        assert_eq!(q.len(), 2);
        drop(inbox_copy);
        assert_eq!(pop_handed_over(&mut q, |e| &e.1).map(|e| e.0), Some(12));
        assert!(q.is_empty());
    }
}
