//! `Router`: one shard's routing state.
//!
//! Each shard owns the subscriptions of the clients whose sessions it runs
//! (`local`, `local_shared`) and a copy of the cluster-wide *interest*:
//! which shards of this node and which other nodes have at least one
//! ordinary subscriber per filter, and how many members each `Location`
//! has in each shared group (`interest`). Shards keep that copy current by
//! exchanging `InterestChange`s (another node's arrive per node, through
//! `apply_remote_interest`); nothing is shared or locked.
//!
//! A PUBLISH is routed in two steps:
//! 1. the shard where it arrives calls `route`: one walk of `interest` gives
//!    the shards with matching ordinary subscribers and, per matching shared
//!    group, the shard of the next member (round robin weighted by members);
//! 2. each target shard calls `local_recipients` (ordinary subscribers, one
//!    entry per client) and `pick_shared` (the next local group member).
//!
//! Neither step allocates in the common case (a few matching filters, at most
//! `Route`'s inline capacity of targets), given a reused `Route` / `Vec`.

use std::cell::Cell;

use ahash::AHashMap;
use smallvec::SmallVec;

use super::filter::{Filter, GroupInterest};
use super::local::{deliver_matches, LocalGroup, LocalMatches, Subscription};
pub use super::location::{Location, NodeId, ShardId};
pub use super::route::{
    InterestChange, Recipient, RecipientRef, Route, SharedKey, SharedPick, SubscribeOutcome,
    SubscriptionIds, UnsubscribeOutcome,
};
use super::shared::{Picker, SharedStrategy};
use super::topic::{self, parse_shared};
use super::trie::TopicTrie;
use crate::codec::{ByteStr, SubscriptionOptions};

/// One shard's routing state. Not `Sync` (group cursors are `Cell`s): it
/// lives on its shard and other shards reach it only through messages.
pub struct Router {
    /// This shard: its node tells this node's shards from other nodes.
    here: Location,
    shard_count: u16,
    /// Per filter: node-wide interest (this shard's included) and the
    /// ordinary subscriptions of local clients (client -> options).
    filters: TopicTrie<Filter>,
    /// Filters with at least one local ordinary subscriber.
    local_filters: usize,
    /// Shared subscriptions of local clients, by group and filter.
    local_shared: AHashMap<SharedKey, LocalGroup>,
    /// Union of matching shard sets during `route`; all zero between calls,
    /// one word per 64 shards.
    scratch_shards: Vec<u64>,
    /// `mqtt.shared_subscription_strategy` and its random source.
    picker: Picker,
}

impl Router {
    pub fn new(here: Location, shard_count: u16) -> Router {
        let shard = here.shard;
        assert!(shard < shard_count, "shard {shard} out of {shard_count}");
        Router {
            here,
            shard_count,
            filters: TopicTrie::new(),
            local_filters: 0,
            local_shared: AHashMap::new(),
            scratch_shards: vec![0; usize::from(shard_count).div_ceil(64)],
            picker: Picker::new(here.node, SharedStrategy::RoundRobin, seed_of(here)),
        }
    }

    /// Sets how shared groups pick (default round robin); `seed` seeds the
    /// `random` strategy's source.
    pub fn set_shared_strategy(&mut self, strategy: SharedStrategy, seed: u64) {
        self.picker = Picker::new(self.here.node, strategy, seed ^ seed_of(self.here));
    }

    pub fn shard(&self) -> ShardId {
        self.here.shard
    }

    pub fn location(&self) -> Location {
        self.here
    }

    /// Subscribes a client whose session lives on this shard. `filter` is the
    /// raw filter, possibly `$share/{group}/{filter}`, already validated.
    /// `O(L)` in the filter's levels.
    pub fn subscribe(
        &mut self,
        client: &ByteStr,
        filter: &ByteStr,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> SubscribeOutcome {
        let subscription = Subscription {
            options,
            identifier,
        };
        let shared = parse_shared(filter)
            .unwrap_or_else(|e| panic!("subscribe with unvalidated filter {filter:?}: {e:?}"));
        let change = match shared {
            Some(shared) => {
                let key = SharedKey {
                    group: shared.group.into(),
                    filter: shared.filter.into(),
                };
                let group = self
                    .local_shared
                    .entry(key.clone())
                    .or_insert_with(|| LocalGroup::new(key.clone()));
                if group.upsert(client, subscription) {
                    return SubscribeOutcome {
                        existed: true,
                        interest: None,
                    };
                }
                InterestChange {
                    filter: key.filter,
                    group: Some(key.group),
                    members: count(group.members.len()),
                }
            }
            None => {
                assert!(
                    topic::is_valid_topic_filter(filter),
                    "unvalidated filter {filter:?}"
                );
                let subscribers = &mut self.filters.entry(filter).local;
                if subscribers.insert(client.clone(), subscription).is_some() {
                    return SubscribeOutcome {
                        existed: true,
                        interest: None,
                    };
                }
                if subscribers.len() > 1 {
                    return SubscribeOutcome {
                        existed: false,
                        interest: None,
                    };
                }
                self.local_filters += 1;
                InterestChange {
                    filter: filter.clone(),
                    group: None,
                    members: 1,
                }
            }
        };
        self.update_interest(self.here, &change);
        SubscribeOutcome {
            existed: false,
            interest: Some(change),
        }
    }

    /// Unsubscribes a local client from `filter` (raw, possibly shared).
    /// `O(L)`; a malformed filter matches no subscription.
    pub fn unsubscribe(&mut self, client: &ByteStr, filter: &str) -> UnsubscribeOutcome {
        const ABSENT: UnsubscribeOutcome = UnsubscribeOutcome {
            existed: false,
            interest: None,
        };
        let change = match parse_shared(filter) {
            Err(_) => return ABSENT,
            Ok(Some(shared)) => {
                let key = SharedKey {
                    group: shared.group.into(),
                    filter: shared.filter.into(),
                };
                let Some(group) = self.local_shared.get_mut(&key) else {
                    return ABSENT;
                };
                if !group.remove(client) {
                    return ABSENT;
                }
                let members = count(group.members.len());
                if members == 0 {
                    self.local_shared.remove(&key);
                }
                InterestChange {
                    filter: key.filter,
                    group: Some(key.group),
                    members,
                }
            }
            Ok(None) => {
                let Some(Filter {
                    local: subscribers, ..
                }) = self.filters.get_mut(filter)
                else {
                    return ABSENT;
                };
                if subscribers.remove(client).is_none() {
                    return ABSENT;
                }
                if !subscribers.is_empty() {
                    return UnsubscribeOutcome {
                        existed: true,
                        interest: None,
                    };
                }
                // `update_interest` below drops the filter's entry once no
                // shard wants it any more.
                self.local_filters -= 1;
                InterestChange {
                    filter: filter.into(),
                    group: None,
                    members: 0,
                }
            }
        };
        self.update_interest(self.here, &change);
        UnsubscribeOutcome {
            existed: true,
            interest: Some(change),
        }
    }

    /// Removes every subscription of a client (session ended or moved to
    /// another shard); `filters` are its raw filters, as the session knows
    /// them. Interest changes for the other shards are appended to `out`.
    pub fn remove_client(
        &mut self,
        client: &ByteStr,
        filters: impl IntoIterator<Item = ByteStr>,
        out: &mut Vec<InterestChange>,
    ) {
        for filter in filters {
            out.extend(self.unsubscribe(client, &filter).interest);
        }
    }

    /// Applies another shard's interest change. `O(L)` in the filter's levels.
    pub fn apply_interest(&mut self, from: ShardId, change: &InterestChange) {
        assert_ne!(
            from, self.here.shard,
            "a shard's own interest is applied by subscribe/unsubscribe"
        );
        self.update_interest(Location::new(self.here.node, from), change);
    }

    /// Applies another node's interest change, as that node advertises it:
    /// one count per node (its shards' summed), from `from`, the one
    /// location its advertisement names (docs/adr/0001-cluster.md).
    /// `O(L)` in the filter's levels.
    pub fn apply_remote_interest(&mut self, from: Location, change: &InterestChange) {
        assert!(
            !from.is_on(self.here.node),
            "this node's interest comes per shard (apply_interest)"
        );
        self.update_interest(from, change);
    }

    /// Forgets everything a node told us (it left or was declared dead:
    /// no route may stay with it). `O(filters)`.
    pub fn forget_node(&mut self, node: NodeId) {
        assert_ne!(node, self.here.node, "cannot forget this node");
        self.filters.retain(|_, Filter { interest, .. }| {
            interest.nodes.retain(|n| *n != node);
            interest.groups.retain(|group| {
                group.members.retain(|(at, _)| !at.is_on(node));
                group.total = group.members.iter().map(|&(_, n)| n).sum();
                group.total > 0
            });
            !interest.is_empty()
        });
    }

    /// Forgets everything a shard told us (it stopped or restarted; a
    /// restarted shard announces itself again with `interest_snapshot`).
    /// `O(filters)`.
    pub fn forget_shard(&mut self, shard: ShardId) {
        assert_ne!(
            shard, self.here.shard,
            "cannot forget this shard's own interest"
        );
        let at = Location::new(self.here.node, shard);
        self.filters.retain(|_, Filter { interest, .. }| {
            interest.shards.remove(shard);
            interest.groups.retain(|group| {
                group.set(at, 0);
                group.total > 0
            });
            !interest.is_empty()
        });
    }

    fn update_interest(&mut self, from: Location, change: &InterestChange) {
        let local = from.is_on(self.here.node);
        assert!(
            !local || from.shard < self.shard_count,
            "shard {} out of {}",
            from.shard,
            self.shard_count
        );
        let filter = &*change.filter;
        if change.members > 0 {
            let interest = &mut self.filters.entry(filter).interest;
            match &change.group {
                None if local => interest.shards.insert(from.shard),
                None => {
                    if !interest.nodes.contains(&from.node) {
                        interest.nodes.push(from.node);
                    }
                }
                Some(group) => {
                    let index = match interest.groups.iter().position(|g| g.key.group == *group) {
                        Some(index) => index,
                        None => {
                            interest.groups.push(GroupInterest {
                                key: SharedKey {
                                    group: group.clone(),
                                    filter: change.filter.clone(),
                                },
                                members: SmallVec::new(),
                                total: 0,
                                cursor: Cell::new(0),
                            });
                            interest.groups.len() - 1
                        }
                    };
                    interest.groups[index].set(from, change.members);
                }
            }
            return;
        }
        let Some(Filter { interest, .. }) = self.filters.get_mut(filter) else {
            return;
        };
        match &change.group {
            None if local => interest.shards.remove(from.shard),
            None => interest.nodes.retain(|n| *n != from.node),
            Some(group) => {
                if let Some(index) = interest.groups.iter().position(|g| g.key.group == *group) {
                    interest.groups[index].set(from, 0);
                    if interest.groups[index].total == 0 {
                        interest.groups.swap_remove(index);
                    }
                }
            }
        }
        if interest.is_empty() {
            self.filters.remove(filter);
        }
    }

    /// On the shard where a PUBLISH to `topic` arrived: the shards and the
    /// other nodes that must get it and, per matching shared group, the
    /// location that delivers it to one member (by the strategy, over every
    /// member of the group cluster-wide: `shared::Picker`);
    /// and, in the same walk, this shard's own recipients, handed to
    /// `deliver` one by one as `local_recipients` would list them. Clears
    /// `route` first.
    ///
    /// Cost: one `TopicTrie::for_each_match` walk, then `O(shards / 64)` to
    /// read out the shard set, `O(shards with members)` per matching group
    /// and what `local_recipients` costs per matching subscription, without
    /// cloning any client id.
    pub fn route_each(
        &mut self,
        topic: &str,
        origin: Option<&str>,
        route: &mut Route,
        deliver: impl FnMut(RecipientRef<'_>),
    ) {
        route.shards.clear();
        route.nodes.clear();
        route.shared.clear();
        let Router {
            filters,
            scratch_shards,
            picker,
            ..
        } = self;
        let mut local = LocalMatches::new();
        filters.for_each_match(topic, |_, filter| {
            for (acc, word) in scratch_shards.iter_mut().zip(&filter.interest.shards.words) {
                *acc |= word;
            }
            for group in &filter.interest.groups {
                route.shared.push((picker.pick(group), group.key.clone()));
            }
            for node in &filter.interest.nodes {
                if !route.nodes.contains(node) {
                    route.nodes.push(*node);
                }
            }
            if !filter.local.is_empty() {
                local.push(&filter.local);
            }
        });
        deliver_matches(&local, origin, deliver);
        for (w, acc) in scratch_shards.iter_mut().enumerate() {
            let mut bits = std::mem::take(acc);
            while bits != 0 {
                let shard = w * 64 + bits.trailing_zeros() as usize;
                route
                    .shards
                    .push(ShardId::try_from(shard).expect("shard ids fit u16"));
                bits &= bits - 1;
            }
        }
    }

    /// `route_each`, collecting this shard's recipients into `local`
    /// (cleared first).
    pub fn route(
        &mut self,
        topic: &str,
        origin: Option<&str>,
        route: &mut Route,
        local: &mut Vec<Recipient>,
    ) {
        local.clear();
        self.route_each(topic, origin, route, |r| local.push(r.to_owned()));
    }

    /// On a shard that received a message for `topic`: the local clients
    /// with a matching ordinary subscription, each handed to `deliver` once
    /// however many of its filters match (QoS the maximum, every
    /// subscription identifier, retain-as-published if any subscription has
    /// it). A subscription with no-local is skipped when `origin` is its
    /// client.
    ///
    /// Cost: the trie walk plus `O(r)` for `r` matching subscriptions; when
    /// more than one filter matches, `O(r log r)` to merge clients by sorting
    /// in place. No allocation unless more than 8 clients match.
    pub fn local_recipients_each(
        &self,
        topic: &str,
        origin: Option<&str>,
        deliver: impl FnMut(RecipientRef<'_>),
    ) {
        let mut local = LocalMatches::new();
        self.filters.for_each_match(topic, |_, filter| {
            if !filter.local.is_empty() {
                local.push(&filter.local);
            }
        });
        deliver_matches(&local, origin, deliver);
    }

    /// `local_recipients_each`, collected into `out` (cleared first).
    pub fn local_recipients(&self, topic: &str, origin: Option<&str>, out: &mut Vec<Recipient>) {
        out.clear();
        self.local_recipients_each(topic, origin, |r| out.push(r.to_owned()));
    }

    /// The next local member of a shared group (round robin over the local
    /// members), or `None` if it has no member here any more: the caller
    /// routes again. `O(1)` expected.
    pub fn pick_shared(&mut self, key: &SharedKey) -> Option<Recipient> {
        self.local_shared.get_mut(key)?.pick(&self.picker)
    }

    /// On a node another node picked to deliver a message to one member of
    /// `key`: the shard of this node that delivers it (by the strategy,
    /// among this node's members only: never picked across nodes again),
    /// or `None` if the group has no member on this node any more.
    /// `O(L + locations with members)`.
    pub fn pick_shared_on_node(&self, key: &SharedKey) -> Option<ShardId> {
        let filter = self.filters.get(&key.filter)?;
        let group = filter
            .interest
            .groups
            .iter()
            .find(|g| g.key.group == key.group)?;
        self.picker.pick_on_node(group).map(|at| at.shard)
    }

    /// `pick_shared`, with the group's key to tag the delivery with
    /// (`Delivery::shared`) and the number of local members (the bound on
    /// picks when a picked member turns out to be gone). `O(1)` expected.
    pub fn pick_shared_member(&mut self, key: &SharedKey) -> Option<SharedPick> {
        let group = self.local_shared.get_mut(key)?;
        let recipient = group.pick(&self.picker)?;
        Some(SharedPick {
            recipient,
            key: group.key.clone(),
            members: group.members.len(),
        })
    }

    /// This shard's ordinary and shared interest, as changes to send to a
    /// shard that starts later or restarts. `O(filters + groups)`.
    pub fn interest_snapshot(&self) -> Vec<InterestChange> {
        let mut out = Vec::with_capacity(self.local_filters + self.local_shared.len());
        self.filters.for_each(|filter, Filter { local, .. }| {
            if !local.is_empty() {
                out.push(InterestChange {
                    filter: filter.into(),
                    group: None,
                    members: count(local.len()),
                });
            }
        });
        for (key, group) in &self.local_shared {
            out.push(InterestChange {
                filter: key.filter.clone(),
                group: Some(key.group.clone()),
                members: count(group.members.len()),
            });
        }
        out
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("here", &self.here)
            .field("shard_count", &self.shard_count)
            .field("local_filters", &self.local_filters)
            .field("local_shared_groups", &self.local_shared.len())
            .field("filters", &self.filters.len())
            .finish()
    }
}

/// A per-shard seed, so shards of one node do not draw alike.
fn seed_of(here: Location) -> u64 {
    (u64::from(here.node.0) << 16 | u64::from(here.shard)).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

fn count(n: usize) -> u32 {
    u32::try_from(n).expect("subscriber count fits u32")
}

#[cfg(test)]
#[path = "routing_tests.rs"]
mod tests;
