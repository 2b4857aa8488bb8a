//! What one filter means to a shard: the node-wide interest in it (which
//! shards and nodes have ordinary subscribers, the shared groups and their
//! round-robin cursors) next to this shard's own subscribers, so one trie
//! walk both routes and delivers.

use std::cell::Cell;

use ahash::AHashMap;
use smallvec::SmallVec;

use super::local::Subscription;
use super::location::{Location, NodeId, ShardId};
use super::route::SharedKey;
use crate::codec::ByteStr;

/// A set of shards as a bitset, one bit per shard.
#[derive(Clone, Default, Debug)]
pub(super) struct ShardSet {
    /// Word `w` bit `b` is shard `64 w + b`; inline up to 64 shards.
    pub(super) words: SmallVec<[u64; 1]>,
}

impl ShardSet {
    pub(super) fn insert(&mut self, shard: ShardId) {
        let w = usize::from(shard / 64);
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        self.words[w] |= 1 << (shard % 64);
    }

    pub(super) fn remove(&mut self, shard: ShardId) {
        if let Some(word) = self.words.get_mut(usize::from(shard / 64)) {
            *word &= !(1 << (shard % 64));
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.words.iter().all(|&w| w == 0)
    }
}

/// What one filter means to this shard: who wants it node-wide (for
/// routing) and this shard's own subscribers (for delivery). One trie holds
/// both so a PUBLISH is matched in one walk (`Router::route`).
#[derive(Default)]
pub(super) struct Filter {
    pub(super) interest: Interest,
    /// Local clients subscribed to the filter. Non-empty only while
    /// `interest.shards` holds this shard.
    pub(super) local: AHashMap<ByteStr, Subscription>,
}

/// Cluster-wide interest in one filter, as this shard knows it.
#[derive(Default, Debug)]
pub(super) struct Interest {
    /// Shards of this node (this one included) with at least one ordinary
    /// subscriber.
    pub(super) shards: ShardSet,
    /// Other nodes with at least one ordinary subscriber (their routes are
    /// advertised per node, not per shard). Empty, and unallocated, on a
    /// single node.
    pub(super) nodes: Vec<NodeId>,
    /// Shared groups on this filter with at least one member cluster-wide;
    /// usually none or one.
    pub(super) groups: SmallVec<[GroupInterest; 1]>,
}

impl Interest {
    pub(super) fn is_empty(&self) -> bool {
        self.shards.is_empty() && self.nodes.is_empty() && self.groups.is_empty()
    }
}

/// Cluster-wide membership of one shared group, and the routing shard's
/// cursor.
#[derive(Debug)]
pub(super) struct GroupInterest {
    /// Handed out in `Route::shared`, so built once.
    pub(super) key: SharedKey,
    /// (location, members there) for locations with members, by location:
    /// the shards of this node, and another node as the one location its
    /// advertisement names.
    pub(super) members: SmallVec<[(Location, u32); 4]>,
    /// Sum of `members`; never 0 (the group is dropped instead).
    pub(super) total: u32,
    /// Picks made by this shard; a `Cell` because matching walks the trie
    /// immutably. Round robin: pick `k` goes to the member `k mod total` in
    /// the order of `members`, so every member cluster-wide gets one pick
    /// per cycle (`shared::Picker`).
    pub(super) cursor: Cell<u32>,
}

impl GroupInterest {
    pub(super) fn set(&mut self, at: Location, count: u32) {
        match self.members.binary_search_by_key(&at, |&(l, _)| l) {
            Ok(i) if count == 0 => {
                self.members.remove(i);
            }
            Ok(i) => self.members[i].1 = count,
            Err(_) if count == 0 => {}
            Err(i) => self.members.insert(i, (at, count)),
        }
        self.total = self.members.iter().map(|&(_, n)| n).sum();
    }
}
