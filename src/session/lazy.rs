//! [`Lazy`]: a collection that takes one pointer while it has never been
//! filled (or was released), instead of its full header.
//!
//! A connection's queues and alias maps are empty while the client is idle,
//! and an idle connection is what a broker holds most of: inline, their
//! headers were 32 bytes per deque and 24 per map, for every connection.
//! Reads of an empty `Lazy` see a shared empty collection; the first write
//! allocates the box. [`Lazy::release_if_empty`] gives the box back.

use std::borrow::Borrow;
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::{Deref, DerefMut};

/// A collection with an empty value that can be shared read-only.
pub(crate) trait Empty: Default + 'static {
    const EMPTY: &'static Self;
    fn has_none(&self) -> bool;
}

impl<T: 'static> Empty for VecDeque<T> {
    const EMPTY: &'static Self = &VecDeque::new();
    fn has_none(&self) -> bool {
        self.is_empty()
    }
}

impl<K: 'static, V: 'static> Empty for BTreeMap<K, V> {
    const EMPTY: &'static Self = &BTreeMap::new();
    fn has_none(&self) -> bool {
        self.is_empty()
    }
}

impl Empty for super::state::Extras {
    const EMPTY: &'static Self = &super::state::Extras {
        drops: super::DropCounts {
            queue_full: 0,
            expired: 0,
            too_large: 0,
            closed: 0,
        },
        journal: None,
    };
    fn has_none(&self) -> bool {
        self.drops.total() == 0 && self.journal.is_none()
    }
}

impl Empty for super::DropCounts {
    const EMPTY: &'static Self = &super::DropCounts {
        queue_full: 0,
        expired: 0,
        too_large: 0,
        closed: 0,
    };
    fn has_none(&self) -> bool {
        self.total() == 0
    }
}

impl<K: 'static, V: 'static, H: Default + Hasher + 'static> Empty
    for HashMap<K, V, BuildHasherDefault<H>>
{
    const EMPTY: &'static Self = &HashMap::with_hasher(BuildHasherDefault::new());
    fn has_none(&self) -> bool {
        self.is_empty()
    }
}

impl<T: 'static> Empty for BTreeSet<T> {
    const EMPTY: &'static Self = &BTreeSet::new();
    fn has_none(&self) -> bool {
        self.is_empty()
    }
}

/// `T` behind a box that exists only once something was written; derefs to
/// a shared empty `T` before that. Writing through `DerefMut` allocates, so
/// methods that only remove (`pop_front`, `clear`, `retain`) are provided
/// here without allocating.
pub(crate) struct Lazy<T: Empty>(Option<Box<T>>);

impl<T: Empty> Lazy<T> {
    pub(crate) const fn new() -> Self {
        Lazy(None)
    }

    /// Drops the box when the collection is empty; its memory goes back.
    pub(crate) fn release_if_empty(&mut self) {
        if self.0.as_deref().is_some_and(T::has_none) {
            self.0 = None;
        }
    }
}

impl<T: Empty> Default for Lazy<T> {
    fn default() -> Self {
        Lazy::new()
    }
}

impl<T: Empty> Deref for Lazy<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_deref().unwrap_or(T::EMPTY)
    }
}

impl<T: Empty> DerefMut for Lazy<T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        if self.0.is_none() {
            self.fill();
        }
        match &mut self.0 {
            Some(b) => b,
            None => unreachable!("filled above"),
        }
    }
}

impl<T: Empty> Lazy<T> {
    /// The first write's allocation, out of line: the inflight map and the
    /// transmit deque are written several times per message, where the
    /// inlined construction cost instructions on every access.
    #[cold]
    #[inline(never)]
    fn fill(&mut self) {
        self.0 = Some(Box::default());
    }
}

impl<T: Empty + fmt::Debug> fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: 'static> Lazy<VecDeque<T>> {
    pub(crate) fn pop_front(&mut self) -> Option<T> {
        self.0.as_mut()?.pop_front()
    }

    pub(crate) fn clear(&mut self) {
        if let Some(d) = self.0.as_mut() {
            d.clear();
        }
    }

    pub(crate) fn retain(&mut self, f: impl FnMut(&T) -> bool) {
        if let Some(d) = self.0.as_mut() {
            d.retain(f);
        }
    }
}

impl<K: Ord + 'static, V: 'static> Lazy<BTreeMap<K, V>> {
    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        self.0.as_mut()?.remove(key)
    }
}

impl<T: Ord + 'static> Lazy<BTreeSet<T>> {
    pub(crate) fn remove<Q: Ord + ?Sized>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
    {
        self.0.as_mut().is_some_and(|s| s.remove(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_reads_do_not_allocate_and_writes_do() {
        let mut d: Lazy<VecDeque<u32>> = Lazy::new();
        assert!(d.is_empty());
        assert_eq!(d.front(), None);
        assert_eq!(d.pop_front(), None);
        d.retain(|_| true);
        d.clear();
        assert!(d.0.is_none(), "removing from an empty Lazy allocated");
        d.push_back(1);
        d.push_back(2);
        assert!(d.0.is_some());
        assert_eq!(d.len(), 2);
        d.release_if_empty();
        assert_eq!(d.pop_front(), Some(1), "release dropped a non-empty deque");
        assert_eq!(d.pop_front(), Some(2));
        assert!(d.0.is_some(), "popping the last entry keeps the box");
        d.release_if_empty();
        assert!(d.0.is_none());
    }

    #[test]
    fn maps_read_empty_until_written() {
        let mut m: Lazy<BTreeMap<u16, u8>> = Lazy::default();
        assert_eq!(m.get(&1), None);
        assert!(m.0.is_none());
        assert_eq!(m.remove(&1), None);
        assert!(m.0.is_none(), "removing from an empty map allocated");
        m.insert(1, 7);
        assert_eq!(m.get(&1), Some(&7));
        assert_eq!(format!("{m:?}"), "{1: 7}");
        assert_eq!(m.remove(&1), Some(7));
        let mut s: Lazy<BTreeSet<u16>> = Lazy::new();
        assert!(!s.remove(&3));
        assert!(s.0.is_none());
        s.insert(3);
        assert!(s.contains(&3));
        assert!(s.remove(&3));
    }

    #[test]
    fn is_one_pointer() {
        assert_eq!(std::mem::size_of::<Lazy<VecDeque<u64>>>(), 8);
        assert_eq!(std::mem::size_of::<Lazy<BTreeMap<u64, u64>>>(), 8);
    }
}
