//! The `Routes` part of a shard: its router (every subscription of its
//! sessions and the interest of the other shards), its copy of the retained
//! store, the count of messages that found no recipient, and the clock
//! deliveries read. The publish path through it is `shard/publish.rs`.
//!
//! Every method is synchronous and ends its borrow before it returns; the
//! walk (`each_recipient`) hands recipients to a closure that must not
//! reach the shard (it resolves them with `Sessions::resolver`, which is
//! another part's borrow).

use super::publish::Targets;
use crate::codec::{ByteStr, SubscriptionOptions};
use crate::router::{
    InterestChange, Location, RecipientRef, RetainedStore, Route, Router, SharedKey, SharedPick,
    SubscribeOutcome,
};
use crate::session::Message;
use std::cell::{Cell, RefCell};
use std::sync::Arc;
use std::time::Instant;

pub struct Routes {
    router: RefCell<Router>,
    retained: RefCell<RetainedStore<Arc<Message>>>,
    /// Messages (or copies for one subscriber) that found no session here.
    dropped_no_recipient: Cell<u64>,
    /// A clock read at most `SHARD_TICK` old, for deliveries of messages
    /// without an expiry: their `now` only feeds `Connection::last_now`, and
    /// a clock read per delivered message cost 4 % of a shard's time at
    /// 1.7M msg/s.
    coarse_now: Cell<Instant>,
    /// The online recipients of the message being delivered, kept to
    /// reuse its allocation (`take_targets`).
    targets: Cell<Targets>,
}

impl Routes {
    pub fn new(
        here: Location,
        shard_count: u16,
        retained_max_messages: usize,
        shared_strategy: crate::router::SharedStrategy,
    ) -> Routes {
        let mut router = Router::new(here, shard_count);
        // Seeded by the start time: `random` picks differ between runs.
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        router.set_shared_strategy(shared_strategy, seed);
        Routes {
            router: RefCell::new(router),
            retained: RefCell::new(RetainedStore::new(retained_max_messages)),
            dropped_no_recipient: Cell::new(0),
            coarse_now: Cell::new(Instant::now()),
            targets: Cell::new(Targets::new()),
        }
    }

    // ---- the walk of one message --------------------------------------

    /// This shard's recipients of `message`, handed to `deliver` during one
    /// trie walk; with `route`, the same walk also says where else the
    /// message must go (`Router::route_each`).
    #[inline]
    pub fn each_recipient(
        &self,
        message: &Message,
        route: Option<&mut Route>,
        deliver: impl FnMut(RecipientRef<'_>),
    ) {
        let origin = message.origin.as_deref();
        match route {
            Some(route) => {
                self.router
                    .borrow_mut()
                    .route_each(&message.topic, origin, route, deliver)
            }
            None => self
                .router
                .borrow()
                .local_recipients_each(&message.topic, origin, deliver),
        }
    }

    /// The recipients' list to fill for one message (empty), for
    /// `put_back_targets` after its deliveries.
    #[inline]
    pub fn take_targets(&self) -> Targets {
        self.targets.take()
    }

    #[inline]
    pub fn put_back_targets(&self, mut targets: Targets) {
        debug_assert!(targets.is_empty());
        if targets.capacity() > crate::limits::DELIVERY_SCRATCH_KEPT_MAX {
            // A message with that many local subscribers: do not keep
            // its list's memory for every later one.
            targets = Targets::new();
        }
        self.targets.set(targets);
    }

    /// The next local member of a shared group, if it has one here, with
    /// the group's key to tag the delivery with and its local member count.
    pub fn pick_shared(&self, key: &SharedKey) -> Option<SharedPick> {
        self.router.borrow_mut().pick_shared_member(key)
    }

    /// For a message another node picked this node for: the shard of this
    /// node that delivers it to one member, if any has one.
    pub fn pick_shared_on_node(&self, key: &SharedKey) -> Option<crate::router::ShardId> {
        self.router.borrow().pick_shared_on_node(key)
    }

    pub fn count_no_recipient(&self, n: u64) {
        self.dropped_no_recipient
            .set(self.dropped_no_recipient.get() + n);
    }

    pub fn dropped_no_recipient(&self) -> u64 {
        self.dropped_no_recipient.get()
    }

    /// `now` for delivering `message`: a fresh clock read when it can
    /// expire (expiry is checked against it), else the coarse clock.
    #[inline]
    pub fn delivery_now(&self, message: &Message) -> Instant {
        if message.expires_at.is_some() {
            let now = Instant::now();
            self.coarse_now.set(now);
            now
        } else {
            self.coarse_now.get()
        }
    }

    /// The tick's clock read, for `delivery_now`.
    pub fn set_coarse_now(&self, now: Instant) {
        self.coarse_now.set(now);
    }

    // ---- subscriptions ------------------------------------------------

    /// Adds a subscription; the interest change it makes is for the caller
    /// to number (`Interest::number`) in the same step.
    pub fn subscribe(
        &self,
        client: &ByteStr,
        filter: &ByteStr,
        options: SubscriptionOptions,
        identifier: Option<u32>,
    ) -> SubscribeOutcome {
        self.router
            .borrow_mut()
            .subscribe(client, filter, options, identifier)
    }

    pub fn unsubscribe(&self, client: &ByteStr, filter: &str) -> Option<InterestChange> {
        self.router
            .borrow_mut()
            .unsubscribe(client, filter)
            .interest
    }

    /// Removes `client`'s `filters`; the interest changes are returned.
    pub fn remove_client(&self, client: &ByteStr, filters: Vec<ByteStr>) -> Vec<InterestChange> {
        let mut changes = Vec::new();
        self.router
            .borrow_mut()
            .remove_client(client, filters, &mut changes);
        changes
    }

    /// Another shard's interest change.
    pub fn apply_interest(&self, from: crate::router::ShardId, change: &InterestChange) {
        self.router.borrow_mut().apply_interest(from, change);
    }

    /// Another node's interest change, as its node advertises it (one
    /// location per node: shard 0).
    pub fn apply_remote_interest(&self, node: crate::router::NodeId, change: &InterestChange) {
        self.router
            .borrow_mut()
            .apply_remote_interest(Location::new(node, 0), change);
    }

    /// Forgets every route of another node (down, or its routes replaced).
    pub fn forget_node(&self, node: crate::router::NodeId) {
        self.router.borrow_mut().forget_node(node);
    }

    // ---- retained messages --------------------------------------------

    pub fn set_retained(&self, topic: &ByteStr, message: Option<Arc<Message>>) {
        if self.retained.borrow_mut().set(topic, message).is_err() {
            tracing::warn!(topic = %topic, "retained store full; message not retained");
        }
    }

    /// The retained messages matching `filter`.
    pub fn retained_matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let mut found = Vec::new();
        self.retained
            .borrow()
            .for_each_match(filter, |_, m| found.push(m.clone()));
        found
    }

    /// Every retained message, for a node that joins.
    pub fn retained_all(&self) -> Vec<(ByteStr, Arc<Message>)> {
        let mut all = Vec::with_capacity(self.retained_len());
        self.retained
            .borrow()
            .for_each(|topic, m| all.push((topic.clone(), m.clone())));
        all
    }

    pub fn retained_len(&self) -> usize {
        self.retained.borrow().len()
    }

    /// Drops the retained messages whose expiry passed.
    pub fn expire_retained(&self, now: Instant) {
        let mut retained = self.retained.borrow_mut();
        if !retained.is_empty() {
            retained.retain_matching(|m| m.expires_at.is_none_or(|t| t > now));
        }
    }
}
