//! `Children`: the literal next levels of one node of the topic tree.
//!
//! Why not always a hash map: most nodes have a handful of children
//! (`sensors/+/temp` below `sensors`), and a match walk looks one level up
//! per node it visits. Hashing the level and comparing it through the map
//! cost a fan-in shard about 7 % of its time (ahash's fallback hash, then
//! `memcmp`). Up to [`FEW_MAX`] children live in a vector scanned by length
//! and bytes, with no hash; a node that grows past that (`devices/<id>` with
//! thousands of ids) moves to a hash map for good, so a lookup stays `O(1)`
//! there.

use ahash::AHashMap;

/// Children kept in the scanned vector before the node moves to a map.
const FEW_MAX: usize = 8;

pub(super) enum Children<N> {
    Few(Vec<(Box<str>, N)>),
    Many(AHashMap<Box<str>, N>),
}

impl<N> Default for Children<N> {
    fn default() -> Self {
        Children::Few(Vec::new())
    }
}

/// `a == b` for the short strings topic levels usually are, without a
/// call to `memcmp` for the common lengths.
#[inline(always)]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    if a.len() <= 16 {
        return a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
    }
    a == b
}

impl<N> Children<N> {
    pub(super) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(super) fn len(&self) -> usize {
        match self {
            Children::Few(v) => v.len(),
            Children::Many(m) => m.len(),
        }
    }

    #[inline]
    pub(super) fn get(&self, level: &str) -> Option<&N> {
        match self {
            Children::Few(v) => v.iter().find(|(k, _)| same(k, level)).map(|(_, n)| n),
            Children::Many(m) => m.get(level),
        }
    }

    pub(super) fn get_mut(&mut self, level: &str) -> Option<&mut N> {
        match self {
            Children::Few(v) => v.iter_mut().find(|(k, _)| same(k, level)).map(|(_, n)| n),
            Children::Many(m) => m.get_mut(level),
        }
    }

    /// The child `level`, made with `make` if absent.
    pub(super) fn get_or_insert_with(&mut self, level: &str, make: impl FnOnce() -> N) -> &mut N {
        if let Children::Few(v) = self {
            if v.len() >= FEW_MAX && !v.iter().any(|(k, _)| same(k, level)) {
                let map = std::mem::take(v).into_iter().collect();
                *self = Children::Many(map);
            }
        }
        match self {
            Children::Few(v) => {
                let at = match v.iter().position(|(k, _)| same(k, level)) {
                    Some(at) => at,
                    None => {
                        v.push((level.into(), make()));
                        v.len() - 1
                    }
                };
                &mut v[at].1
            }
            Children::Many(m) => {
                if !m.contains_key(level) {
                    m.insert(level.into(), make());
                }
                m.get_mut(level).expect("just inserted")
            }
        }
    }

    pub(super) fn remove(&mut self, level: &str) {
        match self {
            Children::Few(v) => v.retain(|(k, _)| !same(k, level)),
            Children::Many(m) => {
                m.remove(level);
            }
        }
    }

    pub(super) fn values(&self) -> Box<dyn Iterator<Item = &N> + '_> {
        match self {
            Children::Few(v) => Box::new(v.iter().map(|(_, n)| n)),
            Children::Many(m) => Box::new(m.values()),
        }
    }

    pub(super) fn values_mut(&mut self) -> Box<dyn Iterator<Item = &mut N> + '_> {
        match self {
            Children::Few(v) => Box::new(v.iter_mut().map(|(_, n)| n)),
            Children::Many(m) => Box::new(m.values_mut()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_moves_to_a_map_past_few_and_keeps_every_child() {
        let mut c: Children<usize> = Children::default();
        let names: Vec<String> = (0..40).map(|i| format!("level-{i}")).collect();
        for (i, n) in names.iter().enumerate() {
            *c.get_or_insert_with(n, || i) += 0;
            assert_eq!(c.len(), i + 1);
            assert_eq!(matches!(c, Children::Many(_)), i + 1 > FEW_MAX, "{i}");
        }
        for (i, n) in names.iter().enumerate() {
            assert_eq!(c.get(n), Some(&i));
        }
        assert_eq!(c.get("level-40"), None);
        assert_eq!(c.get("level-"), None);
        c.remove("level-3");
        assert_eq!(c.get("level-3"), None);
        assert_eq!(c.values().count(), 39);
    }

    #[test]
    fn few_children_compare_whole_levels() {
        let mut c: Children<u8> = Children::default();
        *c.get_or_insert_with("a", || 1) = 1;
        *c.get_or_insert_with("ab", || 2) = 2;
        *c.get_or_insert_with("a-very-long-level-name-of-more-than-16", || 3) = 3;
        assert_eq!(c.get("a"), Some(&1));
        assert_eq!(c.get("ab"), Some(&2));
        assert_eq!(c.get("b"), None);
        assert_eq!(c.get("ac"), None);
        assert_eq!(c.get("a-very-long-level-name-of-more-than-16"), Some(&3));
        assert_eq!(c.get("a-very-long-level-name-of-more-than-17"), None);
        // Inserting an existing level keeps its child.
        assert_eq!(*c.get_or_insert_with("ab", || 9), 2);
        for v in c.values_mut() {
            *v += 10;
        }
        assert_eq!(c.get("ab"), Some(&12));
        c.remove("a");
        assert_eq!(c.len(), 2);
        assert!(!c.is_empty());
    }
}
