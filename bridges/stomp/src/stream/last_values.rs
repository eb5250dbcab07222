//! The latest message per conflation key of a stream (the last price of every symbol),
//! bounded: when full, the key updated longest ago makes room.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use crate::message::SharedMessage;

pub struct LastValue {
    pub seq: u64,
    pub message: Arc<SharedMessage>,
    /// The message marked `snapshot:true`, made once for every new subscriber.
    snapshot: OnceLock<Arc<SharedMessage>>,
}

impl LastValue {
    pub fn snapshot(&self) -> &Arc<SharedMessage> {
        self.snapshot
            .get_or_init(|| Arc::new(self.message.with_header("snapshot", "true")))
    }
}

pub struct LastValues {
    by_key: HashMap<Box<str>, LastValue>,
    /// Keys by the sequence of their latest message, oldest first, to pick whom to drop.
    by_seq: BTreeMap<u64, Box<str>>,
    max_keys: usize,
    bytes: usize,
}

impl LastValues {
    pub fn new(max_keys: usize) -> LastValues {
        LastValues {
            by_key: HashMap::new(),
            by_seq: BTreeMap::new(),
            max_keys,
            bytes: 0,
        }
    }

    /// Returns whether a key was dropped to make room.
    pub fn put(&mut self, key: &str, seq: u64, message: Arc<SharedMessage>) -> bool {
        if self.max_keys == 0 {
            return false;
        }
        self.bytes += message.retained_bytes();
        let value = LastValue {
            seq,
            message,
            snapshot: OnceLock::new(),
        };
        if let Some(old) = self.by_key.get_mut(key) {
            self.by_seq.remove(&old.seq);
            self.bytes -= old.message.retained_bytes();
            *old = value;
            self.by_seq.insert(seq, key.into());
            return false;
        }
        let mut evicted = false;
        if self.by_key.len() >= self.max_keys {
            if let Some((_, oldest)) = self.by_seq.pop_first() {
                if let Some(v) = self.by_key.remove(&oldest) {
                    self.bytes -= v.message.retained_bytes();
                }
                evicted = true;
            }
        }
        self.by_key.insert(key.into(), value);
        self.by_seq.insert(seq, key.into());
        evicted
    }

    /// Every value, oldest update first (so a client's table fills in publish order).
    pub fn iter(&self) -> impl Iterator<Item = &LastValue> {
        self.by_seq.values().filter_map(|k| self.by_key.get(k))
    }

    /// Rewrite every value with `f` (a new epoch re-stamps their positions).
    pub fn restamp(&mut self, mut f: impl FnMut(&SharedMessage) -> SharedMessage) {
        self.bytes = 0;
        for v in self.by_key.values_mut() {
            v.message = Arc::new(f(&v.message));
            v.snapshot = OnceLock::new();
            self.bytes += v.message.retained_bytes();
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protocol_stomp::Headers;

    fn msg(body: &str) -> Arc<SharedMessage> {
        Arc::new(SharedMessage::new(
            "/topic/p.X".into(),
            "m".into(),
            &Headers::new(),
            bytes::Bytes::from(body.to_string()),
        ))
    }

    fn bodies(v: &LastValues) -> Vec<String> {
        v.iter()
            .map(|l| String::from_utf8_lossy(&l.message.body).to_string())
            .collect()
    }

    #[test]
    fn keeps_the_latest_per_key_in_update_order() {
        let mut v = LastValues::new(10);
        v.put("A", 1, msg("a1"));
        v.put("B", 2, msg("b2"));
        v.put("A", 3, msg("a3"));
        assert_eq!(bodies(&v), vec!["b2", "a3"]);
        assert_eq!(v.len(), 2);
    }

    #[test]
    fn full_drops_the_key_updated_longest_ago() {
        let mut v = LastValues::new(2);
        assert!(!v.put("A", 1, msg("a")));
        assert!(!v.put("B", 2, msg("b")));
        assert!(!v.put("A", 3, msg("a3")));
        assert!(v.put("C", 4, msg("c")));
        assert_eq!(bodies(&v), vec!["a3", "c"]);
        let kept = msg("a3").retained_bytes() + msg("c").retained_bytes();
        assert_eq!(v.bytes(), kept);
    }

    #[test]
    fn snapshot_copies_are_marked_and_shared() {
        let mut v = LastValues::new(2);
        v.put("A", 1, msg("a"));
        let lv = v.iter().next().unwrap();
        assert_eq!(lv.snapshot().header("snapshot"), Some("true"));
        assert!(Arc::ptr_eq(lv.snapshot(), lv.snapshot()));
    }
}
