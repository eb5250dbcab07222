//! Ordered header list.
//!
//! A `Vec` rather than a map: frames carry a handful of headers, order is
//! significant on the wire, and the spec keeps repeated entries (the first
//! one is the one that counts, later ones are kept for forwarding).

/// Frame headers in wire order; names are case-sensitive (spec).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with_capacity(n: usize) -> Self {
        Headers {
            entries: Vec::with_capacity(n),
        }
    }

    /// Value of the first `name` entry: the spec says only the first of
    /// repeated headers is used.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Appends an entry, keeping any earlier ones with the same name.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.entries.push((name.into(), value.into()));
    }

    /// Replaces every `name` entry by a single one. It takes the place of
    /// the first existing entry so wire order stays stable; appended if none.
    pub fn set(&mut self, name: impl Into<String>, value: impl Into<String>) {
        let name = name.into();
        let value = value.into();
        match self.entries.iter().position(|(n, _)| *n == name) {
            Some(first) => {
                self.entries[first].1 = value;
                let mut i = 0;
                self.entries.retain(|(n, _)| {
                    let keep = i <= first || *n != name;
                    i += 1;
                    keep
                });
            }
            None => self.entries.push((name, value)),
        }
    }

    /// Removes every `name` entry.
    pub fn remove(&mut self, name: &str) {
        self.entries.retain(|(n, _)| n != name);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_headers_keep_order_and_first_wins() {
        let mut h = Headers::new();
        h.push("foo", "1");
        h.push("bar", "x");
        h.push("foo", "2");
        assert_eq!(h.get("foo"), Some("1"));
        assert_eq!(h.len(), 3);
        let all: Vec<_> = h.iter().collect();
        assert_eq!(all, [("foo", "1"), ("bar", "x"), ("foo", "2")]);
        assert_eq!(h.get("Foo"), None, "names are case-sensitive");
    }

    #[test]
    fn set_replaces_all_in_place_of_first() {
        let mut h = Headers::new();
        h.push("a", "1");
        h.push("b", "2");
        h.push("a", "3");
        h.push("c", "4");
        h.set("a", "9");
        let all: Vec<_> = h.iter().collect();
        assert_eq!(all, [("a", "9"), ("b", "2"), ("c", "4")]);
        h.set("d", "5");
        assert_eq!(h.get("d"), Some("5"));
        assert_eq!(h.len(), 4);
    }

    #[test]
    fn remove_drops_every_occurrence() {
        let mut h = Headers::new();
        h.push("a", "1");
        h.push("a", "2");
        assert!(!h.is_empty());
        h.remove("a");
        assert!(h.is_empty());
        h.remove("missing");
        assert_eq!(h, Headers::new());
    }
}
