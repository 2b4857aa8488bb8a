//! The delivery side of routing: this shard's own subscribers of a filter,
//! the local members of a shared group and their round robin, and the
//! merge of several matching filters into one delivery per client. The
//! node-wide side (who else wants a filter) is in `filter.rs`.

use std::sync::Arc;

use ahash::AHashMap;
use smallvec::SmallVec;

use super::route::{Recipient, RecipientRef, SharedKey, SubscriptionIds};
use super::shared::Picker;
use crate::codec::{ByteStr, SubscriptionOptions};

/// One local subscription's options.
#[derive(Clone, Copy, Debug)]
pub(super) struct Subscription {
    pub(super) options: SubscriptionOptions,
    pub(super) identifier: Option<u32>,
}

/// The local subscribers of each filter a walk matched (those with any).
pub(super) type LocalMatches<'a> = SmallVec<[&'a AHashMap<ByteStr, Subscription>; 4]>;

impl Subscription {
    pub(super) fn recipient<'a>(&self, client: &'a ByteStr) -> RecipientRef<'a> {
        RecipientRef {
            client,
            qos: self.options.qos,
            retain_as_published: self.options.retain_as_published,
            subscription_ids: SubscriptionIds::one(self.identifier),
        }
    }
}

/// The local members of one shared group: a vector for round robin by index,
/// an index so subscribe and unsubscribe are `O(1)`.
pub(super) struct LocalGroup {
    /// The group's identity, handed out with each pick: a shared delivery
    /// carries it (`Delivery::shared`) so that a session ending with it
    /// undelivered can hand it back to the group, without an allocation
    /// per delivery.
    pub(super) key: Arc<SharedKey>,
    pub(super) members: Vec<(ByteStr, Subscription)>,
    /// Client -> position in `members`.
    pub(super) index: AHashMap<ByteStr, usize>,
    /// Position of the next pick (taken modulo the member count).
    pub(super) next: usize,
}

impl LocalGroup {
    pub(super) fn new(key: SharedKey) -> LocalGroup {
        LocalGroup {
            key: Arc::new(key),
            members: Vec::new(),
            index: AHashMap::new(),
            next: 0,
        }
    }

    /// Adds or replaces; true if the client was already a member.
    pub(super) fn upsert(&mut self, client: &ByteStr, subscription: Subscription) -> bool {
        if let Some(&i) = self.index.get(client) {
            self.members[i].1 = subscription;
            return true;
        }
        self.index.insert(client.clone(), self.members.len());
        self.members.push((client.clone(), subscription));
        false
    }

    pub(super) fn remove(&mut self, client: &str) -> bool {
        let Some(i) = self.index.remove(client) else {
            return false;
        };
        self.members.swap_remove(i);
        if let Some((moved, _)) = self.members.get(i) {
            *self.index.get_mut(moved).expect("every member is indexed") = i;
        }
        true
    }

    /// The next member by the shard's strategy (round robin, or at random).
    pub(super) fn pick(&mut self, picker: &Picker) -> Option<Recipient> {
        if self.members.is_empty() {
            return None;
        }
        let i = picker.member_index(&mut self.next, self.members.len());
        let (client, subscription) = &self.members[i];
        Some(subscription.recipient(client).to_owned())
    }
}

/// Hands `deliver` each client of the matched filters once. With one
/// matching filter (the common case) its subscribers go straight out;
/// with several, they are collected and merged per client first: QoS the
/// maximum, retain-as-published if any, every subscription identifier.
/// A no-local subscription of `origin` is skipped.
pub(super) fn deliver_matches<'a>(
    local: &[&'a AHashMap<ByteStr, Subscription>],
    origin: Option<&str>,
    mut deliver: impl FnMut(RecipientRef<'a>),
) {
    let wanted = |(client, subscription): &(&'a ByteStr, &Subscription)| {
        !(subscription.options.no_local && origin == Some(&***client))
    };
    if let [subscribers] = local {
        for (client, subscription) in subscribers.iter().filter(wanted) {
            deliver(subscription.recipient(client));
        }
        return;
    }
    let mut all: Vec<RecipientRef<'a>> = local
        .iter()
        .flat_map(|subscribers| subscribers.iter())
        .filter(wanted)
        .map(|(client, subscription)| subscription.recipient(client))
        .collect();
    all.sort_unstable_by(|a, b| a.client.cmp(b.client));
    all.dedup_by(|later, kept| {
        if later.client != kept.client {
            return false;
        }
        kept.qos = kept.qos.max(later.qos);
        kept.retain_as_published |= later.retain_as_published;
        let later_ids = std::mem::take(&mut later.subscription_ids);
        kept.subscription_ids.extend(later_ids.iter());
        true
    });
    all.into_iter().for_each(deliver);
}
