//! Which member of a shared group gets a message
//! (`mqtt.shared_subscription_strategy`, docs/clustering.md, "Shared
//! subscriptions").
//!
//! A pick is made in two steps, each by the strategy:
//! 1. on the publisher's shard, a member *location* cluster-wide
//!    ([`Picker::pick`]): a shard of this node, or another node as the one
//!    location its advertisement names, weighted by its member count;
//! 2. on that location, one of its members (`LocalGroup::pick`). A message
//!    another node picked this node for is first given a location of this
//!    node only ([`Picker::pick_on_node`]): it is never picked across nodes
//!    again.
//!
//! Weighting by member counts gives every member cluster-wide an equal
//! share under `round_robin` (one pick per member per cycle) and an equal
//! chance under `random`. `local` prefers the publisher's node: a location
//! of this node while one has members, round robin among them; otherwise
//! round robin among the other nodes. On a single node every member is on
//! the publisher's node, so `local` is `round_robin` there.

use std::cell::Cell;

use super::filter::GroupInterest;
use super::location::{Location, NodeId};

/// `mqtt.shared_subscription_strategy`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SharedStrategy {
    /// Every member in turn, weighted by members per location.
    #[default]
    RoundRobin,
    /// A member drawn uniformly at random.
    Random,
    /// Members on the publisher's node while there are any (in turn),
    /// else the other nodes' (in turn).
    Local,
}

impl SharedStrategy {
    pub const ALL: [SharedStrategy; 3] = [
        SharedStrategy::RoundRobin,
        SharedStrategy::Random,
        SharedStrategy::Local,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SharedStrategy::RoundRobin => "round_robin",
            SharedStrategy::Random => "random",
            SharedStrategy::Local => "local",
        }
    }

    pub fn parse(text: &str) -> Option<SharedStrategy> {
        SharedStrategy::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// How one draw chooses its slot among `total` weighted slots.
#[derive(Clone, Copy, Debug)]
enum Draw {
    /// The group's cursor (round robin).
    Cursor,
    /// This number, modulo the total.
    Random(u32),
}

/// A shard's strategy and its random source (a `Cell`: picks happen
/// during a trie walk that borrows the router immutably). The source is
/// xorshift64*, seeded per shard: randomness spreads load, it is not a
/// secret.
#[derive(Debug)]
pub(super) struct Picker {
    pub(super) strategy: SharedStrategy,
    /// This node: what `local` prefers and `pick_on_node` keeps to.
    here: NodeId,
    state: Cell<u64>,
}

impl Picker {
    pub(super) fn new(here: NodeId, strategy: SharedStrategy, seed: u64) -> Picker {
        Picker {
            strategy,
            here,
            // xorshift never leaves 0; any other seed will do.
            state: Cell::new(seed | 1),
        }
    }

    fn next_random(&self) -> u32 {
        let mut x = self.state.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state.set(x);
        (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32
    }

    fn draw(&self) -> Draw {
        match self.strategy {
            SharedStrategy::Random => Draw::Random(self.next_random()),
            SharedStrategy::RoundRobin | SharedStrategy::Local => Draw::Cursor,
        }
    }

    /// On the publisher's shard: the location that delivers to one member,
    /// anywhere in the cluster. `O(locations with members)`.
    pub(super) fn pick(&self, group: &GroupInterest) -> Location {
        let draw = self.draw();
        let picked = match self.strategy {
            SharedStrategy::Local => {
                pick_among(group, Some(self.here), draw).or_else(|| pick_among(group, None, draw))
            }
            SharedStrategy::RoundRobin | SharedStrategy::Random => pick_among(group, None, draw),
        };
        picked.expect("a group's total is never 0")
    }

    /// On a node another node picked for a message: a location of this
    /// node with members, or `None` if the group has none here any more.
    pub(super) fn pick_on_node(&self, group: &GroupInterest) -> Option<Location> {
        pick_among(group, Some(self.here), self.draw())
    }

    /// Which of `len` local members gets the next message; `next` is the
    /// group's round-robin position.
    pub(super) fn member_index(&self, next: &mut usize, len: usize) -> usize {
        debug_assert!(len > 0);
        match self.draw() {
            Draw::Random(r) => r as usize % len,
            Draw::Cursor => {
                let i = *next % len;
                *next = i + 1;
                i
            }
        }
    }
}

/// Weighted pick among the group's locations (on `only`, if given): slot
/// `k mod total` in the order of `members`, where `k` is the group's
/// cursor (advanced) or the random draw.
fn pick_among(group: &GroupInterest, only: Option<NodeId>, draw: Draw) -> Option<Location> {
    let wanted = |at: &Location| only.is_none_or(|node| at.is_on(node));
    let total: u32 = match only {
        None => group.total,
        Some(_) => group
            .members
            .iter()
            .filter(|(at, _)| wanted(at))
            .map(|&(_, n)| n)
            .sum(),
    };
    if total == 0 {
        return None;
    }
    let k = match draw {
        Draw::Cursor => {
            let k = group.cursor.get();
            group.cursor.set(k.wrapping_add(1));
            k
        }
        Draw::Random(r) => r,
    };
    let mut slot = k % total;
    for &(at, n) in group.members.iter().filter(|(at, _)| wanted(at)) {
        if slot < n {
            return Some(at);
        }
        slot -= n;
    }
    unreachable!("total is the sum of the wanted members")
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
