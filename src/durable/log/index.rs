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
//!
//! A delivery has up to two live records: the whole delivery, and the
//! last state record written after it (`log::state`), whose bytes the
//! index keeps. A live state record always comes after its delivery's
//! record in the log: a state record is only written while the delivery
//! is live, a new put of the delivery kills it, and compaction copies a
//! delivery together with its state (a fresh state record right after it).

use std::collections::BTreeMap;

use ahash::AHashMap as HashMap;

use super::segment::Kind;
use super::state::StateBytes;

/// A record's place: its segment, its offset there and its length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub segment: u64,
    pub at: u64,
    pub len: u32,
}

/// A live delivery's records: the whole delivery, and its last state
/// record with the state's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryLocs {
    pub record: Loc,
    pub state: Option<(Loc, StateBytes)>,
}

#[derive(Debug, Default)]
struct Client {
    epoch: u64,
    meta: Option<Loc>,
    deliveries: BTreeMap<u64, DeliveryLocs>,
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
            Kind::Meta | Kind::Delivery | Kind::Retained | Kind::DeliveryState => false,
        }
    }

    /// The live delivery `seq` of `client`, if any.
    pub fn delivery(&self, client: &str, seq: u64) -> Option<DeliveryLocs> {
        self.clients.get(client)?.deliveries.get(&seq).copied()
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

    /// The record `kind`/`name`/`number` at `loc` was appended; `value`:
    /// its bytes (read only for a state record).
    pub fn apply(&mut self, kind: Kind, name: &str, number: u64, loc: Loc, value: &[u8]) {
        self.grow(loc.segment, u64::from(loc.len));
        let old = match kind {
            Kind::Meta => {
                let c = self.client(name);
                c.epoch = number;
                c.meta.replace(loc)
            }
            Kind::Delivery => {
                let new = DeliveryLocs {
                    record: loc,
                    state: None,
                };
                let old = self.client(name).deliveries.insert(number, new);
                self.kill_delivery(old);
                self.live(loc);
                return;
            }
            Kind::DeliveryState => {
                let slot = self
                    .clients
                    .get_mut(name)
                    .and_then(|c| c.deliveries.get_mut(&number));
                // A state record whose delivery is gone is dead at once.
                let (Some(slot), Ok(bytes)) = (slot, StateBytes::try_from(value)) else {
                    return;
                };
                let old = slot.state.replace((loc, bytes)).map(|(l, _)| l);
                self.kill(old);
                self.live(loc);
                return;
            }
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
                self.kill_delivery(old);
                return;
            }
            Kind::RemoveSession => {
                if let Some(c) = self.clients.remove(name) {
                    self.kill(c.meta);
                    for d in c.deliveries.into_values() {
                        self.kill_delivery(Some(d));
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
            Kind::Delivery => self.delivery(name, number).is_some_and(|d| d.record == loc),
            Kind::DeliveryState => self
                .delivery(name, number)
                .and_then(|d| d.state)
                .is_some_and(|(l, _)| l == loc),
            Kind::Retained => self.retained.get(name) == Some(&loc),
            Kind::RemoveDelivery | Kind::RemoveSession | Kind::RemoveRetained => false,
        }
    }

    /// A live record was copied to `to` (compaction; a delivery's state
    /// record is written anew after its delivery: `DeliveryState` here).
    pub fn relocate(&mut self, kind: Kind, name: &str, number: u64, to: Loc) {
        self.grow(to.segment, u64::from(to.len));
        let slot = match kind {
            Kind::Meta => self.clients.get_mut(name).and_then(|c| c.meta.as_mut()),
            Kind::Delivery => self
                .clients
                .get_mut(name)
                .and_then(|c| c.deliveries.get_mut(&number))
                .map(|d| &mut d.record),
            Kind::DeliveryState => self
                .clients
                .get_mut(name)
                .and_then(|c| c.deliveries.get_mut(&number))
                .and_then(|d| d.state.as_mut())
                .map(|(l, _)| l),
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

    fn kill_delivery(&mut self, d: Option<DeliveryLocs>) {
        if let Some(d) = d {
            self.kill(Some(d.record));
            self.kill(d.state.map(|(l, _)| l));
        }
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
        ix.apply(Kind::Meta, "a", 4, loc(1, 16, 50), &[]);
        ix.apply(Kind::Delivery, "a", 1, loc(1, 66, 100), &[]);
        ix.apply(Kind::Delivery, "a", 2, loc(1, 166, 100), &[]);
        ix.apply(Kind::Retained, "t", 0, loc(1, 266, 30), &[]);
        assert_eq!(ix.bytes(), (16 + 280, 280));
        assert_eq!(ix.epoch("a"), Some(4));
        // An overwrite kills the old record; a tombstone is dead itself.
        ix.apply(Kind::Delivery, "a", 1, loc(1, 296, 100), &[]);
        assert!(!ix.is_live(Kind::Delivery, "a", 1, loc(1, 66, 100)));
        assert!(ix.is_live(Kind::Delivery, "a", 1, loc(1, 296, 100)));
        assert!(ix.kills(Kind::RemoveDelivery, "a", 2));
        ix.apply(Kind::RemoveDelivery, "a", 2, loc(1, 396, 10), &[]);
        assert!(!ix.kills(Kind::RemoveDelivery, "a", 2));
        assert_eq!(ix.bytes(), (16 + 280 + 110, 180));
        // The session's removal kills its meta and deliveries.
        ix.apply(Kind::RemoveSession, "a", 0, loc(1, 406, 8), &[]);
        assert_eq!(ix.bytes().1, 30);
        assert_eq!(ix.epoch("a"), None);
        assert!(!ix.kills(Kind::RemoveSession, "a", 0));
        ix.apply(Kind::RemoveRetained, "t", 0, loc(1, 414, 8), &[]);
        assert_eq!(ix.bytes().1, 0);
    }

    #[test]
    fn relocation_moves_live_bytes_between_segments() {
        let mut ix = Index::default();
        ix.add_segment(1, 16);
        ix.apply(Kind::Delivery, "a", 1, loc(1, 16, 100), &[]);
        ix.apply(Kind::Delivery, "a", 2, loc(1, 116, 100), &[]);
        ix.apply(Kind::RemoveDelivery, "a", 1, loc(1, 216, 10), &[]);
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
        ix.apply(Kind::Meta, "a", 1, loc(1, 16, 10), &[]);
        ix.apply(Kind::Delivery, "a", 1, loc(1, 26, 10), &[]);
        ix.apply(Kind::Delivery, "b", 1, loc(1, 36, 10), &[]);
        assert_eq!(ix.orphans(), vec![Box::from("b")]);
    }

    /// A state record lives while its delivery does and is the delivery's
    /// last; a new put of the delivery, its removal or its session's kill
    /// it; one for a delivery that is not stored is dead at once; moved by
    /// compaction it keeps its bytes. Fails if a state outlived its
    /// delivery (it would be applied to a later put) or its bytes were
    /// counted wrong.
    #[test]
    fn a_state_record_lives_with_its_delivery() {
        let mut ix = Index::default();
        ix.add_segment(1, 0);
        ix.apply(Kind::Meta, "a", 1, loc(1, 0, 10), &[]);
        ix.apply(Kind::Delivery, "a", 1, loc(1, 10, 100), &[]);
        let s1 = [1, 1, 9, 0, 0, 1];
        ix.apply(Kind::DeliveryState, "a", 1, loc(1, 110, 20), &s1);
        assert_eq!(
            ix.delivery("a", 1).unwrap().state,
            Some((loc(1, 110, 20), s1))
        );
        assert_eq!(ix.bytes(), (130, 130));
        // A later state replaces it; one for a delivery not stored is dead.
        let s2 = [1, 1, 9, 0, 1, 1];
        ix.apply(Kind::DeliveryState, "a", 1, loc(1, 130, 20), &s2);
        ix.apply(Kind::DeliveryState, "a", 7, loc(1, 150, 20), &s2);
        assert!(!ix.is_live(Kind::DeliveryState, "a", 1, loc(1, 110, 20)));
        assert!(ix.is_live(Kind::DeliveryState, "a", 1, loc(1, 130, 20)));
        assert!(!ix.is_live(Kind::DeliveryState, "a", 7, loc(1, 150, 20)));
        assert_eq!(ix.bytes(), (170, 130));
        // Moved by compaction, with its bytes.
        ix.add_segment(2, 0);
        ix.relocate(Kind::DeliveryState, "a", 1, loc(2, 0, 20));
        assert_eq!(
            ix.delivery("a", 1).unwrap().state,
            Some((loc(2, 0, 20), s2))
        );
        assert_eq!(ix.bytes(), (190, 130));
        // A new put of the delivery kills its state.
        ix.apply(Kind::Delivery, "a", 1, loc(2, 20, 100), &[]);
        assert_eq!(ix.delivery("a", 1).unwrap().state, None);
        assert_eq!(ix.bytes().1, 110);
        // Its removal kills both records.
        ix.apply(Kind::DeliveryState, "a", 1, loc(2, 120, 20), &s1);
        ix.apply(Kind::RemoveDelivery, "a", 1, loc(2, 140, 10), &[]);
        assert_eq!(ix.bytes().1, 10);
        ix.apply(Kind::Delivery, "a", 2, loc(2, 150, 100), &[]);
        ix.apply(Kind::DeliveryState, "a", 2, loc(2, 250, 20), &s1);
        ix.apply(Kind::RemoveSession, "a", 0, loc(2, 270, 10), &[]);
        assert_eq!(ix.bytes().1, 0);
    }
}
