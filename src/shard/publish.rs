//! The path of a PUBLISH through a shard: the retained store, one walk of
//! the router that both resolves this shard's recipients (`Sessions`) and
//! says which other shards must get the message, the deliveries to the
//! recipients' connections, then the sends to the other shards
//! (docs/ARCHITECTURE.md, "Where a PUBLISH goes").
//!
//! Borrows: the router (`Routes`) and the slots (`Sessions::resolver`) are
//! borrowed together only for the walk; the deliveries are given after
//! both borrows ended, because a delivery runs connection code that can
//! reach the shard again (`give_deliveries`).

use super::msg::ShardMsg;
use super::state::{ConnHandle, Shard, ShardId};
use crate::router::{RecipientRef, Route, SharedKey};
use crate::session::{Delivery, Message};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

/// Online recipients of one message, resolved while the router is borrowed
/// and handed their deliveries once that borrow ended
/// (`Shard::give_deliveries`).
pub type Targets = Vec<(Rc<ConnHandle>, Delivery)>;

/// What `Shard::publish_here` leaves for other shards.
pub struct RemoteSends {
    message: Arc<Message>,
    /// The retained update to replicate (`Some(None)`: delete), before the
    /// message itself.
    retain: Option<Option<Arc<Message>>>,
    /// `shards`: other shards with matching ordinary subscribers; `shared`:
    /// shared groups whose pick is on another shard or node, or found no
    /// member here; `nodes`: other nodes with matching ordinary
    /// subscribers (clustered).
    route: Route,
}

impl RemoteSends {
    /// The other shards of this node that may deliver the message to a
    /// session (its ordinary subscribers' shards, the shards of its shared
    /// groups' picks): a QoS 1/2 publisher's acknowledgement waits for
    /// their durable stores with `sync = "always"` (`shard::durable`).
    pub fn local_shards(&self, here: crate::router::NodeId, me: ShardId) -> Vec<ShardId> {
        let mut shards: Vec<ShardId> = self.route.shards.iter().copied().collect();
        for (at, _) in &self.route.shared {
            if at.is_on(here) && at.shard != me && !shards.contains(&at.shard) {
                shards.push(at.shard);
            }
        }
        shards
    }

    pub fn qos(&self) -> crate::codec::QoS {
        self.message.qos
    }

    /// The topic of a retained update this send carries, if any.
    pub fn retained_topic(&self) -> Option<&crate::codec::ByteStr> {
        self.retain.as_ref().map(|_| &self.message.topic)
    }
}

impl Shard {
    /// Route a message published by a client of this shard (or a will).
    pub async fn publish(self: &Rc<Self>, message: Arc<Message>) {
        if let Some(remote) = self.publish_here(message) {
            self.publish_remote(remote).await;
        }
    }

    /// The part of `publish` that needs no other shard, done without
    /// awaiting: the retained store, routing, delivery to this shard's
    /// subscribers. Returns what other shards still have to be sent, if
    /// anything. A one-shard node, or a message whose subscribers are all
    /// here, never builds a future for it.
    #[inline]
    pub fn publish_here(self: &Rc<Self>, message: Arc<Message>) -> Option<RemoteSends> {
        self.publish_here_as(message, false)
    }

    /// `publish_here` for a message another node forwarded: routed on this
    /// node only (never forwarded again), and not stored as retained
    /// (only the nodes with subscribers get it).
    pub fn publish_here_from_peer(self: &Rc<Self>, message: Arc<Message>) -> Option<RemoteSends> {
        self.publish_here_as(message, true)
    }

    #[inline(always)]
    fn publish_here_as(
        self: &Rc<Self>,
        mut message: Arc<Message>,
        from_peer: bool,
    ) -> Option<RemoteSends> {
        if message.id.is_none() {
            // The message enters the cluster here: its id, before its
            // `Arc` is shared (a forwarded one has its publisher's).
            let id = self.message_ids.next();
            match Arc::get_mut(&mut message) {
                Some(m) => m.id = Some(id),
                None => message = Arc::new(message.with_id(id)),
            }
        }
        let mut retain = None;
        if !from_peer && message.retain && self.settings.session.retain_available {
            let stored = if message.payload.is_empty() {
                None
            } else {
                Some(message.clone())
            };
            if stored
                .as_ref()
                .is_none_or(|m| m.payload.len() <= self.settings.retained_max_payload_bytes)
            {
                self.routes.set_retained(&message.topic, stored.clone());
                self.durable_retained(&message.topic, stored.as_deref());
                self.replicate_retained(&message.topic, stored.clone());
                if self.count > 1 {
                    retain = Some(stored);
                }
            }
        }
        // One trie walk gives the other shards to send to and this shard's
        // own recipients, delivered to at once.
        let mut route = Route::default();
        self.deliver_matching(&message, Some(&mut route), self.id);
        route.shards.retain(|s| *s != self.id);
        if self.count > 1 {
            self.interest.add_shards_behind(&mut route.shards);
        }
        if from_peer {
            // Delivered where it was sent: never forwarded again. Its
            // shared groups were picked for on the publisher's node (a
            // member here gets it through a `Forward` for its group).
            route.nodes.clear();
            route.shared.clear();
        }
        if !route.shared.is_empty() {
            let here = self.settings.node;
            route.shared.retain(|(at, key)| {
                !at.is_on(here)
                    || at.shard != self.id
                    || !self.deliver_shared_here(&message, key, self.id)
            });
        }
        if retain.is_none()
            && route.shards.is_empty()
            && route.shared.is_empty()
            && route.nodes.is_empty()
        {
            return None;
        }
        Some(RemoteSends {
            message,
            retain,
            route,
        })
    }

    /// Sends what `publish_here` left for other shards, in the order the
    /// shards must see it: the retained update before the message.
    pub async fn publish_remote(self: &Rc<Self>, remote: RemoteSends) {
        if let Some(answer) = self.publish_remote_start(remote).await {
            let _ = answer.await;
        }
    }

    /// `publish_remote` without waiting for the other nodes: a QoS 1/2
    /// message forwarded to them returns the answer its PUBACK/PUBREC waits
    /// for (`Shard::forward_start`), which the publisher's connection holds
    /// while it reads on (`Shard::hold_forward_ack`).
    pub async fn publish_remote_start(
        self: &Rc<Self>,
        remote: RemoteSends,
    ) -> Option<tokio::sync::oneshot::Receiver<bool>> {
        let RemoteSends {
            message,
            retain,
            route:
                Route {
                    shards,
                    shared,
                    nodes,
                },
        } = remote;
        if let Some(stored) = retain {
            for s in 0..self.count {
                if s != self.id {
                    self.send(
                        s,
                        ShardMsg::Retain {
                            topic: message.topic.clone(),
                            message: stored.clone(),
                        },
                    )
                    .await;
                }
            }
        }
        for s in shards {
            self.send(s, ShardMsg::Publish(message.clone())).await;
        }
        // Picks on other nodes: forwarded for one member there each.
        let mut elsewhere = Vec::new();
        for (at, key) in shared {
            if !at.is_on(self.settings.node) {
                elsewhere.push((at.node, key));
                continue;
            }
            let s = at.shard;
            if s == self.id {
                // The local pick found no member: `deliver_shared` moves on.
                self.deliver_shared(message.clone(), key, 0, self.id).await;
            } else {
                self.send(
                    s,
                    ShardMsg::Shared {
                        message: message.clone(),
                        key,
                        hops: 0,
                    },
                )
                .await;
            }
        }
        if nodes.is_empty() && elsewhere.is_empty() {
            return None;
        }
        // Last: a QoS 1/2 publisher's ack waits for the other nodes.
        self.forward_start(message, nodes, elsewhere).await
    }

    /// Deliver to this shard's ordinary subscribers a message shard `from`
    /// sent.
    pub fn deliver_local(self: &Rc<Self>, message: &Arc<Message>, from: ShardId) {
        self.deliver_matching(message, None, from);
    }

    /// Delivers `message` to this shard's ordinary subscribers, resolved to
    /// their connections during the router's walk; with `route`, the same
    /// walk also says where else the message must go
    /// (`Router::route_each`). `from`: the shard the message came from,
    /// where its publisher is paused if a subscriber is congested.
    fn deliver_matching(
        self: &Rc<Self>,
        message: &Arc<Message>,
        route: Option<&mut Route>,
        from: ShardId,
    ) {
        let now = self.routes.delivery_now(message);
        let mut targets = self.routes.take_targets();
        {
            let mut slots = self.sessions.resolver(self.settings.session.max_mqueue_len);
            self.routes
                .each_recipient(message, route, |r: RecipientRef<'_>| {
                    let client = r.client;
                    let d = Delivery::of(message, r);
                    targets.extend(slots.resolve(client, d, now));
                });
            if slots.no_recipient() > 0 {
                self.routes.count_no_recipient(slots.no_recipient());
            }
        }
        self.give_deliveries(targets.drain(..), message, from, now);
        self.routes.put_back_targets(targets);
    }

    /// Gives each connection its delivery of `message` (from shard
    /// `from`), in order, and pauses the publisher for each subscriber the
    /// delivery left congested. Runs after the state borrow that resolved
    /// them ended: a delivery can run shard code that borrows it again.
    fn give_deliveries(
        self: &Rc<Self>,
        targets: impl IntoIterator<Item = (Rc<ConnHandle>, Delivery)>,
        message: &Message,
        from: ShardId,
        now: Instant,
    ) {
        for (handle, d) in targets {
            let congested = {
                let mut conn = handle.conn.borrow_mut();
                conn.handle_delivery(d, now);
                conn.is_congested()
            };
            self.drain_sync_actions(&handle);
            handle.raise_wake();
            if congested {
                self.hold_publisher(&handle, from, message, now);
            }
        }
    }

    /// Delivers to the next local member of a shared group (passing over
    /// members whose session is gone, `Shard::pick_shared_member`); false
    /// when the group has no member here (any more).
    fn deliver_shared_here(
        self: &Rc<Self>,
        message: &Arc<Message>,
        key: &SharedKey,
        from: ShardId,
    ) -> bool {
        let Some(pick) = self.pick_shared_member(key) else {
            return false;
        };
        let client = pick.recipient.client.clone();
        let d = Delivery::shared(message, pick.recipient, pick.key);
        let now = self.routes.delivery_now(message);
        let target = {
            let mut slots = self.sessions.resolver(self.settings.session.max_mqueue_len);
            let target = slots.resolve(&client, d, now);
            self.routes.count_no_recipient(slots.no_recipient());
            target
        };
        self.give_deliveries(target, message, from, now);
        true
    }

    pub async fn deliver_shared(
        self: &Rc<Self>,
        message: Arc<Message>,
        key: SharedKey,
        hops: u8,
        from: ShardId,
    ) {
        if self.deliver_shared_here(&message, &key, from) {
            return;
        }
        // The member left after the sender's pick: try the next shard.
        let next = (self.id + 1) % self.count;
        if (hops as u16) < self.count && next != self.id {
            self.send(
                next,
                ShardMsg::Shared {
                    message,
                    key,
                    hops: hops + 1,
                },
            )
            .await;
        } else {
            self.routes.count_no_recipient(1);
        }
    }
}
