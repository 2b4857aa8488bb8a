//! `RetainedStore`: the last retained message of each topic, looked up by
//! topic filter when a client subscribes.
//!
//! A tree with one node per topic level (topics have no wildcards, so each
//! node has only literal children). Costs, for a topic or filter of `L`
//! levels:
//! - `set`: `O(L)` hash lookups (a new topic allocates its missing nodes);
//! - `for_each_match`: `O(L)` for a filter without wildcards; with
//!   wildcards, proportional to the nodes under the matched prefixes (`+`
//!   visits every child of its level, `#` the whole subtree);
//! - `retain_matching`: `O(n)` plus `O(L)` per dropped message.
//!
//! Walks are iterative for the same reason as in `TopicTrie`: a topic may have
//! tens of thousands of levels.

use std::ptr;

use ahash::AHashMap;
use smallvec::SmallVec;

use super::topic::split_level;
use crate::codec::ByteStr;

/// A new retained topic was refused: the store holds `max_messages` already.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("retained message store full")]
pub struct RetainedFull;

/// Topic name -> retained message `T`, with wildcard lookup.
pub struct RetainedStore<T> {
    /// Stands for "before the first level"; never holds a message.
    root: Node<T>,
    /// Messages stored.
    len: usize,
    /// Cap on `len`, so retained state cannot grow without bound.
    max_messages: usize,
}

struct Node<T> {
    children: AHashMap<Box<str>, Node<T>>,
    /// The message retained on the topic ending at this node, with that
    /// topic (kept so lookups can hand it out without rebuilding it).
    message: Option<(ByteStr, T)>,
}

impl<T> Default for Node<T> {
    fn default() -> Self {
        Node {
            children: AHashMap::new(),
            message: None,
        }
    }
}

/// What a pending node of a filter walk still has to match.
#[derive(Clone, Copy)]
enum Want<'a> {
    /// These filter levels, below this node.
    Levels(&'a str),
    /// Nothing more: this node's own message matches.
    End,
    /// This node and everything below it (a `#` was reached).
    All,
}

impl<T> RetainedStore<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn max_messages(&self) -> usize {
        self.max_messages
    }

    /// The message retained on exactly `topic`. `O(L)`.
    pub fn get(&self, topic: &str) -> Option<&T> {
        let mut node = &self.root;
        for level in topic.split('/') {
            node = node.children.get(level)?;
        }
        node.message.as_ref().map(|(_, m)| m)
    }

    /// Calls `f(topic, message)` for every retained message whose topic
    /// matches `filter` (valid, non-shared; may hold `+` and `#`), in no
    /// particular order. Topics starting with `$` are not matched by a first
    /// level wildcard (MQTT-4.7.2-1).
    pub fn for_each_match(&self, filter: &str, mut f: impl FnMut(&ByteStr, &T)) {
        let mut stack: SmallVec<[(&Node<T>, Want<'_>); 16]> = SmallVec::new();
        stack.push((&self.root, Want::Levels(filter)));
        while let Some((node, want)) = stack.pop() {
            let at_root = ptr::eq(node, &self.root);
            // At the root a wildcard must not enter a `$` topic.
            let enter = |level: &str| !(at_root && level.starts_with('$'));
            match want {
                Want::End => {
                    if let Some((topic, message)) = &node.message {
                        f(topic, message);
                    }
                }
                Want::All => {
                    if let Some((topic, message)) = &node.message {
                        f(topic, message);
                    }
                    stack.extend(node.children.values().map(|child| (child, Want::All)));
                }
                Want::Levels(levels) => {
                    let (level, next) = split_level(levels);
                    let next = next.map_or(Want::End, Want::Levels);
                    match level {
                        // `a/#` also matches `a` itself: this node, reached
                        // through the parent level, counts (the root holds
                        // no message).
                        "#" => {
                            if let Some((topic, message)) = &node.message {
                                f(topic, message);
                            }
                            for (level, child) in &node.children {
                                if enter(level) {
                                    stack.push((child, Want::All));
                                }
                            }
                        }
                        "+" => {
                            for (level, child) in &node.children {
                                if enter(level) {
                                    stack.push((child, next));
                                }
                            }
                        }
                        literal => {
                            if let Some(child) = node.children.get(literal) {
                                stack.push((child, next));
                            }
                        }
                    }
                }
            }
        }
    }

    /// Removes the message of `topic` and the nodes left empty. `O(L)`.
    fn remove(&mut self, topic: &str) -> Option<T> {
        let mut node = &mut self.root;
        for level in topic.split('/') {
            node = node.children.get_mut(level)?;
        }
        let (_, message) = node.message.take()?;
        self.len -= 1;

        // The shallowest node from which the rest of the path holds nothing
        // but the path; that chain is unlinked from its parent.
        let mut cut: Option<usize> = None;
        let mut node = &self.root;
        let mut levels = topic.split('/').enumerate().peekable();
        while let Some((i, level)) = levels.next() {
            node = &node.children[level];
            let is_last = levels.peek().is_none();
            let removable = node.message.is_none() && node.children.len() == usize::from(!is_last);
            if !removable {
                cut = None;
            } else if cut.is_none() {
                cut = Some(i);
            }
        }
        if let Some(cut) = cut {
            let mut levels = topic.split('/');
            let mut parent = &mut self.root;
            for level in levels.by_ref().take(cut) {
                parent = parent.children.get_mut(level).expect("path exists");
            }
            parent
                .children
                .remove(levels.next().expect("cut is within the path"));
        }
        Some(message)
    }
}

impl<T: Clone> RetainedStore<T> {
    pub fn new(max_messages: usize) -> Self {
        RetainedStore {
            root: Node::default(),
            len: 0,
            max_messages,
        }
    }

    /// `Some(message)` retains it on `topic` (replacing any), `None` clears
    /// the topic. Only a topic not yet in the store can be refused, so a
    /// full store still accepts replacements and clears.
    pub fn set(&mut self, topic: &ByteStr, message: Option<T>) -> Result<(), RetainedFull> {
        debug_assert!(
            super::topic::is_valid_topic_name(topic),
            "invalid topic {topic:?}"
        );
        // The session refuses deeper topic names (`mqtt.max_topic_levels`),
        // so a retained topic pins at most this many nodes.
        assert!(
            super::topic::levels(topic) <= crate::limits::TOPIC_LEVELS_MAX as usize,
            "topic of {} levels reached the retained store",
            super::topic::levels(topic)
        );
        let Some(message) = message else {
            self.remove(topic);
            return Ok(());
        };
        if self.len >= self.max_messages && self.get(topic).is_none() {
            return Err(RetainedFull);
        }
        let mut node = &mut self.root;
        for level in topic.split('/') {
            if !node.children.contains_key(level) {
                node.children.insert(level.into(), Node::default());
            }
            node = node.children.get_mut(level).expect("just inserted");
        }
        if node.message.replace((topic.clone(), message)).is_none() {
            self.len += 1;
        }
        Ok(())
    }

    /// Calls `f(topic, message)` for every retained message, `$` topics
    /// included (a snapshot of the store for another node).
    pub fn for_each(&self, mut f: impl FnMut(&ByteStr, &T)) {
        let mut stack: Vec<&Node<T>> = vec![&self.root];
        while let Some(node) = stack.pop() {
            if let Some((topic, message)) = &node.message {
                f(topic, message);
            }
            stack.extend(node.children.values());
        }
    }

    /// Drops every message for which `keep` returns false (expiry sweeps).
    pub fn retain_matching(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut doomed: Vec<ByteStr> = Vec::new();
        let mut stack: Vec<&Node<T>> = vec![&self.root];
        while let Some(node) = stack.pop() {
            if let Some((topic, message)) = &node.message {
                if !keep(message) {
                    doomed.push(topic.clone());
                }
            }
            stack.extend(node.children.values());
        }
        for topic in doomed {
            self.remove(&topic);
        }
    }
}

impl<T> std::fmt::Debug for RetainedStore<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetainedStore")
            .field("len", &self.len)
            .field("max_messages", &self.max_messages)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::router::topic::matches;
    use crate::router::trie::tests::{filter, topic};
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn found(store: &RetainedStore<u32>, filter: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        store.for_each_match(filter, |t, m| out.push((t.to_string(), *m)));
        out.sort();
        out
    }

    fn topics(store: &RetainedStore<u32>, filter: &str) -> Vec<String> {
        found(store, filter).into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn set_replace_clear_and_cap() {
        let mut store = RetainedStore::new(2);
        store.set(&"a/b".into(), Some(1)).unwrap();
        store.set(&"a".into(), Some(2)).unwrap();
        assert_eq!(store.set(&"c".into(), Some(3)), Err(RetainedFull));
        store.set(&"a/b".into(), Some(4)).unwrap(); // replace works when full
        assert_eq!(store.get("a/b"), Some(&4));
        assert_eq!(store.len(), 2);
        store.set(&"a/b".into(), None).unwrap();
        store.set(&"nothing/here".into(), None).unwrap();
        assert_eq!(store.len(), 1);
        store.set(&"c".into(), Some(3)).unwrap();
        assert_eq!(
            found(&store, "#"),
            [("a".to_string(), 2), ("c".to_string(), 3)]
        );
        store.set(&"a".into(), None).unwrap();
        store.set(&"c".into(), None).unwrap();
        assert!(store.is_empty());
        assert!(store.root.children.is_empty(), "pruned");
    }

    #[test]
    fn wildcard_lookup_and_dollar_rule() {
        let mut store = RetainedStore::new(100);
        for (i, t) in ["a", "a/b", "a/b/c", "a/c", "/x", "$SYS/up", "b/$x"]
            .iter()
            .enumerate()
        {
            store.set(&(*t).into(), Some(i as u32)).unwrap();
        }
        assert_eq!(topics(&store, "a/#"), ["a", "a/b", "a/b/c", "a/c"]);
        assert_eq!(topics(&store, "a/+"), ["a/b", "a/c"]);
        assert_eq!(topics(&store, "+/+"), ["/x", "a/b", "a/c", "b/$x"]);
        assert_eq!(
            topics(&store, "#"),
            ["/x", "a", "a/b", "a/b/c", "a/c", "b/$x"]
        );
        assert_eq!(topics(&store, "+/up"), Vec::<String>::new());
        assert_eq!(topics(&store, "$SYS/#"), ["$SYS/up"]);
        assert_eq!(topics(&store, "a/b"), ["a/b"]);
        assert_eq!(topics(&store, "a/b/c/#"), ["a/b/c"]);
    }

    #[test]
    fn expiry_sweep() {
        let mut store = RetainedStore::new(100);
        for i in 0..10u32 {
            store
                .set(&format!("t/{i}").as_str().into(), Some(i))
                .unwrap();
        }
        store.retain_matching(|m| m % 3 == 0);
        assert_eq!(topics(&store, "t/+"), ["t/0", "t/3", "t/6", "t/9"]);
        store.retain_matching(|_| false);
        assert!(store.is_empty());
        assert!(store.root.children.is_empty());
    }

    proptest! {
        #[test]
        fn matches_like_naive_scan(
            ops in prop::collection::vec((topic(), any::<bool>()), 1..40),
            filters in prop::collection::vec(filter(), 1..20),
            sweep in any::<u8>(),
        ) {
            let mut store: RetainedStore<u32> = RetainedStore::new(usize::MAX);
            let mut model: BTreeMap<String, u32> = BTreeMap::new();
            for (i, (topic, set)) in ops.iter().enumerate() {
                let message = set.then_some(i as u32);
                store.set(&topic.as_str().into(), message).unwrap();
                match message {
                    Some(m) => model.insert(topic.clone(), m),
                    None => model.remove(topic),
                };
                prop_assert_eq!(store.len(), model.len());
            }
            let check = |store: &RetainedStore<u32>, model: &BTreeMap<String, u32>| {
                for filter in &filters {
                    let want: Vec<(String, u32)> = model
                        .iter()
                        .filter(|(t, _)| matches(filter, t))
                        .map(|(t, m)| (t.clone(), *m))
                        .collect();
                    assert_eq!(found(store, filter), want, "filter {filter}");
                }
            };
            check(&store, &model);
            // An expiry sweep keeps matching consistent.
            let keep = |m: &u32| (*m as u8).wrapping_add(sweep) % 2 == 0;
            store.retain_matching(keep);
            model.retain(|_, m| keep(m));
            prop_assert_eq!(store.len(), model.len());
            check(&store, &model);
            store.retain_matching(|_| false);
            prop_assert!(store.root.children.is_empty());
        }
    }
}
