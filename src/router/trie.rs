//! `TopicTrie`: a map from topic filters to values, queried with a topic name
//! for every filter that matches it.
//!
//! Two parts, because most subscriptions in practice name one exact topic:
//! - filters without a wildcard sit in a hash map keyed by the filter, so
//!   matching them costs one hash of the topic, whatever their number;
//! - filters with `+` or `#` sit in a tree with one node per level.
//!
//! Matching a topic of `L` levels costs `O(L)` for the exact part plus, for
//! the tree, one lookup per visited node: a scan of its few children, or a
//! hash lookup once it has many (`children.rs`). A node is visited only if the
//! topic's prefix matches its path, and each level can branch into at most
//! two children (the literal one and `+`), so the walk is bounded by
//! `O(L * 2^w)` where `w` is the number of `+` levels on a path, in practice
//! `O(L + matches)`. No allocation unless the walk needs more than
//! `WALK_INLINE` pending nodes.
//!
//! Every walk is iterative (explicit stack), because a 65535-byte topic can
//! have 65536 levels and recursion that deep would overflow a shard's stack.
//! Stored filters are shallower: `entry` refuses (asserts) a filter deeper
//! than `limits::TOPIC_LEVELS_MAX`, which bounds the tree nodes one filter
//! can pin.

use std::ptr;

use ahash::AHashMap;
use smallvec::SmallVec;

use super::children::Children;
use super::topic::{has_wildcard, levels, split_level};
use crate::limits::TOPIC_LEVELS_MAX;

/// Pending nodes a match walk holds inline before its stack spills to the heap.
const WALK_INLINE: usize = 16;

/// Filter (valid, non-shared) -> `V`.
pub struct TopicTrie<V> {
    /// Filters without a wildcard; such a filter matches exactly the topic
    /// equal to it.
    exact: AHashMap<Box<str>, V>,
    /// Tree of the filters with a wildcard. The root stands for "before the
    /// first level" and never holds a value itself.
    root: Node<V>,
    /// Filters stored in `root`, so matching skips the walk when it is zero.
    wild_len: usize,
}

/// One level of the wildcard tree.
struct Node<V> {
    /// Literal next levels.
    children: Children<Node<V>>,
    /// The `+` next level; boxed because few nodes have one.
    plus: Option<Box<Node<V>>>,
    /// The filter whose last level `#` follows this node (`a/#` lives in
    /// node `a`; `#` lives in the root).
    hash: Option<Entry<V>>,
    /// The filter that ends at this node.
    value: Option<Entry<V>>,
}

/// A stored filter and its value; the filter is kept so callbacks can name it.
struct Entry<V> {
    filter: Box<str>,
    value: V,
}

impl<V> Default for Node<V> {
    fn default() -> Self {
        Node {
            children: Children::default(),
            plus: None,
            hash: None,
            value: None,
        }
    }
}

impl<V> Node<V> {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.plus.is_none()
            && self.hash.is_none()
            && self.value.is_none()
    }

    /// Number of next levels (literal and `+`).
    fn branches(&self) -> usize {
        self.children.len() + usize::from(self.plus.is_some())
    }
}

/// One step down the tree along a filter.
#[derive(Clone, Copy)]
enum Step<'a> {
    Literal(&'a str),
    Plus,
}

/// The steps of a wildcard filter, and whether it ends in `#`.
fn steps(filter: &str) -> (impl Iterator<Item = Step<'_>>, bool) {
    let (body, hash) = if filter == "#" {
        (None, true)
    } else if let Some(body) = filter.strip_suffix("/#") {
        (Some(body), true)
    } else {
        (Some(filter), false)
    };
    let steps = body
        .into_iter()
        .flat_map(|body| body.split('/'))
        .map(|level| {
            if level == "+" {
                Step::Plus
            } else {
                Step::Literal(level)
            }
        });
    (steps, hash)
}

impl<V> Node<V> {
    fn child(&self, step: Step<'_>) -> Option<&Node<V>> {
        match step {
            Step::Literal(level) => self.children.get(level),
            Step::Plus => self.plus.as_deref(),
        }
    }

    fn child_mut(&mut self, step: Step<'_>) -> Option<&mut Node<V>> {
        match step {
            Step::Literal(level) => self.children.get_mut(level),
            Step::Plus => self.plus.as_deref_mut(),
        }
    }

    fn child_or_insert(&mut self, step: Step<'_>) -> &mut Node<V> {
        match step {
            Step::Literal(level) => self.children.get_or_insert_with(level, Node::default),
            Step::Plus => self.plus.get_or_insert_with(Default::default),
        }
    }

    fn remove_child(&mut self, step: Step<'_>) {
        match step {
            Step::Literal(level) => {
                self.children.remove(level);
            }
            Step::Plus => self.plus = None,
        }
    }
}

impl<V> Default for TopicTrie<V> {
    fn default() -> Self {
        TopicTrie {
            exact: AHashMap::new(),
            root: Node::default(),
            wild_len: 0,
        }
    }
}

impl<V> TopicTrie<V> {
    /// Number of filters stored.
    pub fn len(&self) -> usize {
        self.exact.len() + self.wild_len
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `O(L)` in the filter's levels.
    pub fn get(&self, filter: &str) -> Option<&V> {
        if !has_wildcard(filter) {
            return self.exact.get(filter);
        }
        let (steps, hash) = steps(filter);
        let mut node = &self.root;
        for step in steps {
            node = node.child(step)?;
        }
        let slot = if hash { &node.hash } else { &node.value };
        slot.as_ref().map(|e| &e.value)
    }

    /// `O(L)` in the filter's levels.
    pub fn get_mut(&mut self, filter: &str) -> Option<&mut V> {
        if !has_wildcard(filter) {
            return self.exact.get_mut(filter);
        }
        let (steps, hash) = steps(filter);
        let mut node = &mut self.root;
        for step in steps {
            node = node.child_mut(step)?;
        }
        let slot = if hash {
            &mut node.hash
        } else {
            &mut node.value
        };
        slot.as_mut().map(|e| &mut e.value)
    }

    /// Removes a filter and every tree node left without a filter below it.
    /// `O(L)` in the filter's levels (three walks down the same path).
    pub fn remove(&mut self, filter: &str) -> Option<V> {
        if !has_wildcard(filter) {
            return self.exact.remove(filter);
        }
        // Walk 1: take the entry.
        let (path, hash) = steps(filter);
        let mut node = &mut self.root;
        for step in path {
            node = node.child_mut(step)?;
        }
        let entry = if hash {
            node.hash.take()
        } else {
            node.value.take()
        }?;
        self.wild_len -= 1;

        // Walk 2: find the shallowest node from which the rest of the path
        // holds nothing but the path itself; that whole chain goes.
        let mut cut: Option<usize> = None;
        let mut node = &self.root;
        let (path, _) = steps(filter);
        let mut path = path.peekable();
        let mut depth = 0;
        while let Some(step) = path.next() {
            node = node.child(step).expect("path exists: walk 1 went down it");
            depth += 1;
            let is_last = path.peek().is_none();
            let removable = if is_last {
                node.is_empty()
            } else {
                node.hash.is_none() && node.value.is_none() && node.branches() == 1
            };
            if !removable {
                cut = None;
            } else if cut.is_none() {
                cut = Some(depth);
            }
        }

        // Walk 3: unlink the chain from its parent.
        if let Some(cut) = cut {
            let (path, _) = steps(filter);
            let mut path = path;
            let mut parent = &mut self.root;
            for _ in 1..cut {
                let step = path.next().expect("cut is within the path");
                parent = parent.child_mut(step).expect("path exists");
            }
            parent.remove_child(path.next().expect("cut is within the path"));
        }
        Some(entry.value)
    }

    /// Calls `f(filter, value)` once for every stored filter matching
    /// `topic` (a valid topic name), in no particular order. A topic starting
    /// with `$` is not matched by a first level `+` or `#` (MQTT-4.7.2-1).
    ///
    /// Cost: one hash lookup for exact filters, then the tree walk described
    /// in the module comment, skipped when no wildcard filter is stored.
    pub fn for_each_match<'a>(&'a self, topic: &str, mut f: impl FnMut(&'a str, &'a V)) {
        if let Some((filter, value)) = self.exact.get_key_value(topic) {
            f(filter, value);
        }
        if self.wild_len == 0 {
            return;
        }
        let dollar = topic.starts_with('$');
        // (node, levels of the topic still to match below it; None when the
        // node consumed the last level). The walk follows one branch in
        // `current` and stacks the other only where a level has both a
        // literal and a `+` child, so a walk down a single path (the common
        // case) never touches the stack.
        let mut pending: SmallVec<[(&Node<V>, Option<&str>); WALK_INLINE]> = SmallVec::new();
        let mut current = Some((&self.root, Some(topic)));
        while let Some((node, rest)) = current.take().or_else(|| pending.pop()) {
            let wildcards_allowed = !(dollar && ptr::eq(node, &self.root));
            if let (Some(e), true) = (&node.hash, wildcards_allowed) {
                // `#` matches the remaining levels, including none.
                f(&e.filter, &e.value);
            }
            match rest {
                None => {
                    if let Some(e) = &node.value {
                        f(&e.filter, &e.value);
                    }
                }
                Some(rest) => {
                    let (level, next) = split_level(rest);
                    let literal = node.children.get(level);
                    let plus = node.plus.as_deref().filter(|_| wildcards_allowed);
                    match (literal, plus) {
                        (Some(literal), Some(plus)) => {
                            current = Some((literal, next));
                            pending.push((plus, next));
                        }
                        (Some(child), None) | (None, Some(child)) => current = Some((child, next)),
                        (None, None) => {}
                    }
                }
            }
        }
    }

    /// Calls `f(filter, value)` for every stored filter. `O(n)`.
    pub fn for_each(&self, mut f: impl FnMut(&str, &V)) {
        for (filter, value) in &self.exact {
            f(filter, value);
        }
        let mut stack: Vec<&Node<V>> = vec![&self.root];
        while let Some(node) = stack.pop() {
            for e in node.hash.iter().chain(node.value.iter()) {
                f(&e.filter, &e.value);
            }
            stack.extend(node.children.values());
            stack.extend(node.plus.as_deref());
        }
    }

    /// Keeps the filters for which `f(filter, value)` returns true (it may
    /// change the value) and removes the others, pruning the tree. `O(n)`
    /// plus `O(L)` per removed wildcard filter.
    pub fn retain(&mut self, mut f: impl FnMut(&str, &mut V) -> bool) {
        self.exact.retain(|filter, value| f(filter, value));
        let mut doomed: Vec<Box<str>> = Vec::new();
        let mut stack: Vec<&mut Node<V>> = vec![&mut self.root];
        while let Some(node) = stack.pop() {
            let Node {
                children,
                plus,
                hash,
                value,
            } = node;
            for e in hash.iter_mut().chain(value.iter_mut()) {
                if !f(&e.filter, &mut e.value) {
                    doomed.push(e.filter.clone());
                }
            }
            stack.extend(children.values_mut());
            stack.extend(plus.as_deref_mut());
        }
        for filter in doomed {
            self.remove(&filter);
        }
    }
}

impl<V: Default> TopicTrie<V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The value of `filter`, inserted as `V::default()` if absent. `O(L)`;
    /// allocates only when the filter or one of its tree nodes is new.
    ///
    /// # Panics
    ///
    /// On a filter of more than [`TOPIC_LEVELS_MAX`] levels: the session
    /// refuses those (`mqtt.max_topic_levels`, at most that cap) before they
    /// reach a router, so each stored filter costs at most that many tree
    /// nodes.
    pub fn entry(&mut self, filter: &str) -> &mut V {
        debug_assert!(
            super::topic::is_valid_topic_filter(filter),
            "invalid filter {filter:?}"
        );
        assert!(
            levels(filter) <= TOPIC_LEVELS_MAX as usize,
            "filter of {} levels reached the router",
            levels(filter)
        );
        if !has_wildcard(filter) {
            if !self.exact.contains_key(filter) {
                self.exact.insert(filter.into(), V::default());
            }
            return self.exact.get_mut(filter).expect("just inserted");
        }
        let (steps, hash) = steps(filter);
        let mut node = &mut self.root;
        for step in steps {
            node = node.child_or_insert(step);
        }
        let slot = if hash {
            &mut node.hash
        } else {
            &mut node.value
        };
        if slot.is_none() {
            self.wild_len += 1;
        }
        &mut slot
            .get_or_insert_with(|| Entry {
                filter: filter.into(),
                value: V::default(),
            })
            .value
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for TopicTrie<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut map = f.debug_map();
        self.for_each(|filter, value| {
            map.entry(&filter, value);
        });
        map.finish()
    }
}

#[cfg(test)]
#[path = "trie_tests.rs"]
pub(crate) mod tests;
