//! [`Index`]: where each live record of a log store is, and how many of
//! each segment's bytes are still live (sans-IO). Replaying a store's
//! records in order through [`Index::apply`] gives the index the writer
//! had; the writer keeps it up to date as it appends, decides from it
//! which tombstones are needed (one that kills nothing is not written)
//! and which segment to compact, and compaction moves live records with
//! [`Index::relocate`].
//!
//! Why compaction may drop tombstones: it always takes the oldest segment,
//! and a tombstone only kills records before it in the log, that is in
//! its own segment or older ones, which are gone by then.

use std::collections::BTreeMap;

use ahash::AHashMap as HashMap;

use super::segment::Kind;

/// A record's place: its segment, its offset there and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub segment: u64,
    pub at: u64,
    pub len: u32,
}

#[derive(Debug, Default)]
struct Client {
    epoch: u64,
    meta: Option<Loc>,
    deliveries: BTreeMap<u64, Loc>,
}

/// A segment's bytes: all of them (the file's length) and the live ones.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SegmentBytes {
    pub total: u64,
    pub live: u64,
}

#[derive(Debug, Default)]
pub struct Index {
    clients: HashMap<Box<str>, Client>,
    retained: HashMap<Box<str>, Loc>,
    segments: BTreeMap<u64, SegmentBytes>,
    total: u64,
    live: u64,
}

impl Index {
    /// A segment begins (its header's bytes count as dead).
    pub fn add_segment(&mut self, number: u64, header_bytes: u64) {
        self.segments.entry(number).or_default();
        self.grow(number, header_bytes);
    }

    /// Bytes written to `segment` that are no record (group headers,
    /// padding, a tail cut off is subtracted by the reader instead).
    pub fn grow(&mut self, segment: u64, bytes: u64) {
        self.segments.entry(segment).or_default().total += bytes;
        self.total += bytes;
    }

    /// Sets a segment's byte count to its file's length (after a replay,
    /// whose records counted only themselves).
    pub fn set_total(&mut self, segment: u64, bytes: u64) {
        let s = self.segments.entry(segment).or_default();
        self.total = self.total - s.total + bytes;
        s.total = bytes;
    }

    /// The segment left the store (compacted).
    pub fn remove_segment(&mut self, number: u64) {
        if let Some(s) = self.segments.remove(&number) {
            debug_assert_eq!(s.live, 0, "segment {number} removed with live bytes");
            self.total -= s.total;
            self.live -= s.live;
        }
    }

    pub fn segments(&self) -> impl Iterator<Item = (u64, SegmentBytes)> + '_ {
        self.segments.iter().map(|(&n, &b)| (n, b))
    }

    /// (all bytes, live bytes) of the store.
    pub fn bytes(&self) -> (u64, u64) {
        (self.total, self.live)
    }

    pub fn epoch(&self, client: &str) -> Option<u64> {
        self.clients.get(client).map(|c| c.epoch)
    }

    /// Whether a tombstone of this kind would kill anything.
    pub fn kills(&self, kind: Kind, name: &str, number: u64) -> bool {
        match kind {
            Kind::RemoveDelivery => self
                .clients
                .get(name)
                .is_some_and(|c| c.deliveries.contains_key(&number)),
            Kind::RemoveSession => self
                .clients
                .get(name)
                .is_some_and(|c| c.meta.is_some() || !c.deliveries.is_empty()),
            Kind::RemoveRetained => self.retained.contains_key(name),
            Kind::Meta | Kind::Delivery | Kind::Retained => false,
        }
    }

    /// Whether `client` holds deliveries but no meta record (left by a
    /// crash between writes of a session's removal: dropped at open).
    pub fn orphans(&self) -> Vec<Box<str>> {
        self.clients
            .iter()
            .filter(|(_, c)| c.meta.is_none() && !c.deliveries.is_empty())
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// The record `kind`/`name`/`number` at `loc` was appended.
    pub fn apply(&mut self, kind: Kind, name: &str, number: u64, loc: Loc) {
        self.grow(loc.segment, u64::from(loc.len));
        let old = match kind {
            Kind::Meta => {
                let c = self.client(name);
                c.epoch = number;
                c.meta.replace(loc)
            }
            Kind::Delivery => self.client(name).deliveries.insert(number, loc),
            Kind::Retained => self.retained.insert(name.into(), loc),
            Kind::RemoveDelivery => {
                let mut old = None;
                if let Some(c) = self.clients.get_mut(name) {
                    old = c.deliveries.remove(&number);
                    // A client of deliveries only (its meta comes later or
                    // never) leaves no empty entry behind.
                    if c.meta.is_none() && c.deliveries.is_empty() {
                        self.clients.remove(name);
                    }
                }
                self.kill(old);
                return;
            }
            Kind::RemoveSession => {
                if let Some(c) = self.clients.remove(name) {
                    self.kill(c.meta);
                    for loc in c.deliveries.into_values() {
                        self.kill(Some(loc));
                    }
                }
                return;
            }
            Kind::RemoveRetained => {
                let old = self.retained.remove(name);
                self.kill(old);
                return;
            }
        };
        self.kill(old);
        self.live(loc);
    }

    /// Whether the record `kind`/`name`/`number` at `loc` is live.
    pub fn is_live(&self, kind: Kind, name: &str, number: u64, loc: Loc) -> bool {
        match kind {
            Kind::Meta => self.clients.get(name).is_some_and(|c| c.meta == Some(loc)),
            Kind::Delivery => self
                .clients
                .get(name)
                .and_then(|c| c.deliveries.get(&number))
                .is_some_and(|l| *l == loc),
            Kind::Retained => self.retained.get(name) == Some(&loc),
            Kind::RemoveDelivery | Kind::RemoveSession | Kind::RemoveRetained => false,
        }
    }

    /// A live record was copied to `to` (compaction).
    pub fn relocate(&mut self, kind: Kind, name: &str, number: u64, to: Loc) {
        self.grow(to.segment, u64::from(to.len));
        let slot = match kind {
            Kind::Meta => self.clients.get_mut(name).and_then(|c| c.meta.as_mut()),
            Kind::Delivery => self
                .clients
                .get_mut(name)
                .and_then(|c| c.deliveries.get_mut(&number)),
            Kind::Retained => self.retained.get_mut(name),
            _ => None,
        };
        let old = slot.map(|l| std::mem::replace(l, to));
        debug_assert!(old.is_some(), "relocated a record that is not live");
        self.kill(old);
        self.live(to);
    }

    fn client(&mut self, name: &str) -> &mut Client {
        if !self.clients.contains_key(name) {
            self.clients.insert(name.into(), Client::default());
        }
        self.clients.get_mut(name).expect("inserted")
    }

    fn live(&mut self, loc: Loc) {
        self.segments.entry(loc.segment).or_default().live += u64::from(loc.len);
        self.live += u64::from(loc.len);
    }

    fn kill(&mut self, loc: Option<Loc>) {
        if let Some(loc) = loc {
            if let Some(s) = self.segments.get_mut(&loc.segment) {
                s.live -= u64::from(loc.len);
            }
            self.live -= u64::from(loc.len);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(segment: u64, at: u64, len: u32) -> Loc {
        Loc { segment, at, len }
    }

    #[test]
    fn live_bytes_follow_puts_overwrites_and_tombstones() {
        let mut ix = Index::default();
        ix.add_segment(1, 16);
        ix.apply(Kind::Meta, "a", 4, loc(1, 16, 50));
        ix.apply(Kind::Delivery, "a", 1, loc(1, 66, 100));
        ix.apply(Kind::Delivery, "a", 2, loc(1, 166, 100));
        ix.apply(Kind::Retained, "t", 0, loc(1, 266, 30));
        assert_eq!(ix.bytes(), (16 + 280, 280));
        assert_eq!(ix.epoch("a"), Some(4));
        // An overwrite kills the old record; a tombstone is dead itself.
        ix.apply(Kind::Delivery, "a", 1, loc(1, 296, 100));
        assert!(!ix.is_live(Kind::Delivery, "a", 1, loc(1, 66, 100)));
        assert!(ix.is_live(Kind::Delivery, "a", 1, loc(1, 296, 100)));
        assert!(ix.kills(Kind::RemoveDelivery, "a", 2));
        ix.apply(Kind::RemoveDelivery, "a", 2, loc(1, 396, 10));
        assert!(!ix.kills(Kind::RemoveDelivery, "a", 2));
        assert_eq!(ix.bytes(), (16 + 280 + 110, 180));
        // The session's removal kills its meta and deliveries.
        ix.apply(Kind::RemoveSession, "a", 0, loc(1, 406, 8));
        assert_eq!(ix.bytes().1, 30);
        assert_eq!(ix.epoch("a"), None);
        assert!(!ix.kills(Kind::RemoveSession, "a", 0));
        ix.apply(Kind::RemoveRetained, "t", 0, loc(1, 414, 8));
        assert_eq!(ix.bytes().1, 0);
    }

    #[test]
    fn relocation_moves_live_bytes_between_segments() {
        let mut ix = Index::default();
        ix.add_segment(1, 16);
        ix.apply(Kind::Delivery, "a", 1, loc(1, 16, 100));
        ix.apply(Kind::Delivery, "a", 2, loc(1, 116, 100));
        ix.apply(Kind::RemoveDelivery, "a", 1, loc(1, 216, 10));
        ix.add_segment(2, 16);
        ix.relocate(Kind::Delivery, "a", 2, loc(2, 16, 100));
        let segs: Vec<_> = ix.segments().collect();
        assert_eq!(
            segs[0],
            (
                1,
                SegmentBytes {
                    total: 226,
                    live: 0
                }
            )
        );
        assert_eq!(
            segs[1],
            (
                2,
                SegmentBytes {
                    total: 116,
                    live: 100
                }
            )
        );
        ix.remove_segment(1);
        assert_eq!(ix.bytes(), (116, 100));
    }

    #[test]
    fn deliveries_without_a_meta_are_orphans() {
        let mut ix = Index::default();
        ix.add_segment(1, 16);
        ix.apply(Kind::Meta, "a", 1, loc(1, 16, 10));
        ix.apply(Kind::Delivery, "a", 1, loc(1, 26, 10));
        ix.apply(Kind::Delivery, "b", 1, loc(1, 36, 10));
        assert_eq!(ix.orphans(), vec![Box::from("b")]);
    }
}
