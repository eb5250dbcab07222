//! Topic subscriptions indexed by pattern words, so a publish visits only the patterns that
//! can match its routing key instead of every subscription. `*` matches one word, `#` zero
//! or more (RabbitMQ topic exchange semantics).

use std::collections::HashMap;

use crate::backend::fanout::LocalSub;
use crate::inbox::SubKey;

/// Whether `pattern` (with `*` and `#`) matches `routing_key`, for one pattern alone.
pub fn pattern_matches(pattern: &str, routing_key: &str) -> bool {
    fn walk(p: &[&str], k: &[&str]) -> bool {
        match p.split_first() {
            None => k.is_empty(),
            Some((&"#", rest)) => (0..=k.len()).any(|skip| walk(rest, &k[skip..])),
            Some((w, rest)) => match k.split_first() {
                Some((kw, krest)) => (*w == "*" || w == kw) && walk(rest, krest),
                None => false,
            },
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = routing_key.split('.').collect();
    walk(&p, &k)
}

#[derive(Default)]
pub struct TopicTree {
    root: Node,
    patterns: usize,
}

#[derive(Default)]
struct Node {
    words: HashMap<Box<str>, Node>,
    star: Option<Box<Node>>,
    hash: Option<Box<Node>>,
    subs: Vec<LocalSub>,
}

impl Node {
    fn child_mut(&mut self, word: &str) -> &mut Node {
        match word {
            "*" => self.star.get_or_insert_with(Default::default),
            "#" => self.hash.get_or_insert_with(Default::default),
            w => self.words.entry(w.into()).or_default(),
        }
    }

    fn is_empty(&self) -> bool {
        self.subs.is_empty() && self.words.is_empty() && self.star.is_none() && self.hash.is_none()
    }

    /// Remove a subscription below this node and prune children left empty. `None` if it
    /// was not there, else whether its pattern lost its last subscriber.
    fn remove(&mut self, words: &[&str], session: u64, key: SubKey) -> Option<bool> {
        let Some((first, rest)) = words.split_first() else {
            let at = self
                .subs
                .iter()
                .position(|s| s.session == session && s.key == key)?;
            self.subs.swap_remove(at);
            return Some(self.subs.is_empty());
        };
        let removed;
        match *first {
            "*" | "#" => {
                let slot = if *first == "*" {
                    &mut self.star
                } else {
                    &mut self.hash
                };
                let child = slot.as_mut()?;
                removed = child.remove(rest, session, key);
                if child.is_empty() {
                    *slot = None;
                }
            }
            w => {
                let child = self.words.get_mut(w)?;
                removed = child.remove(rest, session, key);
                if child.is_empty() {
                    self.words.remove(w);
                }
            }
        }
        removed
    }

    fn collect<'a>(&'a self, words: &[&str], out: &mut Vec<&'a Node>) {
        if let Some(hash) = &self.hash {
            // `#` swallows zero or more words.
            for skip in 0..=words.len() {
                hash.collect(&words[skip..], out);
            }
        }
        let Some((first, rest)) = words.split_first() else {
            if !self.subs.is_empty() {
                out.push(self);
            }
            return;
        };
        if let Some(child) = self.words.get(*first) {
            child.collect(rest, out);
        }
        if let Some(star) = &self.star {
            star.collect(rest, out);
        }
    }
}

impl TopicTree {
    pub fn insert(&mut self, pattern: &str, sub: LocalSub) {
        let mut node = &mut self.root;
        for word in pattern.split('.') {
            node = node.child_mut(word);
        }
        if node.subs.is_empty() {
            self.patterns += 1;
        }
        node.subs.push(sub);
    }

    /// Walks only the pattern's own path, so a mass disconnect costs O(subscriptions).
    pub fn remove(&mut self, pattern: &str, session: u64, key: SubKey) {
        let words: Vec<&str> = pattern.split('.').collect();
        if self.root.remove(&words, session, key) == Some(true) {
            self.patterns -= 1;
        }
    }

    #[cfg(test)]
    fn count_patterns(&self) -> usize {
        fn walk(n: &Node) -> usize {
            usize::from(!n.subs.is_empty())
                + n.words.values().map(walk).sum::<usize>()
                + n.star.as_deref().map_or(0, walk)
                + n.hash.as_deref().map_or(0, walk)
        }
        walk(&self.root)
    }

    /// Distinct subscribed patterns (a gauge for operators).
    pub fn pattern_count(&self) -> usize {
        self.patterns
    }

    /// Call `f` once per subscription whose pattern matches `routing_key`.
    pub fn for_each_match(&self, routing_key: &str, mut f: impl FnMut(&LocalSub)) {
        let words: Vec<&str> = routing_key.split('.').collect();
        let mut nodes = Vec::new();
        self.root.collect(&words, &mut nodes);
        // With `#`, one pattern can match along several paths; deliver once.
        if nodes.len() > 1 {
            nodes.sort_by_key(|n| *n as *const Node as usize);
            nodes.dedup_by_key(|n| *n as *const Node as usize);
        }
        for node in nodes {
            node.subs.iter().for_each(&mut f);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fanout::Target;
    use crate::inbox::Inbox;

    fn tree(patterns: &[&str]) -> TopicTree {
        let mut t = TopicTree::default();
        let inbox = Inbox::new(crate::metrics::StompMetrics::new("test"));
        for (i, p) in patterns.iter().enumerate() {
            t.insert(
                p,
                LocalSub {
                    key: i as SubKey,
                    session: 1,
                    target: Target::Session {
                        inbox: inbox.clone(),
                        key: i as SubKey,
                    },
                },
            );
        }
        t
    }

    fn matches(t: &TopicTree, key: &str) -> Vec<SubKey> {
        let mut out = Vec::new();
        t.for_each_match(key, |s| out.push(s.key));
        out.sort();
        out
    }

    #[test]
    fn rabbitmq_wildcard_semantics() {
        let t = tree(&[
            "prices.*",
            "prices.#",
            "#",
            "prices.AAPL",
            "*.AAPL.#",
            "a.#.b",
        ]);
        assert_eq!(matches(&t, "prices.AAPL"), vec![0, 1, 2, 3, 4]);
        assert_eq!(matches(&t, "prices"), vec![1, 2]);
        assert_eq!(matches(&t, "prices.AAPL.bid"), vec![1, 2, 4]);
        assert_eq!(matches(&t, "a.b"), vec![2, 5]);
        assert_eq!(matches(&t, "a.x.y.b"), vec![2, 5]);
        assert_eq!(matches(&t, "news"), vec![2]);
    }

    #[test]
    fn one_pattern_alone_matches_as_the_tree_does() {
        let patterns = [
            "prices.*",
            "prices.#",
            "#",
            "prices.AAPL",
            "*.AAPL.#",
            "a.#.b",
        ];
        for key in [
            "prices.AAPL",
            "prices",
            "prices.AAPL.bid",
            "a.b",
            "a.x.y.b",
            "news",
        ] {
            let t = tree(&patterns);
            let want = matches(&t, key);
            let got: Vec<SubKey> = (0..patterns.len())
                .filter(|&i| pattern_matches(patterns[i], key))
                .map(|i| i as SubKey)
                .collect();
            assert_eq!(got, want, "{key}");
        }
    }

    #[test]
    fn a_pattern_matching_several_ways_delivers_once() {
        let t = tree(&["#.#", "#.x.#"]);
        assert_eq!(matches(&t, "x.x.x"), vec![0, 1]);
    }

    #[test]
    fn remove_prunes() {
        let mut t = tree(&["a.*.c", "a.b"]);
        assert_eq!(t.pattern_count(), 2);
        t.remove("a.*.c", 1, 0);
        assert_eq!(matches(&t, "a.x.c"), Vec::<SubKey>::new());
        assert_eq!(t.pattern_count(), 1);
        assert_eq!(t.count_patterns(), 1);
        t.remove("a.*.c", 1, 0);
        t.remove("no.such", 1, 0);
        assert_eq!(t.pattern_count(), 1);
        t.remove("a.b", 1, 1);
        assert!(t.root.is_empty());
    }
}
